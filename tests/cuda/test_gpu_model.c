/* test_gpu_model.c — the whole model on the GPU (bf16) against the transformers fp32 reference
 * (tests/fixtures/ref) and the CPU path: last-position logits within 2e-2 relative, identical greedy
 * tokens for 8 steps, identical top-1 label and probabilities within 1e-2 in classify. Needs a CUDA
 * device: run on a GPU machine (`make gpu-test`); CI only compiles it. */
#include <cjson/cJSON.h>
#include <string.h>

#include "engine/classify.h"
#include "engine/generate.h"
#include "engine/prompt.h"
#include "formats/json.h"
#include "image/image.h"
#include "model/gpu.h"
#include "ref.h"
#include "test.h"
#include "util/mem.h"

#define FIX "tests/fixtures/"

static void gen_case(llava_model *m, llava_gpu *g, const char *mname, const char *image) {
    char path[512], what[256];
    snprintf(what, sizeof what, "%s/%s", mname, image);
    llava_err err = {{0}};
    llava_image img = {0};
    float *pixels = NULL;
    int n_tiles = 0, n_feats = 0, *ids = NULL, n_ids = 0;
    llava_gen_result res = {0};
    snprintf(path, sizeof path, FIX "ref/images/%s", image);
    if (llava_image_load(&img, path, 89478485, &err) || llava_preprocess(&pixels, &n_tiles, &img, &m->pp, &err)) {
        EXPECT(0, "%s: %s", what, err.msg);
        goto done;
    }
    double t0 = llava_now();
    int ok = !llava_gpu_encode_image(g, pixels, n_tiles, img.h, img.w, &n_feats, &err);
    double t_vis = llava_now() - t0;
    EXPECT(ok, "%s: encode: %s", what, err.msg);
    if (!ok) goto done;
    ok = !llava_build_prompt(&ids, &n_ids, NULL, m, "What is shown in this image?", 0, 1, &n_feats, &err);
    EXPECT(ok, "%s: prompt: %s", what, err.msg);
    if (!ok) goto done;
    snprintf(path, sizeof path, FIX "ref/%s-%s.safetensors.gz", mname, image);
    llava_safetensors *ref = ref_open_gz(path);
    EXPECT(ref != NULL, "%s: reference", what);
    if (!ref) goto done;
    const llava_tensor *rlg = llava_st_find(ref, "logits"), *rgr = llava_st_find(ref, "greedy");
    llava_gen_params gp;
    llava_gen_params_default(&gp);
    gp.max_tokens = (int)rgr->numel;
    ok = !llava_generate(&res, m, g, ids, n_ids, NULL, &n_feats, 1, &gp, NULL, NULL, &err);
    EXPECT(ok, "%s: generate: %s", what, err.msg);
    if (ok) {
        double rd = rel_max_diff(res.prompt_logits, rlg->data, (size_t)rlg->numel);
        EXPECT(rd <= 2e-2, "%s: GPU logits rel diff %.3g > 2e-2", what, rd);
        const int32_t *gr = rgr->data;
        int same = res.n_gen == rgr->numel, first = -1;
        for (int i = 0; same && i < res.n_gen; i++)
            if (gr[i] != res.tokens[i].id) same = 0, first = i;
        /* A first token whose reference top-2 margin is below the bf16 tolerance (2e-2 of max|logit|)
         * is a near-tie no bf16 engine can resolve; it is reported, not counted. Later steps have no
         * stored logits, so any difference there counts. */
        const float *rl = rlg->data;
        double top1 = -INFINITY, top2 = -INFINITY, mx = 0;
        for (int64_t i = 0; i < rlg->numel; i++) {
            if (rl[i] > top1) top2 = top1, top1 = rl[i];
            else if (rl[i] > top2) top2 = rl[i];
            if (fabs(rl[i]) > mx) mx = fabs(rl[i]);
        }
        int near_tie = first == 0 && top1 - top2 < 2e-2 * mx;
        if (near_tie)
            printf("INFO %s: first greedy token differs at a reference near-tie (top-2 margin %.2e of max|logit|)\n", what,
                   (top1 - top2) / mx);
        else
            EXPECT(same, "%s: greedy tokens differ from transformers (first at step %d)", what, first);
        printf("INFO %-22s tokens %d  logits rel diff %.2e  greedy %s  vision %.1f ms prefill %.1f ms decode %.1f ms/token\n",
               what, n_ids, rd, same ? "same" : "DIFFERENT", t_vis * 1e3, res.t_prefill * 1e3,
               res.n_gen > 1 ? res.t_decode * 1e3 / (res.n_gen - 1) : 0.0);
    }
    llava_st_close(ref);
done:
    llava_gen_result_free(&res);
    llava_image_free(&img);
    free(pixels), free(ids);
}

