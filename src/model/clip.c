/* clip.c — CLIP vision tower forward on the CPU in fp32 (REFERENCE §3). */
#include "model/clip.h"

#include <math.h>
#include <string.h>

#include "backend/cpu/ops.h"
#include "model/weights.h"
#include "util/mem.h"

#define VT "model.vision_tower.vision_model."

void clip_init_shapes(clip_model *m, const llava_vision_config *cfg, int feature_layer) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->n_run = feature_layer < 0 ? cfg->layers + 1 + feature_layer : feature_layer;
    m->grid = cfg->image_size / cfg->patch;
    m->n_pos = m->grid * m->grid + 1;
}

int clip_load(clip_model *m, const llava_safetensors *st, const llava_vision_config *cfg, int feature_layer,
              llava_err *err) {
    clip_init_shapes(m, cfg, feature_layer);
    int D = cfg->hidden, I = cfg->intermediate, P = cfg->patch;
    if (llava_weight_f32f(&m->patch_w, st, err, D, 3, P, P, VT "embeddings.patch_embedding.weight") ||
        llava_weight_f32f(&m->class_emb, st, err, D, 0, 0, 0, VT "embeddings.class_embedding") ||
        llava_weight_f32f(&m->pos_emb, st, err, m->n_pos, D, 0, 0, VT "embeddings.position_embedding.weight") ||
        llava_weight_f32f(&m->pre_ln_w, st, err, D, 0, 0, 0, VT "pre_layrnorm.weight") ||
        llava_weight_f32f(&m->pre_ln_b, st, err, D, 0, 0, 0, VT "pre_layrnorm.bias"))
        goto fail;
    m->layers = xcalloc((size_t)(m->n_run ? m->n_run : 1), sizeof(clip_layer));
    for (int l = 0; l < m->n_run; l++) {
        clip_layer *y = &m->layers[l];
#define W(dst, a, b, nm) llava_weight_f32f(&y->dst, st, err, a, b, 0, 0, VT "encoder.layers.%d." nm, l)
        if (W(ln1_w, D, 0, "layer_norm1.weight") || W(ln1_b, D, 0, "layer_norm1.bias") ||
            W(q_w, D, D, "self_attn.q_proj.weight") || W(q_b, D, 0, "self_attn.q_proj.bias") ||
            W(k_w, D, D, "self_attn.k_proj.weight") || W(k_b, D, 0, "self_attn.k_proj.bias") ||
            W(v_w, D, D, "self_attn.v_proj.weight") || W(v_b, D, 0, "self_attn.v_proj.bias") ||
            W(o_w, D, D, "self_attn.out_proj.weight") || W(o_b, D, 0, "self_attn.out_proj.bias") ||
            W(ln2_w, D, 0, "layer_norm2.weight") || W(ln2_b, D, 0, "layer_norm2.bias") ||
            W(fc1_w, I, D, "mlp.fc1.weight") || W(fc1_b, I, 0, "mlp.fc1.bias") ||
            W(fc2_w, D, I, "mlp.fc2.weight") || W(fc2_b, D, 0, "mlp.fc2.bias"))
            goto fail;
#undef W
    }
    return 0;
fail:
    clip_free(m);
    return -1;
}

void clip_free(clip_model *m) {
    free(m->patch_w);
    free(m->class_emb);
    free(m->pos_emb);
    free(m->pre_ln_w);
    free(m->pre_ln_b);
    if (m->layers)
        for (int l = 0; l < m->n_run; l++) {
            float **p = (float **)&m->layers[l];
            for (size_t k = 0; k < sizeof(clip_layer) / sizeof(float *); k++) free(p[k]);
        }
    free(m->layers);
    memset(m, 0, sizeof *m);
}

static void apply_act(float *x, size_t n, int act) {
    switch (act) {
    case LLAVA_ACT_QUICK_GELU: cpu_quick_gelu(x, n); break;
    case LLAVA_ACT_GELU_TANH: cpu_gelu_tanh(x, n); break;
    default: cpu_gelu(x, n); break;
    }
}

int clip_forward(float *out, const clip_model *m, const float *pixels, int n_tiles, llava_err *err) {
    const int D = m->cfg.hidden, I = m->cfg.intermediate, P = m->cfg.patch, S = m->cfg.image_size, G = m->grid;
    const int NP = m->n_pos, K = 3 * P * P, H = m->cfg.heads, hd = m->cfg.head_dim;
    const size_t ntok = (size_t)n_tiles * NP;
    float *cols = llava_try_malloc(sizeof(float) * (size_t)G * G * K, "vision patches", err);
    float *h = llava_try_malloc(sizeof(float) * ntok * D, "vision activations", err);
    float *q = llava_try_malloc(sizeof(float) * ntok * D * 3, "vision q/k/v", err);
    float *mlp = llava_try_malloc(sizeof(float) * ntok * (I > D ? I : D), "vision mlp", err);
    if (!cols || !h || !q || !mlp) {
        free(cols), free(h), free(q), free(mlp);
        return -1;
    }
    float *k = q + ntok * D, *v = k + ntok * D;
    /* embeddings: im2col + GEMM for the patch conv (stride = kernel = P), CLS first, + positions */
    for (int t = 0; t < n_tiles; t++) {
        float *ht = h + (size_t)t * NP * D;
        cpu_patchify(cols, pixels + (size_t)t * 3 * S * S, 1, S, P);
        cpu_linear(ht + D, cols, m->patch_w, NULL, G * G, K, D);
        cpu_clip_embed(ht, ht + D, m->class_emb, m->pos_emb, 1, G * G, D);
    }
    cpu_layernorm(h, h, m->pre_ln_w, m->pre_ln_b, (int)ntok, D, m->cfg.eps);
    float *x = out; /* residual stream lives in out */
    memcpy(x, h, sizeof(float) * ntok * D);
    const float scale = 1.0f / sqrtf((float)hd);
    for (int l = 0; l < m->n_run; l++) {
        const clip_layer *y = &m->layers[l];
        cpu_layernorm(h, x, y->ln1_w, y->ln1_b, (int)ntok, D, m->cfg.eps);
        cpu_linear(q, h, y->q_w, y->q_b, (int)ntok, D, D);
        cpu_linear(k, h, y->k_w, y->k_b, (int)ntok, D, D);
        cpu_linear(v, h, y->v_w, y->v_b, (int)ntok, D, D);
        for (int t = 0; t < n_tiles; t++) {
            size_t o = (size_t)t * NP * D;
            cpu_attention(h + o, q + o, k + o, v + o, NP, NP, H, H, hd, D, 0, 0, 0, scale);
        }
        cpu_linear(mlp, h, y->o_w, y->o_b, (int)ntok, D, D);
        for (size_t i = 0; i < ntok * D; i++) x[i] += mlp[i];
        cpu_layernorm(h, x, y->ln2_w, y->ln2_b, (int)ntok, D, m->cfg.eps);
        cpu_linear(mlp, h, y->fc1_w, y->fc1_b, (int)ntok, D, I);
        apply_act(mlp, ntok * I, m->cfg.act);
        cpu_linear(h, mlp, y->fc2_w, y->fc2_b, (int)ntok, I, D);
        for (size_t i = 0; i < ntok * D; i++) x[i] += h[i];
    }
    free(cols), free(h), free(q), free(mlp);
    return 0;
}
