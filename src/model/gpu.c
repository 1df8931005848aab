/* gpu.c — the LLaVA-NeXT blocks on a CUDA device (see gpu.h), composed from backend/cuda ops:
 * loading (weights straight from the mmapped checkpoint, buffers sized from free memory), the
 * vision tower and decoder blocks, and generation (encode images, then extend sequences in ranges
 * of the shared KV cache). The batched label-scoring step lives in gpu_step.c.
 *
 * Weights are bf16 on the device (BF16 tensors uploaded as they are in the file, F32/F16
 * converted); activations bf16, norms/softmax fp32 inside the kernels, the decoder's residual
 * stream fp32 (closer to the fp32 reference), logits fp32. With --quantization fp8 the decoder's
 * projections are e4m3 instead (quantize_weights, dec_linear; docs/cuda.md).
 */
#include "model/gpu.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/gpu_impl.h"
#include "model/pack.h"
#include "model/weights.h"
#include "util/mem.h"

llava_gpu_params llava_gpu_params_default(void) {
    llava_gpu_params p = {0, 0, 0, 0};
    return p;
}

#ifndef LLAVA_CUDA

int llava_gpu_available(char *name, size_t name_len) {
    if (name && name_len) name[0] = 0;
    return 0;
}
int llava_gpu_load(llava_gpu **out, const llava_model *m, const llava_gpu_params *p, llava_err *err) {
    *out = NULL;
    return llava_errf(err, "this build of llava has no CUDA backend (nvcc was not found at build time); use --device cpu");
}
void llava_gpu_free(llava_gpu *g) { (void)g; }
void llava_gpu_profile_report(llava_gpu *g, const char *what) { (void)g, (void)what; }
const llava_gpu_info *llava_gpu_get_info(const llava_gpu *g) { return NULL; }
void llava_gpu_mem(double *used_bytes, double *total_bytes) { *used_bytes = *total_bytes = 0; }
int llava_gpu_encode_image(llava_gpu *g, const float *pixels, int n_tiles, int H, int W, int *n_feats, llava_err *err) {
    return llava_errf(err, "no CUDA backend");
}
int llava_gpu_extend(llava_gpu *g, int n_seqs, const int *base, const int *len, const int *n_new, const int *ids,
                     const int *img_rows, int n_img, int feat_skip, float *logits, llava_err *err) {
    return llava_errf(err, "no CUDA backend");
}
void llava_gpu_drop_images(llava_gpu *g) { (void)g; }
int llava_gpu_vision_hidden(llava_gpu *g, float *out, llava_err *err) { return llava_errf(err, "no CUDA backend"); }

#else

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
#define GIB (1024.0 * 1024.0 * 1024.0)

int llava_gpu_available(char *name, size_t name_len) { return cuda_device_count(name, name_len); }

const llava_gpu_info *llava_gpu_get_info(const llava_gpu *g) { return &g->info; }

void llava_gpu_mem(double *used_bytes, double *total_bytes) {
    size_t f = 0, t = 0;
    cuda_mem_info(&f, &t);
    *used_bytes = (double)(t - f);
    *total_bytes = (double)t;
}

static const char *const PR_NAMES[PR_N] = {"vision tower + projector", "embeddings + features", "q/kv GEMMs",
                                            "rope", "attention", "o GEMM", "residual + rmsnorm", "gate/up GEMM",
                                            "swiglu", "down GEMM", "LM head + pick"};

void gpu_prof_begin(llava_gpu *g) {
    gpu_prof *p = &g->prof;
    if (!p->on || p->n + 2 > PR_EVENTS) return;
    cuda_event_record(g->c, p->ev[p->n]);
}

void gpu_prof_end(llava_gpu *g, int kind) {
    gpu_prof *p = &g->prof;
    if (!p->on || p->n + 2 > PR_EVENTS) return;
    cuda_event_record(g->c, p->ev[p->n + 1]);
    p->kind[p->n / 2] = kind;
    p->n += 2;
}

void gpu_prof_collect(llava_gpu *g) {
    gpu_prof *p = &g->prof;
    if (!p->on) return;
    cuda_sync(g->c);
    for (int i = 0; i < p->n; i += 2) {
        p->ms[p->kind[i / 2]] += cuda_event_ms(p->ev[i], p->ev[i + 1]);
        p->calls[p->kind[i / 2]]++;
    }
    p->n = 0;
}

void llava_gpu_profile_report(llava_gpu *g, const char *what) {
    gpu_prof *p = &g->prof;
    if (!p->on) return;
    double tot = 0;
    long calls = 0;
    for (int k = 0; k < PR_N; k++) tot += p->ms[k], calls += p->calls[k];
    if (!calls) return;
    fprintf(stderr, "llava: LLAVA_PROFILE device time by op kind, %s (%.1f ms in all):\n", what, tot);
    for (int k = 0; k < PR_N; k++)
        if (p->calls[k])
            fprintf(stderr, "  %-26s %9.2f ms %5.1f%%  %ld launches\n", PR_NAMES[k], p->ms[k],
                    tot > 0 ? 100 * p->ms[k] / tot : 0, p->calls[k]);
    memset(p->ms, 0, sizeof p->ms);
    memset(p->calls, 0, sizeof p->calls);
}

