/* llava.c — loads a Hugging Face LLaVA-NeXT directory and composes the blocks (REFERENCE §3–§4). */
#include "model/llava.h"

#include <math.h>
#include <string.h>

#include "backend/cpu/ops.h"
#include "model/pack.h"
#include "model/weights.h"
#include "util/mem.h"

void llava_preproc_from_config(llava_preproc_params *p, const llava_config *c) {
    llava_preproc_params_default(p);
    p->crop = c->crop_size;
    p->patch = c->vision.patch;
    p->n_pinpoints = c->n_pinpoints;
    memcpy(p->pinpoints, c->pinpoints, sizeof(int) * 2 * (size_t)c->n_pinpoints);
    for (int i = 0; i < 3; i++) {
        p->mean[i] = c->do_normalize ? c->image_mean[i] : 0.0f;
        p->std[i] = c->do_normalize ? c->image_std[i] : 1.0f;
    }
    p->rescale = c->do_rescale ? c->rescale_factor : 1.0;
    p->num_additional_image_tokens = c->num_additional_image_tokens;
    p->select_default = c->select_default;
}

int llava_model_load(llava_model **out, const char *dir, llava_err *err) {
    return llava_model_load_ex(out, dir, 1, err);
}

int llava_model_load_ex(llava_model **out, const char *dir, int cpu_weights, llava_err *err) {
    *out = NULL;
    llava_model *m = xcalloc(1, sizeof *m);
    m->cpu_weights = cpu_weights;
    m->dir = xstrdup(dir);
    char *tok_path = NULL;
    if (llava_config_load(&m->cfg, dir, err)) goto fail;
    const llava_config *c = &m->cfg;
    if (!c->select_default) {
        llava_errf(err, "%s/config.json: vision_feature_select_strategy \"full\" cannot be packed by anyres "
                        "(LLaVA-NeXT needs \"default\")", dir);
        goto fail;
    }
    llava_preproc_from_config(&m->pp, c);
    tok_path = llava_path_join(dir, "tokenizer.json");
    if (llava_tokenizer_load(&m->tok, tok_path, err)) goto fail;
    if (llava_tokenizer_vocab_size(m->tok) > c->text.vocab) {
        llava_errf(err, "%s: the tokenizer has %d tokens but the model's vocab_size is %d", tok_path,
                   llava_tokenizer_vocab_size(m->tok), c->text.vocab);
        goto fail;
    }
    llava_err terr;
    if (llava_chat_template_load(&m->tmpl, dir, &terr)) {
        m->tmpl = NULL;
        snprintf(m->tmpl_error, sizeof m->tmpl_error, "%s", terr.msg);
    }
    if (llava_st_open_dir(&m->st, dir, err)) goto fail;
    const int Dv = c->vision.hidden, Ht = c->text.hidden;
    if (!cpu_weights) {
        clip_init_shapes(&m->clip, &c->vision, c->vision_feature_layer);
        m->lm.cfg = c->text;
        free(tok_path);
        *out = m;
        return 0;
    }
    if (clip_load(&m->clip, m->st, &c->vision, c->vision_feature_layer, err)) goto fail;
    if (llava_weight_f32f(&m->proj_w1, m->st, err, Ht, Dv, 0, 0, "model.multi_modal_projector.linear_1.weight") ||
        llava_weight_f32f(&m->proj_w2, m->st, err, Ht, Ht, 0, 0, "model.multi_modal_projector.linear_2.weight") ||
        llava_weight_f32f(&m->image_newline, m->st, err, Ht, 0, 0, 0, "model.image_newline"))
        goto fail;
    if (c->proj_bias &&
        (llava_weight_f32f(&m->proj_b1, m->st, err, Ht, 0, 0, 0, "model.multi_modal_projector.linear_1.bias") ||
         llava_weight_f32f(&m->proj_b2, m->st, err, Ht, 0, 0, 0, "model.multi_modal_projector.linear_2.bias")))
        goto fail;
    if (mistral_load(&m->lm, m->st, &c->text, err)) goto fail;
    free(tok_path);
    *out = m;
    return 0;
fail:
    if (tok_path) llava_err_prefix(err, "loading %s", dir);
    free(tok_path);
    llava_model_free(m);
    return -1;
}

