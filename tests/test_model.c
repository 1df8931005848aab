/* test_model.c — end to end against Hugging Face transformers (tests/fixtures/ref, made by
 * tools/make_reference.py with transformers 5.17 in fp32 on the CPU): for every (model, image) case,
 * pixel values (<= 1e-6 from LlavaNextImageProcessorPil), image-token count and input ids (equal),
 * last-position logits (max-abs-diff / max|ref| <= 1e-4) and 8 greedy tokens (equal).
 * Also: intermediate tensors of one case, and loading the sharded legacy-named tiny-b. */
#include <cjson/cJSON.h>
#include <string.h>

#include "engine/generate.h"
#include "engine/prompt.h"
#include "formats/json.h"
#include "image/image.h"
#include "model/llava.h"
#include "ref.h"
#include "test.h"
#include "util/mem.h"

#define FIX "tests/fixtures/"

static const llava_tensor *need(const llava_safetensors *st, const char *name) {
    const llava_tensor *t = st ? llava_st_find(st, name) : NULL;
    if (!t) printf("FAIL reference tensor %s missing\n", name);
    return t;
}

/* pixels: ours vs HF's, reconstructed exactly from the stored uint8 values (the generator checked
 * that the round trip reproduces the processor's float32 output bit for bit). */
static double pixel_diff(const float *ours, int n_tiles, const char *png, const llava_preproc_params *p, int *ref_tiles) {
    llava_image ref = {0};
    llava_err err;
    if (llava_image_load(&ref, png, 0x7fffffff, &err)) {
        printf("FAIL %s\n", err.msg);
        return INFINITY;
    }
    int S = p->crop;
    *ref_tiles = ref.h / (3 * S);
    double md = 0;
    if (*ref_tiles != n_tiles || ref.w != S) md = INFINITY;
    else
        for (int t = 0; t < n_tiles; t++)
            for (int c = 0; c < 3; c++)
                for (int i = 0; i < S * S; i++) {
                    size_t idx = ((size_t)(t * 3 + c) * S * S + i);
                    uint8_t u = ref.rgb[idx * 3];
                    float x = (float)((double)u * p->rescale);
                    float r = (x - p->mean[c]) / p->std[c];
                    double d = fabs((double)ours[idx] - r);
                    if (d > md) md = d;
                }
    llava_image_free(&ref);
    return md;
}

static void run_case(llava_model *m, const char *mname, const cJSON *c, const cJSON *images, const char *prompt) {
    const char *image = cJSON_GetObjectItem(c, "image")->valuestring;
    char path[512], what[256];
    snprintf(what, sizeof what, "%s/%s", mname, image);
    llava_err err = {{0}};
    llava_image img = {0};
    float *pixels = NULL, *feats = NULL;
    int n_tiles = 0, n_feats = 0, *ids = NULL, n_ids = 0;
    llava_gen_result res = {0};
    snprintf(path, sizeof path, FIX "ref/images/%s", image);
    int ok = !llava_image_load(&img, path, 89478485, &err) && !llava_preprocess(&pixels, &n_tiles, &img, &m->pp, &err);
    EXPECT(ok, "%s: decode/preprocess: %s", what, err.msg);
    if (!ok) goto done;
    /* pixels: once per image (first model) is enough, but it is cheap */
    snprintf(path, sizeof path, FIX "ref/pixels-%s.png", image);
    int ref_tiles = 0;
    double pd = pixel_diff(pixels, n_tiles, path, &m->pp, &ref_tiles);
    EXPECT(pd <= 1e-6, "%s: pixel values differ from LlavaNextImageProcessorPil by %g (tiles %d vs %d)", what, pd, n_tiles,
           ref_tiles);
    const cJSON *im = cJSON_GetObjectItem(images, image);
    int want_tok = cJSON_GetObjectItem(im, "image_tokens")->valueint;
    int got_tok = llava_model_image_tokens(m, img.h, img.w);
    EXPECT(got_tok == want_tok, "%s: image tokens %d, transformers %d", what, got_tok, want_tok);
    ok = !llava_image_features(&feats, &n_feats, m, pixels, n_tiles, img.h, img.w, &err);
    EXPECT(ok, "%s: image features: %s", what, err.msg);
    if (!ok) goto done;
    char *text = NULL;
    ok = !llava_build_prompt(&ids, &n_ids, &text, m, "What is shown in this image?", 0, 1, &n_feats, &err);
    EXPECT(ok, "%s: prompt: %s", what, err.msg);
    if (!ok) goto done;
    EXPECT(!strcmp(text, prompt), "%s: chat template rendered \"%s\", transformers \"%s\"", what, text, prompt);
    free(text);
    snprintf(path, sizeof path, FIX "ref/%s-%s.safetensors.gz", mname, image);
    llava_safetensors *ref = ref_open_gz(path);
    EXPECT(ref != NULL, "%s: cannot read %s", what, path);
    if (!ref) goto done;
    const llava_tensor *rid = need(ref, "input_ids"), *rlg = need(ref, "logits"), *rgr = need(ref, "greedy");
    if (rid && rlg && rgr) {
        const int32_t *r = rid->data;
        int same = rid->numel == n_ids;
        int first = -1;
        for (int i = 0; same && i < n_ids; i++)
            if (r[i] != ids[i]) same = 0, first = i;
        EXPECT(same, "%s: input ids differ (ours %d tokens, transformers %lld; first difference at %d)", what, n_ids,
               (long long)rid->numel, first);
        llava_gen_params gp;
        llava_gen_params_default(&gp);
        gp.max_tokens = (int)rgr->numel;
        llava_gen_image gi = {pixels, n_tiles, img.h, img.w};
        llava_gen_request req = {ids, n_ids, &gi, 1, gp, NULL, NULL, NULL};
        ok = !llava_generate(&res, m, NULL, &req, &err);
        EXPECT(ok, "%s: generate: %s", what, err.msg);
        if (ok) {
            double rd = rel_max_diff(res.prompt_logits, rlg->data, (size_t)rlg->numel);
            EXPECT(rd <= 1e-4, "%s: last-position logits rel diff %.3g > 1e-4", what, rd);
            printf("INFO %-22s tokens %d image %d  logits rel diff %.2e\n", what, n_ids, n_feats, rd);
            const int32_t *g = rgr->data;
            int gsame = res.n_gen == rgr->numel;
            for (int i = 0; gsame && i < res.n_gen; i++) gsame = g[i] == res.tokens[i].id;
            EXPECT(gsame, "%s: greedy tokens differ from transformers generate()", what);
        }
    }
    llava_st_close(ref);
done:
    llava_gen_result_free(&res);
    llava_image_free(&img);
    free(pixels), free(feats), free(ids);
}

