/* test_gpu_model.c — the whole model on the GPU (bf16) against the transformers fp32 reference
 * (tests/fixtures/ref) and the CPU path: last-position logits within 2e-2 relative, identical greedy
 * tokens for 8 steps, identical top-1 label and probabilities within 1e-2 in classify. Needs a CUDA
 * device: run on a GPU machine (`make gpu-test`); CI only compiles it. */
#include <cjson/cJSON.h>
#include <string.h>

#include "engine/classify.h"
#include "engine/generate.h"
#include "engine/prompt.h"
#include "engine/scheduler.h"
#include "formats/json.h"
#include "image/image.h"
#include "model/gpu.h"
#include "gen_cases.h"
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
    n_feats = llava_model_image_tokens(m, img.h, img.w);
    int ok = !llava_build_prompt(&ids, &n_ids, NULL, m, "What is shown in this image?", 0, 1, &n_feats, &err);
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
    llava_gen_image gi = {pixels, n_tiles, img.h, img.w};
    llava_gen_request req = {ids, n_ids, &gi, 1, gp, NULL, NULL, NULL};
    ok = !llava_generate(&res, m, g, &req, &err);
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
               what, n_ids, rd, same ? "same" : "DIFFERENT", res.t_vision * 1e3, (res.t_prefill - res.t_vision) * 1e3,
               res.n_gen > 1 ? res.t_decode * 1e3 / (res.n_gen - 1) : 0.0);
    }
    llava_st_close(ref);
done:
    llava_gen_result_free(&res);
    llava_image_free(&img);
    free(pixels), free(ids);
}

/* ---- the scheduler's batched steps: many images, several label sets, in one packed step ---- */

#define MAX_SC 32
typedef struct {
    llava_classifier *cl;
    float *px;
    int nt, H, W, n;
    double ref[64], cpu[64], got[2][64]; /* transformers, CPU path, two copies through the scheduler */
    int seen[2];
} sched_case;

typedef struct {
    sched_case *cs;
    int errors;
} sched_sink;

static void on_sched(void *user, const llava_sched_result *r) {
    sched_sink *k = user;
    intptr_t t = (intptr_t)r->tag;
    sched_case *c = &k->cs[t / 2];
    if (r->error) {
        k->errors++;
        printf("INFO scheduler error: %s\n", r->error);
        return;
    }
    memcpy(c->got[t % 2], r->probs, sizeof(double) * (size_t)c->n);
    c->seen[t % 2]++;
}

static void sched_cases(llava_model *m, llava_gpu *g, const char *mname, const cJSON *labels) {
    sched_case cs[MAX_SC];
    int n = 0;
    llava_err err = {{0}};
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(labels, "cases")) {
        if (strcmp(cJSON_GetObjectItem(c, "model")->valuestring, mname) || n == MAX_SC) continue;
        const cJSON *labs = cJSON_GetObjectItem(cJSON_GetObjectItem(labels, "label_sets"),
                                                cJSON_GetObjectItem(c, "labels")->valuestring);
        sched_case *x = &cs[n];
        memset(x, 0, sizeof *x);
        x->n = cJSON_GetArraySize(labs);
        const char *ls[64];
        for (int i = 0; i < x->n; i++) ls[i] = cJSON_GetArrayItem(labs, i)->valuestring;
        const cJSON *q = cJSON_GetObjectItem(c, "question"), *a = cJSON_GetObjectItem(c, "answer");
        char path[256];
        snprintf(path, sizeof path, FIX "ref/images/%s", cJSON_GetObjectItem(c, "image")->valuestring);
        llava_image img = {0};
        int ok = !llava_classifier_new(&x->cl, m, ls, x->n, cJSON_IsString(q) ? q->valuestring : NULL,
                                       cJSON_IsString(a) ? a->valuestring : NULL, &err) &&
                 !llava_image_load(&img, path, 89478485, &err) && !llava_preprocess(&x->px, &x->nt, &img, &m->pp, &err) &&
                 !llava_classify_pixels(x->cpu, NULL, x->cl, x->px, x->nt, img.h, img.w, &err);
        x->H = img.h, x->W = img.w;
        llava_image_free(&img);
        EXPECT(ok, "%s scheduler case: %s", mname, err.msg);
        if (!ok) {
            llava_classifier_free(x->cl);
            free(x->px);
            continue;
        }
        const cJSON *rp = cJSON_GetObjectItem(c, "probabilities");
        for (int i = 0; i < x->n; i++) x->ref[i] = cJSON_GetArrayItem(rp, i)->valuedouble;
        n++;
    }
    /* every image twice; all in as few steps as fit, then at most 3 per step (two steps in flight) */
    for (int mb = 0; mb <= 3; mb += 3) {
        sched_sink sink = {cs, 0};
        for (int i = 0; i < n; i++) cs[i].seen[0] = cs[i].seen[1] = 0;
        llava_sched *s = NULL;
        int ok = !llava_sched_new(&s, m, g, on_sched, &sink, &err);
        EXPECT(ok, "scheduler: %s", err.msg);
        if (!ok) continue;
        llava_sched_set_max_batch(s, mb);
        for (int r = 0; r < 2 && ok; r++)
            for (int i = 0; i < n && ok; i++)
                ok = !llava_sched_add(s, cs[i].cl, cs[i].px, cs[i].nt, cs[i].H, cs[i].W, (void *)(intptr_t)(2 * i + r),
                                      &err);
        ok = ok && !llava_sched_flush(s, &err);
        EXPECT(ok, "scheduler run: %s", err.msg);
        EXPECT(llava_sched_pending(s) == 0, "scheduler: images left after flush");
        llava_sched_free(s);
        EXPECT(sink.errors == 0, "scheduler: %d image errors", sink.errors);
        double worst_ref = 0, worst_cpu = 0, worst_copy = 0;
        int top_same = 1, delivered = 1;
        for (int i = 0; i < n; i++) {
            sched_case *x = &cs[i];
            delivered &= x->seen[0] == 1 && x->seen[1] == 1;
            int cb = 0, rb = 0, gb[2] = {0, 0};
            for (int j = 0; j < x->n; j++) {
                if (x->cpu[j] > x->cpu[cb]) cb = j;
                if (x->ref[j] > x->ref[rb]) rb = j;
                for (int r = 0; r < 2; r++) {
                    if (x->got[r][j] > x->got[r][gb[r]]) gb[r] = j;
                    double d = fabs(x->got[r][j] - x->ref[j]), e = fabs(x->got[r][j] - x->cpu[j]);
                    if (d > worst_ref) worst_ref = d;
                    if (e > worst_cpu) worst_cpu = e;
                }
                double f = fabs(x->got[0][j] - x->got[1][j]);
                if (f > worst_copy) worst_copy = f;
            }
            top_same &= gb[0] == cb && gb[1] == cb && cb == rb;
        }
        EXPECT(delivered, "%s scheduler (max batch %d): every image delivered exactly once", mname, mb);
        EXPECT(top_same, "%s scheduler (max batch %d): top-1 differs from the CPU path / transformers", mname, mb);
        EXPECT(worst_cpu <= 1e-2, "%s scheduler (max batch %d): probabilities differ from the CPU path by %.3g", mname,
               mb, worst_cpu);
        EXPECT(worst_ref <= 1e-2, "%s scheduler (max batch %d): probabilities differ from transformers by %.3g", mname,
               mb, worst_ref);
        printf("INFO scheduler %s max batch %d: %d images x2, %d label sets mixed; top-1 %s; max |p - p_cpu| %.2e, "
               "|p - p_ref| %.2e, between copies %.2e\n",
               mname, mb, n, n, top_same ? "same" : "DIFFERENT", worst_cpu, worst_ref, worst_copy);
    }
    for (int i = 0; i < n; i++) {
        llava_classifier_free(cs[i].cl);
        free(cs[i].px);
    }
}