void llava_model_free(llava_model *m) {
    if (!m) return;
    clip_free(&m->clip);
    mistral_free(&m->lm);
    free(m->proj_w1), free(m->proj_b1), free(m->proj_w2), free(m->proj_b2), free(m->image_newline);
    llava_tokenizer_free(m->tok);
    if (m->tmpl) llava_chat_template_free(m->tmpl);
    if (m->st) llava_st_close(m->st);
    free(m->dir);
    free(m);
}

int llava_model_image_tokens(const llava_model *m, int H, int W) {
    return llava_pack_count(&m->pp, m->clip.grid, H, W);
}

int llava_image_features(float **feats, int *n, const llava_model *m, const float *pixels, int n_tiles, int H, int W,
                         llava_err *err) {
    *feats = NULL;
    *n = 0;
    if (!m->cpu_weights) return llava_errf(err, "the model was loaded for the GPU only (no CPU weights)");
    const llava_config *c = &m->cfg;
    const int Dv = c->vision.hidden, Ht = c->text.hidden, NP = m->clip.n_pos, per = NP - 1;
    const size_t nt = (size_t)n_tiles;
    float *hs = llava_try_malloc(sizeof(float) * nt * NP * Dv, "vision hidden states", err);
    float *sel = hs ? llava_try_malloc(sizeof(float) * nt * per * Dv, "vision features", err) : NULL;
    float *p1 = sel ? llava_try_malloc(sizeof(float) * nt * per * Ht, "projector", err) : NULL;
    float *p2 = p1 ? llava_try_malloc(sizeof(float) * nt * per * Ht, "projector", err) : NULL;
    int count = llava_model_image_tokens(m, H, W);
    float *out = p2 ? llava_try_malloc(sizeof(float) * (size_t)count * Ht, "image features", err) : NULL;
    int rc = -1;
    if (!out) goto done;
    if (clip_forward(hs, &m->clip, pixels, n_tiles, err)) goto done;
    for (size_t t = 0; t < nt; t++) /* strategy "default": drop CLS */
        memcpy(sel + t * per * Dv, hs + (t * NP + 1) * Dv, sizeof(float) * per * Dv);
    cpu_linear(p1, sel, m->proj_w1, m->proj_b1, (int)(nt * per), Dv, Ht);
    switch (c->proj_act) {
    case LLAVA_ACT_QUICK_GELU: cpu_quick_gelu(p1, nt * per * Ht); break;
    case LLAVA_ACT_SILU: for (size_t i = 0; i < nt * per * Ht; i++) p1[i] = p1[i] / (1.0f + expf(-p1[i])); break;
    case LLAVA_ACT_GELU_TANH: cpu_gelu_tanh(p1, nt * per * Ht); break;
    default: cpu_gelu(p1, nt * per * Ht); break;
    }
    cpu_linear(p2, p1, m->proj_w2, m->proj_b2, (int)(nt * per), Ht, Ht);
    int got = llava_pack_features(out, p2, n_tiles, m->clip.grid, Ht, m->image_newline, &m->pp, H, W);
    CHECK(got == count);
    *feats = out;
    *n = count;
    out = NULL;
    rc = 0;
done:
    free(hs), free(sel), free(p1), free(p2), free(out);
    return rc;
}

void llava_scatter_image_features(float *x, const llava_model *m, const int *ids, int n, float *const *feats,
                                  const int *n_feats, int n_images) {
    const int Ht = m->cfg.text.hidden, img = m->cfg.image_token_index;
    for (int i = 0, im = 0, f = 0; i < n; i++) {
        if (ids[i] != img) continue;
        while (im < n_images && f >= n_feats[im]) im++, f = 0;
        CHECK(im < n_images);
        memcpy(x + (size_t)i * Ht, feats[im] + (size_t)f++ * Ht, sizeof(float) * Ht);
    }
}

int llava_trie_inner(const int *par, int n, int *inner) {
    for (int j = 0; j < n; j++) inner[j] = -1;
    for (int j = 0; j < n; j++)
        if (par[j] >= 0) inner[par[j]] = 0;
    int count = 0;
    for (int j = 0; j < n; j++)
        if (inner[j] >= 0) inner[j] = count++;
    return count;
}
