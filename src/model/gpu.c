/* gpu.c — the LLaVA-NeXT blocks on a CUDA device (see gpu.h), composed from backend/cuda ops.
 *
 * Weights come from the CPU model's fp32 copies and are stored as bf16 on the device; activations
 * are bf16, norms/softmax fp32 inside the kernels, logits fp32. Buffers are reserved at load for
 * max_tokens prompt tokens, so a request allocates nothing on the device.
 */
#include "model/gpu.h"

#include <math.h>
#include <string.h>

#include "model/pack.h"
#include "model/weights.h"
#include "util/mem.h"

#ifndef LLAVA_CUDA

int llava_gpu_available(char *name, size_t name_len) {
    if (name && name_len) name[0] = 0;
    return 0;
}
int llava_gpu_load(llava_gpu **out, const llava_model *m, int max_tokens, llava_err *err) {
    *out = NULL;
    return llava_errf(err, "this build of llava has no CUDA backend (nvcc was not found at build time); use --device cpu");
}
void llava_gpu_free(llava_gpu *g) { (void)g; }
int llava_gpu_encode_image(llava_gpu *g, const float *pixels, int n_tiles, int H, int W, int *n_feats, llava_err *err) {
    return llava_errf(err, "no CUDA backend");
}
int llava_gpu_prefill(llava_gpu *g, const int *ids, int n_ids, float *logits, llava_err *err) {
    return llava_errf(err, "no CUDA backend");
}
int llava_gpu_decode(llava_gpu *g, int id, float *logits, llava_err *err) { return llava_errf(err, "no CUDA backend"); }
int llava_gpu_tree(llava_gpu *g, const int *tok, const int *parent, int n, float *logits, llava_err *err) {
    return llava_errf(err, "no CUDA backend");
}
int llava_gpu_vision_hidden(llava_gpu *g, float *out, llava_err *err) { return llava_errf(err, "no CUDA backend"); }

#else

#include "backend/cuda/cuda_ops.h"

typedef struct {
    bf16 *ln1_w, *ln1_b, *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *o_w, *o_b, *ln2_w, *ln2_b, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
} gclip_layer;

typedef struct {
    bf16 *attn_norm, *wq, *wk, *wv, *wo, *mlp_norm, *w_gu /* (2I, H): gate rows then up rows */, *w_down;
} gdec_layer;

struct llava_gpu {
    const llava_model *m;
    cuda_ctx *c;
    int max_tokens, max_tiles;
    /* weights */
    bf16 *patch_w, *class_emb, *pos_emb, *pre_ln_w, *pre_ln_b;
    gclip_layer *cl;
    bf16 *p_w1, *p_b1, *p_w2, *p_b2, *newline;
    bf16 *embed, *norm, *lm_head;
    gdec_layer *dl;
    /* vision buffers (max_tiles tiles) */
    bf16 *v_cols, *v_x, *v_h, *v_q, *v_k, *v_v, *v_mlp, *v_tmp;
    int *v_ids;          /* device: scratch index lists */
    int *v_qs;           /* device: tile starts for attention */
    bf16 *feats;         /* packed image features (max_tokens, Ht) */
    int n_feats, last_tiles;
    /* decoder buffers (max_tokens tokens) */
    bf16 *x, *h, *q, *att, *gu, *act; /* x: bf16 staging of embeddings + image features */
    float *xf;           /* the residual stream in fp32 (max_tokens, H) */
    bf16 *kc, *vc;       /* (layers, max_tokens, KD) */
    float *logits;       /* (max_tree, V) */
    int max_tree;
    int *d_ids, *d_pos, *d_idx, *d_starts, *d_parent;
    int len;             /* tokens in the KV cache */
};

/* Uploads tensor t as bf16 into *dst + offset elements, allocating *dst with alloc_elems elements
 * when it is NULL. BF16 tensors go up as they are in the mmapped file; F32/F16 are converted. */
