/* mistral.c — Mistral/Llama decoder forward on the CPU in fp32 (REFERENCE §5). */
#include "model/mistral.h"

#include <math.h>
#include <string.h>

#include "backend/cpu/ops.h"
#include "model/weights.h"
#include "util/mem.h"

#define LM "model.language_model."

int mistral_load(mistral_model *m, const llava_safetensors *st, const llava_text_config *cfg, llava_err *err) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    const int H = cfg->hidden, I = cfg->intermediate, V = cfg->vocab;
    const int QD = cfg->heads * cfg->head_dim, KD = cfg->kv_heads * cfg->head_dim;
    if (llava_weight_f32f(&m->embed, st, err, V, H, 0, 0, LM "embed_tokens.weight") ||
        llava_weight_f32f(&m->norm, st, err, H, 0, 0, 0, LM "norm.weight"))
        goto fail;
    if (cfg->tie_embeddings && !llava_weight_find(st, "lm_head.weight")) m->lm_head = m->embed;
    else if (llava_weight_f32f(&m->lm_head, st, err, V, H, 0, 0, "lm_head.weight")) goto fail;
    m->layers = xcalloc((size_t)cfg->layers, sizeof(mistral_layer));
    for (int l = 0; l < cfg->layers; l++) {
        mistral_layer *y = &m->layers[l];
#define W(dst, a, b, nm) llava_weight_f32f(&y->dst, st, err, a, b, 0, 0, LM "layers.%d." nm, l)
        if (W(attn_norm, H, 0, "input_layernorm.weight") || W(wq, QD, H, "self_attn.q_proj.weight") ||
            W(wk, KD, H, "self_attn.k_proj.weight") || W(wv, KD, H, "self_attn.v_proj.weight") ||
            W(wo, H, QD, "self_attn.o_proj.weight") || W(mlp_norm, H, 0, "post_attention_layernorm.weight") ||
            W(w_gate, I, H, "mlp.gate_proj.weight") || W(w_up, I, H, "mlp.up_proj.weight") ||
            W(w_down, H, I, "mlp.down_proj.weight"))
            goto fail;
#undef W
    }
    return 0;
fail:
    mistral_free(m);
    return -1;
}

void mistral_free(mistral_model *m) {
    if (m->lm_head != m->embed) free(m->lm_head);
    free(m->embed);
    free(m->norm);
    if (m->layers)
        for (int l = 0; l < m->cfg.layers; l++) {
            float **p = (float **)&m->layers[l];
            for (size_t k = 0; k < sizeof(mistral_layer) / sizeof(float *); k++) free(p[k]);
        }
    free(m->layers);
    memset(m, 0, sizeof *m);
}

int mistral_cache_init(mistral_cache *c, const llava_text_config *cfg, int max_tokens, llava_err *err) {
    memset(c, 0, sizeof *c);
    size_t n = (size_t)cfg->layers * max_tokens * cfg->kv_heads * cfg->head_dim;
    c->k = llava_try_malloc(sizeof(float) * n, "KV cache", err);
    c->v = c->k ? llava_try_malloc(sizeof(float) * n, "KV cache", err) : NULL;
    if (!c->v) {
        free(c->k);
        c->k = NULL;
        return -1;
    }
    c->max_tokens = max_tokens;
    return 0;
}

void mistral_cache_free(mistral_cache *c) {
    free(c->k);
    free(c->v);
    memset(c, 0, sizeof *c);
}

void mistral_embed(float *out, const mistral_model *m, const int *ids, int n) {
    const int H = m->cfg.hidden;
    for (int i = 0; i < n; i++) memcpy(out + (size_t)i * H, m->embed + (size_t)ids[i] * H, sizeof(float) * H);
}

int mistral_forward(float *logits, const mistral_model *m, mistral_cache *cache, float *x, int n, int all_logits,
                    llava_err *err) {
    const llava_text_config *c = &m->cfg;
    const int H = c->hidden, I = c->intermediate, hd = c->head_dim;
    const int QD = c->heads * hd, KD = c->kv_heads * hd, pos0 = cache->len;
    if (pos0 + n > cache->max_tokens)
        return llava_errf(err, "sequence of %d tokens exceeds the reserved context of %d", pos0 + n, cache->max_tokens);
    size_t big = (size_t)n * (size_t)(I > QD ? I : QD);
    float *h = llava_try_malloc(sizeof(float) * (size_t)n * H, "decoder activations", err);
    float *q = llava_try_malloc(sizeof(float) * (size_t)n * QD, "decoder q", err);
    float *att = llava_try_malloc(sizeof(float) * (size_t)n * QD, "decoder attention", err);
    float *g = llava_try_malloc(sizeof(float) * big, "decoder mlp", err);
    float *u = llava_try_malloc(sizeof(float) * big, "decoder mlp", err);
    if (!h || !q || !att || !g || !u) {
        free(h), free(q), free(att), free(g), free(u);
        return -1;
    }
    const float scale = 1.0f / sqrtf((float)hd);
    for (int l = 0; l < c->layers; l++) {
        const mistral_layer *y = &m->layers[l];
        float *kc = cache->k + (size_t)l * cache->max_tokens * KD, *vc = cache->v + (size_t)l * cache->max_tokens * KD;
        cpu_rmsnorm(h, x, y->attn_norm, n, H, c->eps);
        cpu_linear(q, h, y->wq, NULL, n, H, QD);
        cpu_linear(kc + (size_t)pos0 * KD, h, y->wk, NULL, n, H, KD);
        cpu_linear(vc + (size_t)pos0 * KD, h, y->wv, NULL, n, H, KD);
        cpu_rope(q, n, c->heads, hd, pos0, c->rope_theta);
        cpu_rope(kc + (size_t)pos0 * KD, n, c->kv_heads, hd, pos0, c->rope_theta);
        cpu_attention(att, q, kc, vc, n, pos0 + n, c->heads, c->kv_heads, hd, KD, 1, pos0, c->sliding_window, scale);
        cpu_linear(h, att, y->wo, NULL, n, QD, H);
        for (size_t i = 0; i < (size_t)n * H; i++) x[i] += h[i];
        cpu_rmsnorm(h, x, y->mlp_norm, n, H, c->eps);
        cpu_linear(g, h, y->w_gate, NULL, n, H, I);
        cpu_linear(u, h, y->w_up, NULL, n, H, I);
        cpu_silu_mul(g, u, (size_t)n * I);
        cpu_linear(h, g, y->w_down, NULL, n, I, H);
        for (size_t i = 0; i < (size_t)n * H; i++) x[i] += h[i];
    }
    cache->len = pos0 + n;
    if (all_logits) {
        cpu_rmsnorm(h, x, m->norm, n, H, c->eps);
        cpu_linear(logits, h, m->lm_head, NULL, n, H, c->vocab);
    } else {
        cpu_rmsnorm(h, x + (size_t)(n - 1) * H, m->norm, 1, H, c->eps);
        cpu_linear(logits, h, m->lm_head, NULL, 1, H, c->vocab);
    }
    free(h), free(q), free(att), free(g), free(u);
    return 0;
}