/* llava_classify_pixels_gpu on every label case of mname against the transformers reference:
 * identical top-1, probabilities within tol (what: a suffix for the messages) */
static void classify_cases(llava_model *m, llava_gpu *g, const char *mname, const char *what, const cJSON *labels,
                           double tol) {
    llava_err err = {{0}};
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(labels, "cases")) {
        if (strcmp(cJSON_GetObjectItem(c, "model")->valuestring, mname)) continue;
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
        EXPECT(ok, "%s/%s classify: %s", mname, image, err.msg);
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
            EXPECT(best == rbest, "%s/%s%s: GPU top-1 %s, transformers %s", mname, image, what, ls[best], ls[rbest]);
            EXPECT(md <= tol, "%s/%s%s: GPU probabilities differ by %.3g > %.0e", mname, image, what, md, tol);
            printf("INFO classify%s %s/%-14s top-1 %s (%s)  max |p - p_ref| %.2e\n", what, mname, image, ls[best],
                   best == rbest ? "same" : "DIFFERENT", md);
        }
        free(px);
        llava_image_free(&img);
        llava_classifier_free(cl);
    }
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
        llava_gpu_params gp = llava_gpu_params_default();
        gp.kv_tokens = 16384; /* four sequences of ~2400 positions generate together */
        if (llava_model_load(&m, dir, &err) || llava_gpu_load(&g, m, &gp, &err)) {
            EXPECT(0, "%s: %s", dir, err.msg);
            llava_model_free(m);
            continue;
        }
        const cJSON *c;
        cJSON_ArrayForEach(c, cJSON_GetObjectItem(man, "cases")) {
            if (strcmp(cJSON_GetObjectItem(c, "model")->valuestring, models[k])) continue;
            gen_case(m, g, models[k], cJSON_GetObjectItem(c, "image")->valuestring);
        }
        /* continuous batching of generation: together = alone (whole prompts per step, then steps
         * of 1000 rows: prompts split inside their images) */
        char what[64];
        snprintf(what, sizeof what, "%s gpu", models[k]);
        gen_scenario(m, g, what, 3, 0);
        snprintf(what, sizeof what, "%s gpu 1000-row steps", models[k]);
        gen_scenario(m, g, what, 4, 1000);
        /* classify on the GPU vs the transformers teacher-forcing reference */
        classify_cases(m, g, models[k], "", labels, 1e-2);
        {
            /* --quantization fp8: the same label sets, top-1 still the reference's (their margins are
             * >= 0.11), probabilities within 0.1 (H200: at most 0.074, tiny-b/landscape.png) */
            llava_gpu *g8 = NULL;
            llava_gpu_params gp8 = llava_gpu_params_default();
            gp8.fp8 = 1;
            if (llava_gpu_load(&g8, m, &gp8, &err)) EXPECT(0, "%s fp8 load: %s", models[k], err.msg);
            else classify_cases(m, g8, models[k], " fp8", labels, 0.1);
            llava_gpu_free(g8);
        }
        sched_cases(m, g, models[k], labels);
        llava_gpu_free(g);
        llava_model_free(m);
    }
    cJSON_Delete(man);
    cJSON_Delete(labels);
    TEST_END();
}