static int upload_tensor(llava_gpu *g, bf16 **dst, size_t alloc_elems, size_t offset, const llava_tensor *t,
                         llava_err *err) {
    if (!*dst && !(*dst = cuda_malloc(sizeof(bf16) * alloc_elems, t->name, err))) return -1;
    if (t->dtype == LLAVA_DT_BF16) {
        cuda_upload(g->c, *dst + offset, t->data, t->nbytes);
        return 0;
    }
    float *tmp = llava_try_malloc(sizeof(float) * (size_t)t->numel, t->name, err);
    if (!tmp) return -1;
    int rc = llava_tensor_to_f32(tmp, t, err) || cuda_upload_f32_as_bf16(g->c, *dst + offset, tmp, (size_t)t->numel, err);
    free(tmp);
    return rc ? -1 : 0;
}

/* Finds the checkpoint tensor (llava_weight_getf: name and shape checked) and uploads it; alloc 0
 * means the tensor's own size. dims d0..d3 (unused = 0). */
#define UPT(dst, alloc, off, d0, d1, d2, d3, ...)                                                        \
    ((t = llava_weight_getf(m->st, err, d0, d1, d2, d3, __VA_ARGS__)) == NULL ||                          \
     upload_tensor(g, &(dst), (size_t)(alloc) != 0 ? (size_t)(alloc) : (size_t)t->numel, (size_t)(off), t, err))