void llava_gpu_free(llava_gpu *g) {
    if (!g) return;
    if (g->prof.on) {
        llava_gpu_profile_report(g, "since the last report");
        for (int i = 0; i < PR_EVENTS; i++) cuda_event_free(g->prof.ev[i]);
    }
    const llava_config *c = &g->m->cfg;
    void *ptrs[] = {g->patch_w, g->class_emb, g->pos_emb, g->pre_ln_w, g->pre_ln_b, g->p_w1, g->p_b1, g->p_w2, g->p_b2,
                    g->newline, g->embed, g->norm, g->lm_head == g->embed ? NULL : g->lm_head, g->v_pix, g->v_cols,
                    g->v_x, g->v_h, g->v_qkv, g->v_mlp, g->v_tmp, g->v_qs, g->v_drop_cls, g->v_ids,
                    g->feats, g->x, g->xf, g->h, g->q, g->att, g->kvt, g->gu, g->act, g->kc, g->vc, g->logits, g->d_ext,
                    g->d_step, g->d_out, g->x8, g->sx};
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
    free(g->h_ints);
    if (g->c) cuda_ctx_free(g->c);
    free(g);
}

/* The attention and MLP outputs go into the fp32 residual stream through the GEMM itself (beta 1:
 * no bf16 rounding of the branch, and the norm after it reads 6 bytes an element instead of 12).
 * LLAVA_GPU_RESIDUAL_GEMM=0 keeps the bf16 GEMM output + separate add, to compare; read once. */
static int gpu_residual_gemm(void) {
    static int on = -1;
    if (on < 0) {
        const char *e = getenv("LLAVA_GPU_RESIDUAL_GEMM");
        on = !(e && e[0] == '0');
    }
    return on;
}

/* --quantization fp8: each decoder linear weight (d_out, d_in) to e4m3 with a scale per row, then
 * its bf16 copy freed (half the decoder's weight memory) */
static int quant_weight(llava_gpu *g, bf16 **w, uint8_t **q, float **s, int d_out, int d_in, llava_err *err) {
    *q = cuda_malloc((size_t)d_out * d_in, "fp8 weights", err);
    *s = *q ? cuda_malloc(sizeof(float) * (size_t)d_out, "fp8 weight scales", err) : NULL;
    if (!*s) return -1;
    cuda_quant_rows_e4m3(g->c, *q, *s, *w, d_out, d_in);
    cuda_sync(g->c);
    cuda_free(*w);
    *w = NULL;
    return 0;
}

/* which projections go to e4m3: all five by default (as vLLM's fp8); LLAVA_FP8_OPS, a comma list of
 * q, kv, o, gu, down (or "all"), keeps the others bf16. On W1 (H100, 512 images, top-1 the same as
 * bf16): all 68.6% at 21.3 images/s, all but o 71.5% at 20.7, gu,down 76.8% at 20.2
 * (bench/RESULTS.md, session 5). */
enum { FP8_Q = 1, FP8_KV = 2, FP8_O = 4, FP8_GU = 8, FP8_DOWN = 16 };
static int fp8_ops(void) {
    const char *e = getenv("LLAVA_FP8_OPS");
    if (!e || !*e) return FP8_Q | FP8_KV | FP8_O | FP8_GU | FP8_DOWN;
    static const char *const names[] = {"q", "kv", "o", "gu", "down"};
    int ops = 0;
    char buf[64];
    snprintf(buf, sizeof buf, "%s", e);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (!strcmp(t, "all")) ops = FP8_Q | FP8_KV | FP8_O | FP8_GU | FP8_DOWN;
        for (int i = 0; i < 5; i++)
            if (!strcmp(t, names[i])) ops |= 1 << i;
    }
    return ops;
}

static int quantize_weights(llava_gpu *g, llava_err *err) {
    const llava_text_config *c = &g->m->cfg.text;
    const int H = c->hidden, I = c->intermediate, QD = c->heads * c->head_dim, KD = c->kv_heads * c->head_dim;
    const int ops = fp8_ops();
    for (int l = 0; l < c->layers; l++) {
        gdec_layer *d = &g->dl[l];
        if ((ops & FP8_Q && quant_weight(g, &d->wq, &d->q8, &d->q_s, QD, H, err)) ||
            (ops & FP8_KV && quant_weight(g, &d->w_kv, &d->kv8, &d->kv_s, 2 * KD, H, err)) ||
            (ops & FP8_O && quant_weight(g, &d->wo, &d->o8, &d->o_s, H, QD, err)) ||
            (ops & FP8_GU && quant_weight(g, &d->w_gu, &d->gu8, &d->gu_s, 2 * I, H, err)) ||
            (ops & FP8_DOWN && quant_weight(g, &d->w_down, &d->down8, &d->down_s, H, I, err)))
            return -1;
    }
    return 0;
}