int main(void) {
    char name[256] = "";
    int nd = llava_gpu_available(name, sizeof name);
    printf("INFO %d CUDA device(s): %s\n", nd, name);
    EXPECT(nd > 0, "no CUDA device");
    if (nd <= 0) TEST_END();
    llava_err err = {{0}};
    cJSON *man = llava_json_load(FIX "ref/manifest.json", &err);
    cJSON *labels = llava_json_load(FIX "ref/labels.json", &err);
    const char *models[] = {"tiny-a", "tiny-b"};
    for (int k = 0; k < 2; k++) {
        char dir[256];
        snprintf(dir, sizeof dir, FIX "%s", models[k]);
        llava_model *m = NULL;
        llava_gpu *g = NULL;
        if (llava_model_load(&m, dir, &err) || llava_gpu_load(&g, m, 4096, &err)) {
            EXPECT(0, "%s: %s", dir, err.msg);
            llava_model_free(m);
            continue;
        }
        const cJSON *c;
        cJSON_ArrayForEach(c, cJSON_GetObjectItem(man, "cases")) {
            if (strcmp(cJSON_GetObjectItem(c, "model")->valuestring, models[k])) continue;
            gen_case(m, g, models[k], cJSON_GetObjectItem(c, "image")->valuestring);
        }
        /* classify on the GPU vs the transformers teacher-forcing reference */
        cJSON_ArrayForEach(c, cJSON_GetObjectItem(labels, "cases")) {
            if (strcmp(cJSON_GetObjectItem(c, "model")->valuestring, models[k])) continue;
            const char *image = cJSON_GetObjectItem(c, "image")->valuestring;
            const cJSON *labs = cJSON_GetObjectItem(cJSON_GetObjectItem(labels, "label_sets"),
                                                    cJSON_GetObjectItem(c, "labels")->valuestring);
            int n = cJSON_GetArraySize(labs);
            const char *ls[64];
            for (int i = 0; i < n; i++) ls[i] = cJSON_GetArrayItem(labs, i)->valuestring;
            const cJSON *q = cJSON_GetObjectItem(c, "question"), *a = cJSON_GetObjectItem(c, "answer");
            llava_classifier *cl = NULL;
            if (llava_classifier_new(&cl, m, ls, n, cJSON_IsString(q) ? q->valuestring : NULL,
                                     cJSON_IsString(a) ? a->valuestring : NULL, &err)) {
                EXPECT(0, "classifier: %s", err.msg);
                continue;
            }
            char path[256];
            snprintf(path, sizeof path, FIX "ref/images/%s", image);
            llava_image img = {0};
            float *px = NULL;
            int nt = 0;
            double probs[64];
            int ok = !llava_image_load(&img, path, 89478485, &err) && !llava_preprocess(&px, &nt, &img, &m->pp, &err) &&
                     !llava_classify_pixels_gpu(probs, NULL, cl, g, px, nt, img.h, img.w, &err);
            EXPECT(ok, "%s/%s classify: %s", models[k], image, err.msg);
            if (ok) {
                const cJSON *rp = cJSON_GetObjectItem(c, "probabilities");
                int best = 0, rbest = 0;
                double md = 0;
                for (int i = 0; i < n; i++) {
                    double r = cJSON_GetArrayItem(rp, i)->valuedouble;
                    if (fabs(probs[i] - r) > md) md = fabs(probs[i] - r);
                    if (probs[i] > probs[best]) best = i;
                    if (r > cJSON_GetArrayItem(rp, rbest)->valuedouble) rbest = i;
                }
                EXPECT(best == rbest, "%s/%s: GPU top-1 %s, transformers %s", models[k], image, ls[best], ls[rbest]);
                EXPECT(md <= 1e-2, "%s/%s: GPU probabilities differ by %.3g > 1e-2", models[k], image, md);
                printf("INFO classify %s/%-14s top-1 %s (%s)  max |p - p_ref| %.2e\n", models[k], image, ls[best],
                       best == rbest ? "same" : "DIFFERENT", md);
            }
            free(px);
            llava_image_free(&img);
            llava_classifier_free(cl);
        }
        llava_gpu_free(g);
        llava_model_free(m);
    }
    cJSON_Delete(man);
    cJSON_Delete(labels);
    TEST_END();
}