/* intermediates of tiny-a / landscape.png: vision hidden state of the selected layer, and the
 * prompt embeddings after the image features were scattered in */
static void debug_case(llava_model *m) {
    llava_safetensors *ref = ref_open_gz(FIX "ref/tiny-a-landscape.png-debug.safetensors.gz");
    EXPECT(ref != NULL, "debug reference unreadable");
    if (!ref) return;
    llava_err err;
    llava_image img = {0};
    float *pixels = NULL;
    int n_tiles = 0;
    if (llava_image_load(&img, FIX "ref/images/landscape.png", 89478485, &err) ||
        llava_preprocess(&pixels, &n_tiles, &img, &m->pp, &err)) {
        EXPECT(0, "debug: %s", err.msg);
        goto done;
    }
    const llava_tensor *vh = need(ref, "vision_hidden");
    if (vh) {
        size_t n = (size_t)n_tiles * m->clip.n_pos * m->cfg.vision.hidden;
        float *hs = xmalloc(sizeof(float) * n);
        EXPECT(!clip_forward(hs, &m->clip, pixels, n_tiles, &err), "clip_forward");
        EXPECT((size_t)vh->numel == n, "vision hidden size %lld vs %zu", (long long)vh->numel, n);
        if ((size_t)vh->numel == n) {
            double d = rel_max_diff(hs, vh->data, n);
            EXPECT(d <= 1e-5, "vision hidden state rel diff %.3g", d);
            printf("INFO vision hidden state (layer %d) rel diff %.2e\n", m->cfg.vision_feature_layer, d);
        }
        free(hs);
    }
    const llava_tensor *ie = need(ref, "inputs_embeds");
    if (ie) {
        float *feats = NULL;
        int nf = 0, *ids = NULL, n_ids = 0;
        if (!llava_image_features(&feats, &nf, m, pixels, n_tiles, img.h, img.w, &err) &&
            !llava_build_prompt(&ids, &n_ids, NULL, m, "What is shown in this image?", 0, 1, &nf, &err)) {
            const int H = m->cfg.text.hidden;
            float *x = xmalloc(sizeof(float) * (size_t)n_ids * H);
            mistral_embed(x, &m->lm, ids, n_ids);
            for (int i = 0, f = 0; i < n_ids; i++)
                if (ids[i] == m->cfg.image_token_index) memcpy(x + (size_t)i * H, feats + (size_t)f++ * H, sizeof(float) * H);
            EXPECT(ie->numel == (int64_t)n_ids * H, "inputs_embeds size");
            if (ie->numel == (int64_t)n_ids * H) {
                double d = rel_max_diff(x, ie->data, (size_t)ie->numel);
                EXPECT(d <= 1e-5, "inputs_embeds (packed image features) rel diff %.3g", d);
                printf("INFO packed image features rel diff %.2e\n", d);
            }
            free(x);
        } else
            EXPECT(0, "debug features: %s", err.msg);
        free(feats), free(ids);
    }
done:
    free(pixels);
    llava_image_free(&img);
    llava_st_close(ref);
}

int main(void) {
    llava_err err;
    cJSON *man = llava_json_load(FIX "ref/manifest.json", &err);
    EXPECT(man != NULL, "manifest: %s", err.msg);
    if (!man) TEST_END();
    const cJSON *cases = cJSON_GetObjectItem(man, "cases"), *images = cJSON_GetObjectItem(man, "images");
    const char *prompt = cJSON_GetObjectItem(man, "prompt_text")->valuestring;
    const char *models[] = {"tiny-a", "tiny-b"};
    for (int k = 0; k < 2; k++) {
        char dir[256];
        snprintf(dir, sizeof dir, FIX "%s", models[k]);
        llava_model *m = NULL;
        int ok = !llava_model_load(&m, dir, &err);
        EXPECT(ok, "load %s: %s", dir, err.msg);
        if (!ok) continue;
        const cJSON *c;
        cJSON_ArrayForEach(c, cases) {
            if (strcmp(cJSON_GetObjectItem(c, "model")->valuestring, models[k])) continue;
            run_case(m, models[k], c, images, prompt);
        }
        if (k == 0) debug_case(m);
        llava_model_free(m);
    }
    cJSON_Delete(man);
    TEST_END();
}