static int upload_weights(llava_gpu *g, llava_err *err) {
    const llava_model *m = g->m;
    const llava_config *c = &m->cfg;
    const clip_model *cm = &m->clip;
    const int Dv = c->vision.hidden, Iv = c->vision.intermediate, P = c->vision.patch, NP = cm->n_pos;
    const int Ht = c->text.hidden, I = c->text.intermediate, V = c->text.vocab, hd = c->text.head_dim;
    const int QD = c->text.heads * hd, KD = c->text.kv_heads * hd, L = c->text.layers;
    const llava_tensor *t;
#define W(dst, d0, d1, d2, d3, ...) \
    if (UPT(dst, 0, 0, d0, d1, d2, d3, __VA_ARGS__)) return -1
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
        /* q, k, v projections side by side: one GEMM gives each token's [q | k | v] row */
        const size_t DD = (size_t)Dv * Dv;
        if (UPT(d->qkv_w, 3 * DD, 0, Dv, Dv, 0, 0, VT "encoder.layers.%d.self_attn.q_proj.weight", l) ||
            UPT(d->qkv_w, 3 * DD, DD, Dv, Dv, 0, 0, VT "encoder.layers.%d.self_attn.k_proj.weight", l) ||
            UPT(d->qkv_w, 3 * DD, 2 * DD, Dv, Dv, 0, 0, VT "encoder.layers.%d.self_attn.v_proj.weight", l) ||
            UPT(d->qkv_b, 3 * Dv, 0, Dv, 0, 0, 0, VT "encoder.layers.%d.self_attn.q_proj.bias", l) ||
            UPT(d->qkv_b, 3 * Dv, Dv, Dv, 0, 0, 0, VT "encoder.layers.%d.self_attn.k_proj.bias", l) ||
            UPT(d->qkv_b, 3 * Dv, 2 * Dv, Dv, 0, 0, 0, VT "encoder.layers.%d.self_attn.v_proj.bias", l))
            return -1;
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
        if (UPT(d->w_kv, (size_t)2 * KD * Ht, 0, KD, Ht, 0, 0, LM "layers.%d.self_attn.k_proj.weight", l) ||
            UPT(d->w_kv, (size_t)2 * KD * Ht, (size_t)KD * Ht, KD, Ht, 0, 0, LM "layers.%d.self_attn.v_proj.weight", l))
            return -1;
        W(d->wo, Ht, QD, 0, 0, LM "layers.%d.self_attn.o_proj.weight", l);
        W(d->mlp_norm, Ht, 0, 0, 0, LM "layers.%d.post_attention_layernorm.weight", l);
        if (UPT(d->w_gu, (size_t)2 * I * Ht, 0, I, Ht, 0, 0, LM "layers.%d.mlp.gate_proj.weight", l) ||
            UPT(d->w_gu, (size_t)2 * I * Ht, (size_t)I * Ht, I, Ht, 0, 0, LM "layers.%d.mlp.up_proj.weight", l))
            return -1;
        W(d->w_down, Ht, I, 0, 0, LM "layers.%d.mlp.down_proj.weight", l);
    }
#undef W
    cuda_sync(g->c);
    return 0;
}

size_t gpu_step_ints(int A, int S) { return (size_t)10 * A + 5 * (size_t)S + 16; }

/* bytes of the decoder buffers per step token, and of the KV cache per position */
static size_t step_token_bytes(const llava_config *c, int fp8) {
    const size_t Ht = c->text.hidden, I = c->text.intermediate, QD = (size_t)c->text.heads * c->text.head_dim,
                 KD = (size_t)c->text.kv_heads * c->text.head_dim;
    return sizeof(bf16) * (Ht /* x */ + Ht /* h */ + QD /* q */ + QD /* att */ + 2 * KD + 2 * I + I + Ht /* feats */) +
           sizeof(float) * Ht /* xf */ + sizeof(int) * (10 + 4) + sizeof(float) +
           (fp8 ? (I > QD ? I : QD) /* x8 */ + sizeof(float) /* sx */ : 0);
}
static size_t kv_token_bytes(const llava_config *c) {
    return sizeof(bf16) * 2 * (size_t)c->text.layers * c->text.kv_heads * c->text.head_dim;
}
static size_t vision_bytes(const llava_model *m, int tiles) {
    const llava_config *c = &m->cfg;
    const size_t Dv = c->vision.hidden, Iv = c->vision.intermediate, Ht = c->text.hidden, S = c->vision.image_size,
                 P = c->vision.patch, NP = m->clip.n_pos, GG = NP - 1;
    const size_t vt = (size_t)tiles * NP;
    /* v_pix; v_cols, v_x + v_h + v_qkv (2 + 3 rows of Dv), v_mlp, v_tmp; v_qs, v_drop_cls, v_ids */
    return sizeof(float) * tiles * 3 * S * S + sizeof(bf16) * (tiles * GG * 3 * P * P + (2 + 3) * vt * Dv +
                                                                vt * (Iv > Ht ? Iv : Ht) + (vt + 1) * (Ht > Dv ? Ht : Dv)) +
           sizeof(int) * (2 * vt + tiles + 1);
}

/* Chooses A (step tokens) and C (KV positions) from the memory left after the weights. */
static int plan_memory(llava_gpu *g, const llava_gpu_params *p, size_t free0, size_t used_by_weights, llava_err *err) {
    const llava_config *c = &g->m->cfg;
    size_t fr = 0, tot = 0;
    cuda_mem_info(&fr, &tot);
    const double margin = 0.75 * GIB; /* cuBLASLt workspace, context growth, fragmentation */
    double budget = (double)fr - margin;
    if (p->mem_limit_gib > 0) {
        /* the cap counts everything this process holds: context (tot - free0 includes other users,
         * which we cannot tell apart; we count what we allocated plus ~0.5 GiB of CUDA context) */
        double cap = p->mem_limit_gib * GIB - (double)used_by_weights - 0.5 * GIB - margin;
        if (cap < budget) budget = cap;
    }
    (void)free0;
    const double fixed = (double)vision_bytes(g->m, g->vis_tiles) + sizeof(float) * (double)g->max_tree * c->text.vocab;
    budget -= fixed;
    const double a = (double)step_token_bytes(c, g->fp8), kvb = (double)kv_token_bytes(c);
    int A = p->step_tokens, C = p->kv_tokens;
    const int A_min = 2048 > g->max_tree ? 2048 : g->max_tree;
    if (C < 0) { /* what fits: many sequences share the cache (batched generation) */
        if (A <= 0) {
            double share = budget * 0.5 / a;
            A = share > 65536 ? 65536 : (int)share;
        }
        double left = (budget - (double)A * a) / kvb;
        C = left > INT_MAX / 2 ? INT_MAX / 2 : (int)left;
        if (C < 1) C = 0;
    } else if (A <= 0) {
        double left = (budget - (double)C * kvb) / a;
        A = left > 65536 ? 65536 : (int)left;
    }
    if (A < A_min || (p->kv_tokens != 0 && C <= 0) || (double)A * a + (double)C * kvb > budget) {
        return llava_errf(err,
                          "not enough GPU memory: the weights take %.1f GiB and %.1f GiB are usable%s; a step of %d "
                          "tokens needs %.2f GiB and %d KV positions %.2f GiB (use a smaller --max-model-len / "
                          "--step-tokens, or a larger card)",
                          (double)used_by_weights / GIB, budget / GIB,
                          p->mem_limit_gib > 0 ? " under --gpu-mem-limit" : "", A > 0 ? A : A_min,
                          (double)(A > 0 ? A : A_min) * a / GIB, C, (double)C * kvb / GIB);
    }
    g->step_tokens = A & ~63; /* whole 64-token multiples */
    if (g->step_tokens < A_min) g->step_tokens = A;
    g->kv_tokens = C;
    /* a sequence has at least one image of >= one tile: bound the sequences by the smallest image */
    int per_seq = g->m->clip.n_pos - 1;
    g->step_seqs = g->step_tokens / (per_seq > 64 ? per_seq : 64) + 1;
    if (g->step_seqs > 1024) g->step_seqs = 1024;
    return 0;
}