#define VT "model.vision_tower.vision_model."
#define LM "model.language_model."
#define ALLOC(dst, bytes)                                                    \
    do {                                                                     \
        if (!((dst) = cuda_malloc((size_t)(bytes), #dst, err))) goto fail;   \
    } while (0)

int llava_gpu_available(char *name, size_t name_len) { return cuda_device_count(name, name_len); }

void llava_gpu_free(llava_gpu *g) {
    if (!g) return;
    const llava_config *c = &g->m->cfg;
    void *ptrs[] = {g->patch_w, g->class_emb, g->pos_emb, g->pre_ln_w, g->pre_ln_b, g->p_w1, g->p_b1, g->p_w2, g->p_b2,
                    g->newline, g->embed, g->norm, g->lm_head == g->embed ? NULL : g->lm_head, g->v_cols, g->v_x, g->v_h,
                    g->v_q, g->v_k, g->v_v, g->v_mlp, g->v_tmp, g->v_ids, g->v_qs, g->feats, g->x, g->h, g->q, g->att,
                    g->gu, g->act, g->xf, g->kc, g->vc, g->logits, g->d_ids, g->d_pos, g->d_idx, g->d_starts, g->d_parent};
    for (size_t i = 0; i < sizeof ptrs / sizeof ptrs[0]; i++)
        if (ptrs[i]) cuda_free(ptrs[i]);
    if (g->cl)
        for (int l = 0; l < g->m->clip.n_run; l++) {
            bf16 **p = (bf16 **)&g->cl[l];
            for (size_t k = 0; k < sizeof(gclip_layer) / sizeof(bf16 *); k++)
                if (p[k]) cuda_free(p[k]);
        }
    if (g->dl)
        for (int l = 0; l < c->text.layers; l++) {
            bf16 **p = (bf16 **)&g->dl[l];
            for (size_t k = 0; k < sizeof(gdec_layer) / sizeof(bf16 *); k++)
                if (p[k]) cuda_free(p[k]);
        }
    free(g->cl);
    free(g->dl);
    if (g->c) cuda_ctx_free(g->c);
    free(g);
}

int llava_gpu_load(llava_gpu **out, const llava_model *m, int max_tokens, llava_err *err) {
    *out = NULL;
    if (cuda_device_count(NULL, 0) <= 0) return llava_errf(err, "no CUDA device is available");
    llava_gpu *g = xcalloc(1, sizeof *g);
    g->m = m;
    g->max_tokens = max_tokens;
    const llava_config *c = &m->cfg;
    const clip_model *cm = &m->clip;
    const int Dv = c->vision.hidden, Iv = c->vision.intermediate, P = c->vision.patch, NP = cm->n_pos;
    const int Ht = c->text.hidden, I = c->text.intermediate, V = c->text.vocab, hd = c->text.head_dim;
    const int QD = c->text.heads * hd, KD = c->text.kv_heads * hd, L = c->text.layers;
    int max_tiles = 1;
    for (int i = 0; i < c->n_pinpoints; i++) {
        int t = (c->pinpoints[i][0] / c->crop_size) * (c->pinpoints[i][1] / c->crop_size) + 1;
        if (t > max_tiles) max_tiles = t;
    }
    g->max_tiles = max_tiles;
    g->max_tree = 1024;
    if (cuda_ctx_new(&g->c, 0, err)) goto fail;
    /* weights, straight from the checkpoint */
    {
        const int I2 = 2 * I;
        const llava_tensor *t;
#define W(dst, d0, d1, d2, d3, ...) \
    if (UPT(dst, 0, 0, d0, d1, d2, d3, __VA_ARGS__)) goto fail
        W(g->patch_w, Dv, 3, P, P, VT "embeddings.patch_embedding.weight");
        W(g->class_emb, Dv, 0, 0, 0, VT "embeddings.class_embedding");
        W(g->pos_emb, NP, Dv, 0, 0, VT "embeddings.position_embedding.weight");
        W(g->pre_ln_w, Dv, 0, 0, 0, VT "pre_layrnorm.weight");
        W(g->pre_ln_b, Dv, 0, 0, 0, VT "pre_layrnorm.bias");
        g->cl = xcalloc((size_t)(cm->n_run ? cm->n_run : 1), sizeof(gclip_layer));
        for (int l = 0; l < cm->n_run; l++) {
            gclip_layer *d = &g->cl[l];
            W(d->ln1_w, Dv, 0, 0, 0, VT "encoder.layers.%d.layer_norm1.weight", l);
            W(d->ln1_b, Dv, 0, 0, 0, VT "encoder.layers.%d.layer_norm1.bias", l);
            W(d->q_w, Dv, Dv, 0, 0, VT "encoder.layers.%d.self_attn.q_proj.weight", l);
            W(d->q_b, Dv, 0, 0, 0, VT "encoder.layers.%d.self_attn.q_proj.bias", l);
            W(d->k_w, Dv, Dv, 0, 0, VT "encoder.layers.%d.self_attn.k_proj.weight", l);
            W(d->k_b, Dv, 0, 0, 0, VT "encoder.layers.%d.self_attn.k_proj.bias", l);
            W(d->v_w, Dv, Dv, 0, 0, VT "encoder.layers.%d.self_attn.v_proj.weight", l);
            W(d->v_b, Dv, 0, 0, 0, VT "encoder.layers.%d.self_attn.v_proj.bias", l);
            W(d->o_w, Dv, Dv, 0, 0, VT "encoder.layers.%d.self_attn.out_proj.weight", l);
            W(d->o_b, Dv, 0, 0, 0, VT "encoder.layers.%d.self_attn.out_proj.bias", l);
            W(d->ln2_w, Dv, 0, 0, 0, VT "encoder.layers.%d.layer_norm2.weight", l);
            W(d->ln2_b, Dv, 0, 0, 0, VT "encoder.layers.%d.layer_norm2.bias", l);
            W(d->fc1_w, Iv, Dv, 0, 0, VT "encoder.layers.%d.mlp.fc1.weight", l);
            W(d->fc1_b, Iv, 0, 0, 0, VT "encoder.layers.%d.mlp.fc1.bias", l);
            W(d->fc2_w, Dv, Iv, 0, 0, VT "encoder.layers.%d.mlp.fc2.weight", l);
            W(d->fc2_b, Dv, 0, 0, 0, VT "encoder.layers.%d.mlp.fc2.bias", l);
        }
        W(g->p_w1, Ht, Dv, 0, 0, "model.multi_modal_projector.linear_1.weight");
        W(g->p_w2, Ht, Ht, 0, 0, "model.multi_modal_projector.linear_2.weight");
        if (c->proj_bias) {
            W(g->p_b1, Ht, 0, 0, 0, "model.multi_modal_projector.linear_1.bias");
            W(g->p_b2, Ht, 0, 0, 0, "model.multi_modal_projector.linear_2.bias");
        }
        W(g->newline, Ht, 0, 0, 0, "model.image_newline");
        W(g->embed, V, Ht, 0, 0, LM "embed_tokens.weight");
        W(g->norm, Ht, 0, 0, 0, LM "norm.weight");
        if (c->text.tie_embeddings && !llava_weight_find(m->st, "lm_head.weight")) g->lm_head = g->embed;
        else W(g->lm_head, V, Ht, 0, 0, "lm_head.weight");
        g->dl = xcalloc((size_t)L, sizeof(gdec_layer));
        for (int l = 0; l < L; l++) {
            gdec_layer *d = &g->dl[l];
            W(d->attn_norm, Ht, 0, 0, 0, LM "layers.%d.input_layernorm.weight", l);
            W(d->wq, QD, Ht, 0, 0, LM "layers.%d.self_attn.q_proj.weight", l);
            W(d->wk, KD, Ht, 0, 0, LM "layers.%d.self_attn.k_proj.weight", l);
            W(d->wv, KD, Ht, 0, 0, LM "layers.%d.self_attn.v_proj.weight", l);
            W(d->wo, Ht, QD, 0, 0, LM "layers.%d.self_attn.o_proj.weight", l);
            W(d->mlp_norm, Ht, 0, 0, 0, LM "layers.%d.post_attention_layernorm.weight", l);
            /* gate and up side by side: one GEMM gives [gate | up] per token */
            if (UPT(d->w_gu, (size_t)I2 * Ht, 0, I, Ht, 0, 0, LM "layers.%d.mlp.gate_proj.weight", l) ||
                UPT(d->w_gu, (size_t)I2 * Ht, (size_t)I * Ht, I, Ht, 0, 0, LM "layers.%d.mlp.up_proj.weight", l))
                goto fail;
            W(d->w_down, Ht, I, 0, 0, LM "layers.%d.mlp.down_proj.weight", l);
        }
#undef W
        cuda_sync(g->c);
    }
    /* buffers */
    const size_t vt = (size_t)max_tiles * NP;
    const int K = 3 * P * P;
    ALLOC(g->v_cols, sizeof(bf16) * (size_t)max_tiles * (NP - 1) * K);
    ALLOC(g->v_x, sizeof(bf16) * vt * Dv);
    ALLOC(g->v_h, sizeof(bf16) * vt * Dv);
    ALLOC(g->v_q, sizeof(bf16) * vt * Dv);
    ALLOC(g->v_k, sizeof(bf16) * vt * Dv);
    ALLOC(g->v_v, sizeof(bf16) * vt * Dv);
    ALLOC(g->v_mlp, sizeof(bf16) * vt * (Iv > Ht ? Iv : Ht));
    ALLOC(g->v_tmp, sizeof(bf16) * (vt + 1) * (Ht > Dv ? Ht : Dv));
    ALLOC(g->v_ids, sizeof(int) * (vt + (size_t)max_tokens + 1));
    ALLOC(g->v_qs, sizeof(int) * (size_t)(max_tiles + 1));
    ALLOC(g->feats, sizeof(bf16) * (size_t)max_tokens * Ht);
    const size_t nt = (size_t)max_tokens;
    size_t big = (size_t)(2 * I > QD ? 2 * I : QD);
    ALLOC(g->x, sizeof(bf16) * nt * Ht);
    ALLOC(g->xf, sizeof(float) * nt * Ht);
    ALLOC(g->h, sizeof(bf16) * nt * Ht);
    ALLOC(g->q, sizeof(bf16) * nt * QD);
    ALLOC(g->att, sizeof(bf16) * nt * QD);
    ALLOC(g->gu, sizeof(bf16) * nt * big);
    ALLOC(g->act, sizeof(bf16) * nt * I);
    ALLOC(g->kc, sizeof(bf16) * (size_t)L * nt * KD);
    ALLOC(g->vc, sizeof(bf16) * (size_t)L * nt * KD);
    ALLOC(g->logits, sizeof(float) * (size_t)g->max_tree * V);
    ALLOC(g->d_ids, sizeof(int) * nt);
    ALLOC(g->d_pos, sizeof(int) * nt);
    ALLOC(g->d_idx, sizeof(int) * nt);
    ALLOC(g->d_starts, sizeof(int) * 4);
    ALLOC(g->d_parent, sizeof(int) * nt);
    *out = g;
    return 0;
fail:
    llava_gpu_free(g);
    return -1;
}

static void vis_act(llava_gpu *g, bf16 *x, size_t n, int act) {
    switch (act) {
    case LLAVA_ACT_QUICK_GELU: cuda_quick_gelu(g->c, x, n); break;
    case LLAVA_ACT_GELU_TANH: cuda_gelu_tanh(g->c, x, n); break;
    default: cuda_gelu(g->c, x, n); break;
    }
}

/* runs the tower; leaves the selected hidden state in g->v_x (n_tiles*NP, Dv) */
static int vision_forward(llava_gpu *g, const float *pixels, int n_tiles, llava_err *err) {
    const llava_model *m = g->m;
    const clip_model *cm = &m->clip;
    const int Dv = cm->cfg.hidden, Iv = cm->cfg.intermediate, P = cm->cfg.patch, S = cm->cfg.image_size, G = cm->grid;
    const int NP = cm->n_pos, K = 3 * P * P;
    if (n_tiles > g->max_tiles) return llava_errf(err, "%d tiles exceed the reserved %d", n_tiles, g->max_tiles);
    const size_t ntok = (size_t)n_tiles * NP;
    /* im2col on the host (cheap next to the tower), uploaded as bf16 */
    float *cols = llava_try_malloc(sizeof(float) * (size_t)n_tiles * G * G * K, "patches", err);
    if (!cols) return -1;
    for (int t = 0; t < n_tiles; t++)
        for (int p = 0; p < G * G; p++) {
            int py = p / G, px = p % G;
            float *c = cols + ((size_t)t * G * G + p) * K;
            for (int ch = 0; ch < 3; ch++)
                for (int ky = 0; ky < P; ky++)
                    memcpy(c + (ch * P + ky) * P, pixels + (((size_t)t * 3 + ch) * S + py * P + ky) * S + px * P,
                           sizeof(float) * P);
        }
    int rc = cuda_upload_f32_as_bf16(g->c, g->v_cols, cols, (size_t)n_tiles * G * G * K, err);
    free(cols);
    if (rc) return -1;
    /* patches → v_h (n_tiles*G*G, Dv); then x = [cls | patches] + positions */
    cuda_linear(g->c, g->v_h, g->v_cols, g->patch_w, NULL, n_tiles * G * G, K, Dv);
    int *idx = xmalloc(sizeof(int) * ntok);
    for (int t = 0, k = 0; t < n_tiles; t++)
        for (int p = 0; p < G * G; p++) idx[k++] = t * NP + 1 + p;
    cuda_upload(g->c, g->v_ids, idx, sizeof(int) * (size_t)n_tiles * G * G);
    cuda_scatter_rows(g->c, g->v_x, g->v_h, g->v_ids, n_tiles * G * G, Dv);
    for (int t = 0; t < n_tiles; t++) idx[t] = 0;
    cuda_upload(g->c, g->v_ids, idx, sizeof(int) * (size_t)n_tiles);
    cuda_embed(g->c, g->v_h, g->class_emb, g->v_ids, n_tiles, Dv);
    for (int t = 0; t < n_tiles; t++) idx[t] = t * NP;
    cuda_upload(g->c, g->v_ids, idx, sizeof(int) * (size_t)n_tiles);
    cuda_scatter_rows(g->c, g->v_x, g->v_h, g->v_ids, n_tiles, Dv);
    for (size_t i = 0; i < ntok; i++) idx[i] = (int)(i % (size_t)NP);
    cuda_upload(g->c, g->v_ids, idx, sizeof(int) * ntok);
    cuda_embed(g->c, g->v_h, g->pos_emb, g->v_ids, (int)ntok, Dv);
    cuda_add(g->c, g->v_x, g->v_h, ntok * Dv);
    for (int t = 0; t <= n_tiles; t++) idx[t] = t * NP;
    cuda_upload(g->c, g->v_qs, idx, sizeof(int) * (size_t)(n_tiles + 1));
    free(idx);
    cuda_layernorm(g->c, g->v_x, g->v_x, g->pre_ln_w, g->pre_ln_b, (int)ntok, Dv, cm->cfg.eps);
    const float scale = 1.0f / sqrtf((float)cm->cfg.head_dim);
    for (int l = 0; l < cm->n_run; l++) {
        const gclip_layer *y = &g->cl[l];
        cuda_layernorm(g->c, g->v_h, g->v_x, y->ln1_w, y->ln1_b, (int)ntok, Dv, cm->cfg.eps);
        cuda_linear(g->c, g->v_q, g->v_h, y->q_w, y->q_b, (int)ntok, Dv, Dv);
        cuda_linear(g->c, g->v_k, g->v_h, y->k_w, y->k_b, (int)ntok, Dv, Dv);
        cuda_linear(g->c, g->v_v, g->v_h, y->v_w, y->v_b, (int)ntok, Dv, Dv);
        cuda_attention(g->c, g->v_h, g->v_q, g->v_k, g->v_v, g->v_qs, g->v_qs, n_tiles, NP, cm->cfg.heads, cm->cfg.heads,
                       cm->cfg.head_dim, Dv, 0, scale);
        cuda_linear(g->c, g->v_mlp, g->v_h, y->o_w, y->o_b, (int)ntok, Dv, Dv);
        cuda_add(g->c, g->v_x, g->v_mlp, ntok * Dv);
        cuda_layernorm(g->c, g->v_h, g->v_x, y->ln2_w, y->ln2_b, (int)ntok, Dv, cm->cfg.eps);
        cuda_linear(g->c, g->v_mlp, g->v_h, y->fc1_w, y->fc1_b, (int)ntok, Dv, Iv);
        vis_act(g, g->v_mlp, ntok * Iv, cm->cfg.act);
        cuda_linear(g->c, g->v_h, g->v_mlp, y->fc2_w, y->fc2_b, (int)ntok, Iv, Dv);
        cuda_add(g->c, g->v_x, g->v_h, ntok * Dv);
    }
    g->last_tiles = n_tiles;
    return 0;
}

int llava_gpu_vision_hidden(llava_gpu *g, float *out, llava_err *err) {
    size_t n = (size_t)g->last_tiles * g->m->clip.n_pos * g->m->cfg.vision.hidden;
    cuda_download_bf16_as_f32(g->c, out, g->v_x, n);
    return 0;
}

int llava_gpu_encode_image(llava_gpu *g, const float *pixels, int n_tiles, int H, int W, int *n_feats, llava_err *err) {
    const llava_model *m = g->m;
    const int Dv = m->cfg.vision.hidden, Ht = m->cfg.text.hidden, NP = m->clip.n_pos, per = NP - 1;
    if (vision_forward(g, pixels, n_tiles, err)) return -1;
    /* drop CLS: gather rows t*NP+1+p */
    const int nsel = n_tiles * per;
    int *idx = xmalloc(sizeof(int) * (size_t)(nsel > 1 ? nsel : 1));
    for (int t = 0, k = 0; t < n_tiles; t++)
        for (int p = 0; p < per; p++) idx[k++] = t * NP + 1 + p;
    cuda_upload(g->c, g->v_ids, idx, sizeof(int) * (size_t)nsel);
    cuda_gather_rows(g->c, g->v_h, g->v_x, g->v_ids, nsel, Dv);
    free(idx);
    /* projector: v_mlp = gelu(h W1ᵀ + b1); v_tmp = v_mlp W2ᵀ + b2; newline appended as row nsel */
    cuda_linear(g->c, g->v_mlp, g->v_h, g->p_w1, g->p_b1, nsel, Dv, Ht);
    switch (m->cfg.proj_act) {
    case LLAVA_ACT_QUICK_GELU: cuda_quick_gelu(g->c, g->v_mlp, (size_t)nsel * Ht); break;
    case LLAVA_ACT_GELU_TANH: cuda_gelu_tanh(g->c, g->v_mlp, (size_t)nsel * Ht); break;
    default: cuda_gelu(g->c, g->v_mlp, (size_t)nsel * Ht); break;
    }
    cuda_linear(g->c, g->v_tmp, g->v_mlp, g->p_w2, g->p_b2, nsel, Ht, Ht);
    cuda_copy(g->c, g->v_tmp + (size_t)nsel * Ht, g->newline, sizeof(bf16) * Ht);
    /* packing = a gather with the order computed on the host by the same code as the CPU path */
    int count = llava_model_image_tokens(m, H, W);
    if (g->n_feats + count > g->max_tokens)
        return llava_errf(err, "%d image tokens exceed the reserved %d", g->n_feats + count, g->max_tokens);
    int *order = xmalloc(sizeof(int) * (size_t)count);
    {
        /* pack row indices: run the CPU packer over "feature = its own row index" */
        float *ids_as_rows = xmalloc(sizeof(float) * (size_t)nsel);
        for (int i = 0; i < nsel; i++) ids_as_rows[i] = (float)i;
        float nl = (float)nsel;
        float *packed = xmalloc(sizeof(float) * (size_t)count);
        int got = llava_pack_features(packed, ids_as_rows, n_tiles, m->clip.grid, 1, &nl, &m->pp, H, W);
        CHECK(got == count);
        for (int i = 0; i < count; i++) order[i] = (int)packed[i];
        free(packed);
        free(ids_as_rows);
    }
    cuda_upload(g->c, g->v_ids, order, sizeof(int) * (size_t)count);
    cuda_gather_rows(g->c, g->feats + (size_t)g->n_feats * Ht, g->v_tmp, g->v_ids, count, Ht);
    free(order);
    g->n_feats += count;
    *n_feats = count;
    return 0;
}

/* decoder over the n tokens staged in g->x (bf16) at cache rows g->len.. with positions d_pos; tree
 * attention when tree is set. The residual stream runs in fp32 (g->xf); every block's input and
 * output are bf16. Leaves the final-normed hidden states in g->h. */
static void decoder(llava_gpu *g, int n, int tree) {
    const llava_text_config *c = &g->m->cfg.text;
    const int H = c->hidden, I = c->intermediate, hd = c->head_dim;
    const int QD = c->heads * hd, KD = c->kv_heads * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    const size_t lstride = (size_t)g->max_tokens * KD;
    int starts[4] = {0, n, 0, g->len + n};
    cuda_upload(g->c, g->d_starts, starts, sizeof starts);
    for (int l = 0; l < c->layers; l++) {
        const gdec_layer *y = &g->dl[l];
        bf16 *kc = g->kc + l * lstride, *vc = g->vc + l * lstride;
        bf16 *kn = kc + (size_t)g->len * KD, *vn = vc + (size_t)g->len * KD;
        if (l == 0) {
            cuda_bf16_to_f32(g->c, g->xf, g->x, (size_t)n * H);
            cuda_add_rmsnorm_f32(g->c, g->h, g->xf, NULL, y->attn_norm, n, H, c->eps);
        }
        cuda_linear(g->c, g->q, g->h, y->wq, NULL, n, H, QD);
        cuda_linear(g->c, kn, g->h, y->wk, NULL, n, H, KD);
        cuda_linear(g->c, vn, g->h, y->wv, NULL, n, H, KD);
        cuda_rope(g->c, g->q, n, c->heads, hd, QD, g->d_pos, (float)c->rope_theta);
        cuda_rope(g->c, kn, n, c->kv_heads, hd, KD, g->d_pos, (float)c->rope_theta);
        if (tree)
            cuda_attention_tree(g->c, g->att, g->q, kc, vc, n, g->len, g->d_parent, c->heads, c->kv_heads, hd, KD, scale);
        else
            cuda_attention(g->c, g->att, g->q, kc, vc, g->d_starts, g->d_starts + 2, 1, n, c->heads, c->kv_heads, hd, KD,
                           1, scale);
        cuda_linear(g->c, g->h, g->att, y->wo, NULL, n, QD, H);
        cuda_add_rmsnorm_f32(g->c, g->h, g->xf, g->h, y->mlp_norm, n, H, c->eps); /* x += attn; h = norm(x) */
        cuda_linear(g->c, g->gu, g->h, y->w_gu, NULL, n, H, 2 * I);
        cuda_swiglu(g->c, g->act, g->gu, n, I);
        cuda_linear(g->c, g->h, g->act, y->w_down, NULL, n, I, H);
        if (l + 1 < c->layers)
            cuda_add_rmsnorm_f32(g->c, g->h, g->xf, g->h, g->dl[l + 1].attn_norm, n, H, c->eps);
        else
            cuda_add_rmsnorm_f32(g->c, g->h, g->xf, g->h, g->norm, n, H, c->eps); /* final norm */
    }
}

int llava_gpu_prefill(llava_gpu *g, const int *ids, int n_ids, float *logits, llava_err *err) {
    const llava_model *m = g->m;
    const int H = m->cfg.text.hidden, V = m->cfg.text.vocab, img = m->cfg.image_token_index;
    if (n_ids + 1 > g->max_tokens)
        return llava_errf(err, "prompt of %d tokens exceeds the reserved context of %d", n_ids, g->max_tokens);
    int n_img = 0;
    for (int i = 0; i < n_ids; i++) n_img += ids[i] == img;
    if (n_img != g->n_feats) {
        int nf = g->n_feats;
        g->n_feats = 0;
        return llava_errf(err, "image features and image tokens do not match: tokens: %d, features: %d", n_img, nf);
    }
    g->len = 0;
    g->n_feats = 0;
    cuda_upload(g->c, g->d_ids, ids, sizeof(int) * (size_t)n_ids);
    cuda_embed(g->c, g->x, g->embed, g->d_ids, n_ids, H);
    if (n_img) {
        int *pos = xmalloc(sizeof(int) * (size_t)n_img);
        for (int i = 0, k = 0; i < n_ids; i++)
            if (ids[i] == img) pos[k++] = i;
        cuda_upload(g->c, g->d_idx, pos, sizeof(int) * (size_t)n_img);
        cuda_scatter_rows(g->c, g->x, g->feats, g->d_idx, n_img, H);
        free(pos);
    }
    int *pos = xmalloc(sizeof(int) * (size_t)n_ids);
    for (int i = 0; i < n_ids; i++) pos[i] = i;
    cuda_upload(g->c, g->d_pos, pos, sizeof(int) * (size_t)n_ids);
    free(pos);
    decoder(g, n_ids, 0);
    g->len = n_ids;
    cuda_linear_f32out(g->c, g->logits, g->h + (size_t)(n_ids - 1) * H, g->lm_head, 1, H, V);
    cuda_download(g->c, logits, g->logits, sizeof(float) * (size_t)V);
    return 0;
}

int llava_gpu_decode(llava_gpu *g, int id, float *logits, llava_err *err) {
    const int H = g->m->cfg.text.hidden, V = g->m->cfg.text.vocab;
    if (g->len + 1 > g->max_tokens) return llava_errf(err, "the reserved context of %d tokens is full", g->max_tokens);
    cuda_upload(g->c, g->d_ids, &id, sizeof(int));
    cuda_embed(g->c, g->x, g->embed, g->d_ids, 1, H);
    int pos = g->len;
    cuda_upload(g->c, g->d_pos, &pos, sizeof(int));
    decoder(g, 1, 0);
    g->len++;
    cuda_linear_f32out(g->c, g->logits, g->h, g->lm_head, 1, H, V);
    cuda_download(g->c, logits, g->logits, sizeof(float) * (size_t)V);
    return 0;
}

int llava_gpu_tree(llava_gpu *g, const int *tok, const int *parent, int n, float *logprobs, llava_err *err) {
    const int H = g->m->cfg.text.hidden, V = g->m->cfg.text.vocab;
    if (n > g->max_tree || g->len + n > g->max_tokens)
        return llava_errf(err, "label trie of %d tokens does not fit the reserved buffers", n);
    int *pos = xmalloc(sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++) pos[i] = parent[i] < 0 ? g->len : pos[parent[i]] + 1;
    cuda_upload(g->c, g->d_ids, tok, sizeof(int) * (size_t)n);
    cuda_upload(g->c, g->d_pos, pos, sizeof(int) * (size_t)n);
    cuda_upload(g->c, g->d_parent, parent, sizeof(int) * (size_t)n);
    free(pos);
    cuda_embed(g->c, g->x, g->embed, g->d_ids, n, H);
    decoder(g, n, 1);
    cuda_linear_f32out(g->c, g->logits, g->h, g->lm_head, n, H, V);
    cuda_log_softmax(g->c, g->logits, g->logits, n, V);
    cuda_download(g->c, logprobs, g->logits, sizeof(float) * (size_t)n * V);
    return 0;
}

#endif
