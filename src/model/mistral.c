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

/* The decoder layers over n tokens whose K/V go to cache rows slot0.. and whose positions are
 * pos[i]; parent == NULL: causal over rows [0, slot0 + i]; else the tree rule of
 * mistral_forward_tree. Leaves the final hidden states in x. */
static int decoder_layers(const mistral_model *m, mistral_cache *cache, float *x, int n, int slot0, const int *pos,
                          const int *parent, llava_err *err) {
    const llava_text_config *c = &m->cfg;
    const int H = c->hidden, I = c->intermediate, hd = c->head_dim;
    const int QD = c->heads * hd, KD = c->kv_heads * hd;
    if (slot0 + n > cache->max_tokens)
        return llava_errf(err, "sequence of %d tokens exceeds the reserved context of %d", slot0 + n, cache->max_tokens);
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
        float *kn = kc + (size_t)slot0 * KD, *vn = vc + (size_t)slot0 * KD;
        cpu_rmsnorm(h, x, y->attn_norm, n, H, c->eps);
        cpu_linear(q, h, y->wq, NULL, n, H, QD);
        cpu_linear(kn, h, y->wk, NULL, n, H, KD);
        cpu_linear(vn, h, y->wv, NULL, n, H, KD);
        cpu_rope(q, n, c->heads, hd, slot0, pos, c->rope_theta);
        cpu_rope(kn, n, c->kv_heads, hd, slot0, pos, c->rope_theta);
        if (parent)
            cpu_attention_tree(att, q, kc, vc, n, slot0, parent, c->heads, c->kv_heads, hd, KD, scale);
        else
            cpu_attention(att, q, kc, vc, n, slot0 + n, c->heads, c->kv_heads, hd, KD, 1, slot0, c->sliding_window, scale);
        cpu_linear(h, att, y->wo, NULL, n, QD, H);
        for (size_t i = 0; i < (size_t)n * H; i++) x[i] += h[i];
        cpu_rmsnorm(h, x, y->mlp_norm, n, H, c->eps);
        cpu_linear(g, h, y->w_gate, NULL, n, H, I);
        cpu_linear(u, h, y->w_up, NULL, n, H, I);
        cpu_silu_mul(g, u, (size_t)n * I);
        cpu_linear(h, g, y->w_down, NULL, n, I, H);
        for (size_t i = 0; i < (size_t)n * H; i++) x[i] += h[i];
    }
    free(h), free(q), free(att), free(g), free(u);
    return 0;
}

/* logits (rows, V) of the final norm + LM head over rows of x (rows, H) */
static int lm_head(float *logits, const mistral_model *m, const float *x, int rows, llava_err *err) {
    const int H = m->cfg.hidden;
    float *h = llava_try_malloc(sizeof(float) * (size_t)rows * H, "final norm", err);
    if (!h) return -1;
    cpu_rmsnorm(h, x, m->norm, rows, H, m->cfg.eps);
    cpu_linear(logits, h, m->lm_head, NULL, rows, H, m->cfg.vocab);
    free(h);
    return 0;
}

int mistral_forward(float *logits, const mistral_model *m, mistral_cache *cache, float *x, int n, int all_logits,
                    llava_err *err) {
    if (decoder_layers(m, cache, x, n, cache->len, NULL, NULL, err)) return -1;
    cache->len += n;
    if (all_logits) return lm_head(logits, m, x, n, err);
    return lm_head(logits, m, x + (size_t)(n - 1) * m->cfg.hidden, 1, err);
}

int mistral_forward_tree(float *logits, const mistral_model *m, mistral_cache *cache, float *x, int n,
                         const int *parent, llava_err *err) {
    int *pos = xmalloc(sizeof(int) * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) {
        CHECK(parent[i] < i);
        pos[i] = parent[i] < 0 ? cache->len : pos[parent[i]] + 1;
    }
    int rc = decoder_layers(m, cache, x, n, cache->len, pos, parent, err);
    free(pos);
    if (rc) return -1;
    return lm_head(logits, m, x, n, err);
}