#define ALLOC(dst, bytes)                                                    \
    do {                                                                     \
        if (!((dst) = cuda_malloc((size_t)(bytes), #dst, err))) goto fail;   \
    } while (0)

int llava_gpu_load(llava_gpu **out, const llava_model *m, const llava_gpu_params *params, llava_err *err) {
    *out = NULL;
    char name[128] = {0};
    if (cuda_device_count(name, sizeof name) <= 0) return llava_errf(err, "no CUDA device is available");
    llava_gpu_params dp = llava_gpu_params_default();
    const llava_gpu_params *p = params ? params : &dp;
    llava_gpu *g = xcalloc(1, sizeof *g);
    g->m = m;
    const llava_config *c = &m->cfg;
    const clip_model *cm = &m->clip;
    const int Dv = c->vision.hidden, P = c->vision.patch, NP = cm->n_pos, S = c->vision.image_size;
    const int Ht = c->text.hidden, I = c->text.intermediate, V = c->text.vocab, hd = c->text.head_dim;
    const int QD = c->text.heads * hd, KD = c->text.kv_heads * hd, L = c->text.layers;
    int max_tiles = 1;
    for (int i = 0; i < c->n_pinpoints; i++) {
        int t = (c->pinpoints[i][0] / c->crop_size) * (c->pinpoints[i][1] / c->crop_size) + 1;
        if (t > max_tiles) max_tiles = t;
    }
    g->max_tiles = max_tiles;
    g->vis_tiles = 8 * max_tiles < 40 ? 40 : 8 * max_tiles;
    if (g->vis_tiles > 64) g->vis_tiles = max_tiles > 64 ? max_tiles : 64;
    g->max_tree = 1024;
    if (cuda_ctx_new(&g->c, 0, err)) goto fail;
    {
        const char *pe = getenv("LLAVA_PROFILE");
        if (pe && *pe && strcmp(pe, "0")) {
            g->prof.on = 1;
            for (int i = 0; i < PR_EVENTS; i++) g->prof.ev[i] = cuda_event_new_timed();
        }
    }
    size_t free0 = 0, tot = 0, free1 = 0;
    cuda_mem_info(&free0, &tot);
    if (upload_weights(g, err)) goto fail;
    g->fp8 = p->fp8;
    if (g->fp8 && quantize_weights(g, err)) goto fail;
    cuda_mem_info(&free1, &tot);
    if (plan_memory(g, p, free0, free0 - free1, err)) goto fail;
    const size_t A = (size_t)g->step_tokens, C = (size_t)g->kv_tokens, VTl = (size_t)g->vis_tiles;
    /* vision */
    {
        const size_t vt = VTl * NP, K = (size_t)3 * P * P;
        ALLOC(g->v_pix, sizeof(float) * VTl * 3 * S * S);
        ALLOC(g->v_cols, sizeof(bf16) * VTl * (NP - 1) * K);
        ALLOC(g->v_x, sizeof(bf16) * vt * Dv);
        ALLOC(g->v_h, sizeof(bf16) * vt * Dv);
        ALLOC(g->v_qkv, sizeof(bf16) * vt * 3 * Dv);
        ALLOC(g->v_mlp, sizeof(bf16) * vt * (c->vision.intermediate > Ht ? c->vision.intermediate : Ht));
        ALLOC(g->v_tmp, sizeof(bf16) * (vt + 1) * (Ht > Dv ? Ht : Dv));
        ALLOC(g->v_qs, sizeof(int) * (VTl + 1));
        ALLOC(g->v_drop_cls, sizeof(int) * VTl * (NP - 1));
        int *idx = xmalloc(sizeof(int) * VTl * NP);
        for (size_t t = 0; t <= VTl; t++) idx[t] = (int)(t * NP);
        cuda_upload(g->c, g->v_qs, idx, sizeof(int) * (VTl + 1));
        for (size_t t = 0, k = 0; t < VTl; t++)
            for (int q = 0; q < NP - 1; q++) idx[k++] = (int)(t * NP + 1 + q);
        cuda_upload(g->c, g->v_drop_cls, idx, sizeof(int) * VTl * (NP - 1));
        free(idx);
        size_t ni = A > vt ? A : vt;
        ALLOC(g->v_ids, sizeof(int) * ni);
    }
    /* decoder */
    ALLOC(g->feats, sizeof(bf16) * A * Ht);
    ALLOC(g->x, sizeof(bf16) * A * Ht);
    ALLOC(g->xf, sizeof(float) * A * Ht);
    ALLOC(g->h, sizeof(bf16) * A * Ht);
    ALLOC(g->q, sizeof(bf16) * A * QD);
    ALLOC(g->att, sizeof(bf16) * A * QD);
    ALLOC(g->kvt, sizeof(bf16) * A * 2 * KD);
    ALLOC(g->gu, sizeof(bf16) * A * 2 * I);
    ALLOC(g->act, sizeof(bf16) * A * I);
    if (C) {
        ALLOC(g->kc, sizeof(bf16) * (size_t)L * C * KD);
        ALLOC(g->vc, sizeof(bf16) * (size_t)L * C * KD);
    }
    ALLOC(g->logits, sizeof(float) * (size_t)g->max_tree * V);
    ALLOC(g->d_ext, sizeof(int) * (4 * A + 4 * LLAVA_GPU_MAX_SEQS + 1));
    g->h_ints = xmalloc(sizeof(int) * (4 * A + 4 * LLAVA_GPU_MAX_SEQS + 1));
    ALLOC(g->d_step, sizeof(int) * gpu_step_ints((int)A, g->step_seqs));
    ALLOC(g->d_out, sizeof(float) * A);
    if (g->fp8) {
        ALLOC(g->x8, A * (size_t)(I > QD ? I : QD));
        ALLOC(g->sx, sizeof(float) * A);
        /* does this device / cuBLASLt run e4m3 GEMMs with per-row scales at the model's shapes? (the
         * SIMT kernel would be far slower than bf16; tiny models with rows that are not 16-byte
         * multiples run on it anyway) */
        const int probe_n = A < 256 ? (int)A : 256;
        if (Ht % 16 == 0 && I % 16 == 0 && QD % 16 == 0 && g->dl[0].down8) {
            cuda_memset(g->c, g->act, 0, sizeof(bf16) * (size_t)probe_n * I);
            cuda_memset(g->c, g->xf, 0, sizeof(float) * (size_t)probe_n * Ht);
            cuda_quant_rows_e4m3(g->c, g->x8, g->sx, g->act, probe_n, I);
            const int slow = cuda_linear_fp8(g->c, g->gu, g->x8, g->sx, g->dl[0].down8, g->dl[0].down_s, probe_n, I, Ht) |
                             cuda_linear_fp8_acc_f32(g->c, g->xf, g->x8, g->sx, g->dl[0].down8, g->dl[0].down_s, probe_n,
                                                     I, Ht);
            if (slow) {
                llava_errf(err, "--quantization fp8: this GPU or cuBLASLt has no e4m3 GEMM with per-row scales "
                                "(it needs compute capability 8.9+ and CUDA 12.9+); run without it");
                goto fail;
            }
        }
    }
    cuda_sync(g->c);
    {
        size_t free2 = 0;
        cuda_mem_info(&free2, &tot);
        g->info.kv_tokens = g->kv_tokens;
        g->info.step_tokens = g->step_tokens;
        g->info.step_seqs = g->step_seqs;
        g->info.vision_tiles = g->vis_tiles;
        g->info.weights_gib = (double)(free0 - free1) / GIB;
        g->info.buffers_gib = (double)(free1 - free2) / GIB;
        g->info.fp8 = g->fp8;
        snprintf(g->info.device, sizeof g->info.device, "%s", name);
    }
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

/* the tower up to the selected layer: hidden state left in g->v_x (n_tiles*NP, Dv) */
static void vision_tower(llava_gpu *g, int n_tiles) {
    const clip_model *cm = &g->m->clip;
    const int Dv = cm->cfg.hidden, Iv = cm->cfg.intermediate, P = cm->cfg.patch, S = cm->cfg.image_size, G = cm->grid;
    const int NP = cm->n_pos, K = 3 * P * P;
    const size_t ntok = (size_t)n_tiles * NP;
    CHECK(n_tiles >= 1 && n_tiles <= g->vis_tiles);
    cuda_patchify(g->c, g->v_cols, g->v_pix, n_tiles, S, P);
    cuda_linear(g->c, g->v_h, g->v_cols, g->patch_w, NULL, n_tiles * G * G, K, Dv);
    cuda_clip_embed(g->c, g->v_x, g->v_h, g->class_emb, g->pos_emb, n_tiles, G * G, Dv);
    cuda_layernorm(g->c, g->v_x, g->v_x, g->pre_ln_w, g->pre_ln_b, (int)ntok, Dv, cm->cfg.eps);
    const float scale = 1.0f / sqrtf((float)cm->cfg.head_dim);
    /* v_h holds each layer's normed input: the first layer's ln1 here, the others' from the fused
     * residual add + norm at the end of the layer before */
    if (cm->n_run > 0)
        cuda_layernorm(g->c, g->v_h, g->v_x, g->cl[0].ln1_w, g->cl[0].ln1_b, (int)ntok, Dv, cm->cfg.eps);
    for (int l = 0; l < cm->n_run; l++) {
        const gclip_layer *y = &g->cl[l];
        const bf16 *qkv = g->v_qkv;
        cuda_linear(g->c, g->v_qkv, g->v_h, y->qkv_w, y->qkv_b, (int)ntok, Dv, 3 * Dv);
        cuda_attention(g->c, g->v_h, qkv, qkv + Dv, qkv + 2 * Dv, g->v_qs, g->v_qs, n_tiles, NP, cm->cfg.heads,
                       cm->cfg.heads, cm->cfg.head_dim, 3 * Dv, 3 * Dv, 0, scale);
        cuda_linear(g->c, g->v_mlp, g->v_h, y->o_w, y->o_b, (int)ntok, Dv, Dv);
        cuda_add_layernorm(g->c, g->v_h, g->v_x, g->v_mlp, y->ln2_w, y->ln2_b, (int)ntok, Dv, cm->cfg.eps);
        cuda_linear(g->c, g->v_mlp, g->v_h, y->fc1_w, y->fc1_b, (int)ntok, Dv, Iv);
        vis_act(g, g->v_mlp, ntok * Iv, cm->cfg.act);
        cuda_linear(g->c, g->v_h, g->v_mlp, y->fc2_w, y->fc2_b, (int)ntok, Iv, Dv);
        if (l + 1 < cm->n_run) /* x += mlp; v_h = the next layer's ln1 (out aliases r: allowed) */
            cuda_add_layernorm(g->c, g->v_h, g->v_x, g->v_h, g->cl[l + 1].ln1_w, g->cl[l + 1].ln1_b, (int)ntok, Dv,
                               cm->cfg.eps);
        else
            cuda_add(g->c, g->v_x, g->v_h, ntok * Dv);
    }
    g->last_tiles = n_tiles;
}

void gpu_vision(llava_gpu *g, int n_tiles) {
    const llava_model *m = g->m;
    const int Dv = m->cfg.vision.hidden, Ht = m->cfg.text.hidden, per = m->clip.n_pos - 1;
    vision_tower(g, n_tiles);
    const int nsel = n_tiles * per;
    /* drop CLS, then the projector: v_mlp = act(h W1ᵀ + b1); v_tmp = v_mlp W2ᵀ + b2; newline row nsel */
    cuda_gather_rows(g->c, g->v_h, g->v_x, g->v_drop_cls, nsel, Dv);
    cuda_linear(g->c, g->v_mlp, g->v_h, g->p_w1, g->p_b1, nsel, Dv, Ht);
    vis_act(g, g->v_mlp, (size_t)nsel * Ht, m->cfg.proj_act);
    cuda_linear(g->c, g->v_tmp, g->v_mlp, g->p_w2, g->p_b2, nsel, Ht, Ht);
    cuda_copy(g->c, g->v_tmp + (size_t)nsel * Ht, g->newline, sizeof(bf16) * Ht);
}

int *gpu_pack_order(const llava_model *m, int n_tiles, int H, int W, int *count) {
    const int nsel = n_tiles * (m->clip.n_pos - 1);
    int n = llava_model_image_tokens(m, H, W);
    int *order = xmalloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
    /* run the CPU packer over "feature = its own row index" */
    float *rows = xmalloc(sizeof(float) * (size_t)(nsel > 0 ? nsel : 1));
    for (int i = 0; i < nsel; i++) rows[i] = (float)i;
    float nl = (float)nsel;
    float *packed = xmalloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    int got = llava_pack_features(packed, rows, n_tiles, m->clip.grid, 1, &nl, &m->pp, H, W);
    CHECK(got == n);
    for (int i = 0; i < n; i++) order[i] = (int)packed[i];
    free(packed);
    free(rows);
    *count = n;
    return order;
}

int llava_gpu_vision_hidden(llava_gpu *g, float *out, llava_err *err) {
    size_t n = (size_t)g->last_tiles * g->m->clip.n_pos * g->m->cfg.vision.hidden;
    cuda_download_bf16_as_f32(g->c, out, g->v_x, n);
    return 0;
}

int llava_gpu_encode_image(llava_gpu *g, const float *pixels, int n_tiles, int H, int W, int *n_feats, llava_err *err) {
    const llava_model *m = g->m;
    const int Ht = m->cfg.text.hidden, S = m->cfg.vision.image_size;
    if (n_tiles < 1 || n_tiles > g->vis_tiles)
        return llava_errf(err, "%d tiles exceed the reserved %d", n_tiles, g->vis_tiles);
    int count = llava_model_image_tokens(m, H, W);
    if (g->n_feats + count > g->step_tokens)
        return llava_errf(err, "%d image tokens exceed the reserved %d", g->n_feats + count, g->step_tokens);
    cuda_upload(g->c, g->v_pix, pixels, sizeof(float) * (size_t)n_tiles * 3 * S * S);
    gpu_vision(g, n_tiles);
    int *order = gpu_pack_order(m, n_tiles, H, W, &count);
    cuda_upload(g->c, g->v_ids, order, sizeof(int) * (size_t)count);
    cuda_gather_rows(g->c, g->feats + (size_t)g->n_feats * Ht, g->v_tmp, g->v_ids, count, Ht);
    free(order);
    g->n_feats += count;
    *n_feats = count;
    cuda_sync(g->c); /* returns when the features exist: the caller's vision time is real */
    return 0;
}

/* out (n, d_out) = x · wᵀ for a decoder weight: bf16 through cuBLASLt, or with --quantization fp8
 * x quantized per token into x8/sx, then the e4m3 GEMM against the weight's e4m3 rows (w8, ws) */
static void dec_linear(llava_gpu *g, bf16 *out, const bf16 *x, const bf16 *w, const uint8_t *w8, const float *ws, int n,
                       int d_in, int d_out) {
    if (!w8) {
        cuda_linear(g->c, out, x, w, NULL, n, d_in, d_out);
        return;
    }
    cuda_quant_rows_e4m3(g->c, g->x8, g->sx, x, n, d_in);
    cuda_linear_fp8(g->c, out, g->x8, g->sx, w8, ws, n, d_in, d_out);
}

/* the same added into the fp32 residual stream xf */
static void dec_linear_acc(llava_gpu *g, float *xf, const bf16 *x, const bf16 *w, const uint8_t *w8, const float *ws,
                           int n, int d_in, int d_out) {
    if (!w8) {
        cuda_linear_acc_f32(g->c, xf, x, w, n, d_in, d_out);
        return;
    }
    cuda_quant_rows_e4m3(g->c, g->x8, g->sx, x, n, d_in);
    cuda_linear_fp8_acc_f32(g->c, xf, g->x8, g->sx, w8, ws, n, d_in, d_out);
}

void gpu_decoder(llava_gpu *g, const gpu_dec_args *a) {
    const llava_text_config *c = &g->m->cfg.text;
    const int H = c->hidden, I = c->intermediate, hd = c->head_dim, n = a->n;
    const int QD = c->heads * hd, KD = c->kv_heads * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    const size_t lstride = (size_t)g->kv_tokens * KD;
    const int *pos = a->pos;
    const int acc = gpu_residual_gemm();
    for (int l = 0; l < c->layers; l++) {
        const gdec_layer *y = &g->dl[l];
        const int last = l + 1 == c->layers;
        const int keep = last && a->keep_rows && !a->kv && gpu_can_keep(g, a->n_keep);
        const int m = keep ? a->n_keep : n; /* rows that go on past the attention */
        if (l == 0) {
            gpu_prof_begin(g);
            cuda_bf16_to_f32(g->c, g->xf, g->x, (size_t)n * H);
            cuda_add_rmsnorm_f32(g->c, g->h, g->xf, NULL, y->attn_norm, n, H, c->eps);
            gpu_prof_end(g, PR_NORM);
        }
        float *xf = g->xf;
        gpu_prof_begin(g);
        dec_linear(g, g->kvt, g->h, y->w_kv, y->kv8, y->kv_s, n, H, 2 * KD);
        if (keep) {
            /* the kept rows' normed input into act (free until the MLP), their queries only */
            cuda_gather_rows(g->c, g->act, g->h, a->keep_rows, m, H);
            dec_linear(g, g->q, g->act, y->wq, y->q8, y->q_s, m, H, QD);
        } else if (y->q8 && y->kv8) { /* fp8: x8 still holds h, quantized for k/v */
            cuda_linear_fp8(g->c, g->q, g->x8, g->sx, y->q8, y->q_s, n, H, QD);
        } else {
            dec_linear(g, g->q, g->h, y->wq, y->q8, y->q_s, n, H, QD);
        }
        gpu_prof_end(g, PR_QKV);
        gpu_prof_begin(g);
        if (keep) {
            cuda_rope(g->c, g->kvt, n, c->kv_heads, hd, 2 * KD, pos, (float)c->rope_theta);
            cuda_rope(g->c, g->q, m, c->heads, hd, QD, a->keep_pos, (float)c->rope_theta);
        } else {
            cuda_rope_qk(g->c, g->q, c->heads, QD, g->kvt, c->kv_heads, 2 * KD, n, hd, pos, (float)c->rope_theta);
        }
        gpu_prof_end(g, PR_ROPE);
        gpu_prof_begin(g);
        if (a->kv) {
            bf16 *kc = g->kc + l * lstride, *vc = g->vc + l * lstride;
            cuda_kv_store(g->c, kc, vc, g->kvt, a->kv_rows, n, KD);
            cuda_attention_ranges(g->c, g->att, g->q, kc, vc, a->qs, a->kv_begin, a->kv_end, a->n_seqs, a->max_q,
                                  a->max_k, c->heads, c->kv_heads, hd, KD, scale);
        } else if (keep) {
            cuda_attention_tail_tree(g->c, g->att, g->q, g->kvt, g->kvt + KD, a->keep_qs, a->qs, a->tail, a->keep_par,
                                     a->n_seqs, a->max_keep_q, c->heads, c->kv_heads, hd, 2 * KD, 0, scale);
        } else {
            cuda_attention_tail_tree(g->c, g->att, g->q, g->kvt, g->kvt + KD, a->qs, a->qs, a->tail, a->parent,
                                     a->n_seqs, a->max_q, c->heads, c->kv_heads, hd, 2 * KD, 0, scale);
        }
        gpu_prof_end(g, PR_ATTN);
        if (keep) {
            /* the kept rows of the fp32 residual stream into kvt (free after the attention) */
            xf = (float *)g->kvt;
            cuda_gather_rows(g->c, (bf16 *)xf, (const bf16 *)g->xf, a->keep_rows, m, 2 * H);
        }
        gpu_prof_begin(g);
        if (acc)
            dec_linear_acc(g, xf, g->att, y->wo, y->o8, y->o_s, m, QD, H); /* x += attn Woᵀ */
        else
            dec_linear(g, g->h, g->att, y->wo, y->o8, y->o_s, m, QD, H);
        gpu_prof_end(g, PR_WO);
        /* h = norm(x), then the MLP; fp8: the norm and the SwiGLU write e4m3 rows (x8, sx) directly */
        gpu_prof_begin(g);
        if (y->gu8)
            cuda_add_rmsnorm_f32_e4m3(g->c, g->x8, g->sx, xf, acc ? NULL : g->h, y->mlp_norm, m, H, c->eps);
        else
            cuda_add_rmsnorm_f32(g->c, g->h, xf, acc ? NULL : g->h, y->mlp_norm, m, H, c->eps);
        gpu_prof_end(g, PR_NORM);
        gpu_prof_begin(g);
        if (y->gu8)
            cuda_linear_fp8(g->c, g->gu, g->x8, g->sx, y->gu8, y->gu_s, m, H, 2 * I);
        else
            cuda_linear(g->c, g->gu, g->h, y->w_gu, NULL, m, H, 2 * I);
        gpu_prof_end(g, PR_GU);
        gpu_prof_begin(g);
        if (y->down8)
            cuda_swiglu_e4m3(g->c, g->x8, g->sx, g->gu, m, I);
        else
            cuda_swiglu(g->c, g->act, g->gu, m, I);
        gpu_prof_end(g, PR_SWIGLU);
        gpu_prof_begin(g);
        if (y->down8 && acc)
            cuda_linear_fp8_acc_f32(g->c, xf, g->x8, g->sx, y->down8, y->down_s, m, I, H); /* x += mlp Wdownᵀ */
        else if (y->down8)
            cuda_linear_fp8(g->c, g->h, g->x8, g->sx, y->down8, y->down_s, m, I, H);
        else if (acc)
            cuda_linear_acc_f32(g->c, xf, g->act, y->w_down, m, I, H);
        else
            cuda_linear(g->c, g->h, g->act, y->w_down, NULL, m, I, H);
        gpu_prof_end(g, PR_DOWN);
        gpu_prof_begin(g);
        /* the next layer's input norm, or the final norm */
        cuda_add_rmsnorm_f32(g->c, g->h, xf, acc ? NULL : g->h, last ? g->norm : g->dl[l + 1].attn_norm, m, H, c->eps);
        gpu_prof_end(g, PR_NORM);
    }
}

int gpu_can_keep(const llava_gpu *g, int n_keep) {
    const llava_text_config *c = &g->m->cfg.text;
    const size_t KD = (size_t)c->kv_heads * c->head_dim, H = (size_t)c->hidden;
    /* kept fp32 residual rows in kvt, kept normed rows in act */
    return (size_t)n_keep * H * sizeof(float) <= (size_t)g->step_tokens * 2 * KD * sizeof(bf16) &&
           (size_t)n_keep * H <= (size_t)g->step_tokens * c->intermediate;
}

void llava_gpu_drop_images(llava_gpu *g) { g->n_feats = 0; }

int llava_gpu_extend(llava_gpu *g, int n_seqs, const int *base, const int *len, const int *n_new, const int *ids,
                     const int *img_rows, int n_img, int feat_skip, float *logits, llava_err *err) {
    const llava_model *m = g->m;
    const int H = m->cfg.text.hidden, V = m->cfg.text.vocab;
    const int S = n_seqs;
    int n = 0, max_q = 0, max_k = 0, rc = -1;
    if (S < 1 || S > LLAVA_GPU_MAX_SEQS) {
        llava_errf(err, "%d sequences in one call (1 to %d)", S, LLAVA_GPU_MAX_SEQS);
        goto done;
    }
    for (int s = 0; s < S; s++) {
        if (n_new[s] < 1 || len[s] < 0 || base[s] < 0 || (long)base[s] + len[s] + n_new[s] > g->kv_tokens) {
            llava_errf(err, "sequence %d: %d new tokens after %d at cache row %d do not fit the reserved %d positions", s,
                       n_new[s], len[s], base[s], g->kv_tokens);
            goto done;
        }
        n += n_new[s];
        if (n > g->step_tokens) {
            llava_errf(err, "%d new tokens exceed a step of %d (--step-tokens)", n, g->step_tokens);
            goto done;
        }
        if (n_new[s] > max_q) max_q = n_new[s];
        if (len[s] + n_new[s] > max_k) max_k = len[s] + n_new[s];
    }
    /* one host int block, one upload: ids (n), pos (n), kv rows (n), then qs (S+1), begin (S), end (S),
     * last (S), then the image rows (n_img) */
    int *h_ids = g->h_ints, *pos = h_ids + n, *kvrow = pos + n, *seq = kvrow + n, *h_img = seq + 4 * S + 1;
    for (int s = 0, r = 0; s < S; s++) {
        seq[s] = r;
        seq[S + 1 + s] = base[s];
        seq[2 * S + 1 + s] = base[s] + len[s] + n_new[s];
        for (int i = 0; i < n_new[s]; i++, r++) {
            pos[r] = len[s] + i;
            kvrow[r] = base[s] + len[s] + i;
            if (ids[r] < 0 || ids[r] >= V) {
                llava_errf(err, "token id %d is outside the vocabulary (%d)", ids[r], V);
                goto done;
            }
        }
        seq[3 * S + 1 + s] = r - 1;
    }
    seq[S] = n;
    for (int i = 0; i < n_img; i++)
        if (img_rows[i] < 0 || img_rows[i] >= n || (i && img_rows[i] <= img_rows[i - 1])) {
            llava_errf(err, "image row %d is not ascending within the %d new rows", img_rows[i], n);
            goto done;
        }
    if (feat_skip < 0 || feat_skip + n_img > g->n_feats) {
        llava_errf(err, "image features and image tokens do not match: tokens: %d, features: %d", n_img,
                   g->n_feats - feat_skip);
        goto done;
    }
    memcpy(h_ids, ids, sizeof(int) * (size_t)n);
    if (n_img) memcpy(h_img, img_rows, sizeof(int) * (size_t)n_img);
    cuda_upload(g->c, g->d_ext, g->h_ints, sizeof(int) * (3 * (size_t)n + 4 * (size_t)S + 1 + (size_t)n_img));
    int *d_ids = g->d_ext, *d_pos = d_ids + n, *d_kvrow = d_pos + n, *d_kvseq = d_kvrow + n, *d_img = d_kvseq + 4 * S + 1;
    cuda_embed(g->c, g->x, g->embed, d_ids, n, H);
    if (n_img) cuda_scatter_rows(g->c, g->x, g->feats + (size_t)feat_skip * H, d_img, n_img, H);
    gpu_dec_args a = {.n = n, .pos = d_pos, .qs = d_kvseq, .n_seqs = S, .max_q = max_q, .kv = 1,
                      .kv_rows = d_kvrow, .kv_begin = d_kvseq + S + 1, .kv_end = d_kvseq + 2 * S + 1,
                      .max_k = max_k};
    gpu_decoder(g, &a);
    /* LM head on each sequence's last new row (act is free scratch after the decoder) */
    cuda_gather_rows(g->c, g->act, g->h, d_kvseq + 3 * S + 1, S, H);
    for (int c0 = 0; c0 < S; c0 += g->max_tree) {
        const int cnt = S - c0 < g->max_tree ? S - c0 : g->max_tree;
        cuda_linear_f32out(g->c, g->logits, g->act + (size_t)c0 * H, g->lm_head, cnt, H, V);
        cuda_download(g->c, logits + (size_t)c0 * V, g->logits, sizeof(float) * (size_t)cnt * V);
    }
    rc = 0;
done:
    g->n_feats = 0; /* one call consumes (or drops) what was encoded for it */
    return rc;
}

#endif
