/* gpu_impl.h — private to src/model/gpu*.c: the device model's layout (weights, reserved buffers)
 * and the blocks that the one-request path (gpu.c) and the batched step (gpu_step.c) share.
 * Nothing outside src/model includes this; the public interface is gpu.h.
 */
#ifndef LLAVA_GPU_IMPL_H
#define LLAVA_GPU_IMPL_H

#ifdef LLAVA_CUDA

#include "backend/cuda/cuda_ops.h"
#include "model/gpu.h"

typedef struct {
    bf16 *ln1_w, *ln1_b;  /* (Dv) */
    bf16 *qkv_w;          /* (3*Dv, Dv): q_proj rows, then k_proj, then v_proj: one GEMM gives [q | k | v] */
    bf16 *qkv_b;          /* (3*Dv): the three biases in the same order */
    bf16 *o_w, *o_b;      /* (Dv, Dv), (Dv) */
    bf16 *ln2_w, *ln2_b;  /* (Dv) */
    bf16 *fc1_w, *fc1_b;  /* (Iv, Dv), (Iv) */
    bf16 *fc2_w, *fc2_b;  /* (Dv, Iv), (Dv) */
} gclip_layer;

typedef struct {
    bf16 *attn_norm;      /* (H) */
    bf16 *wq;             /* (QD, H) */
    bf16 *w_kv;           /* (2*KD, H): k_proj rows then v_proj rows: one GEMM gives [k | v] per token */
    bf16 *wo;             /* (H, QD) */
    bf16 *mlp_norm;       /* (H) */
    bf16 *w_gu;           /* (2I, H): gate rows then up rows */
    bf16 *w_down;         /* (H, I) */
    /* --quantization fp8: the five linear weights above as e4m3 with a scale per row (their bf16
     * copies freed at load); same order: q, [k | v], o, [gate | up], down */
    uint8_t *q8, *kv8, *o8, *gu8, *down8;
    float *q_s, *kv_s, *o_s, *gu_s, *down_s;
} gdec_layer;

/* LLAVA_PROFILE=1: device time per op kind, from timed events around every op of a step (the
 * step then waits for itself, so this is for profile runs only); llava_gpu_profile_report prints
 * the sums (and free, what is left). */
enum { PR_VISION, PR_EMBED, PR_QKV, PR_ROPE, PR_ATTN, PR_WO, PR_NORM, PR_GU, PR_SWIGLU, PR_DOWN, PR_HEAD, PR_N };
#define PR_EVENTS 1024
typedef struct {
    int on, n;
    cuda_event *ev[PR_EVENTS];
    int kind[PR_EVENTS / 2];
    double ms[PR_N];
    long calls[PR_N];
} gpu_prof;

struct llava_gpu {
    const llava_model *m;
    cuda_ctx *c;
    gpu_prof prof;
    llava_gpu_info info;
    int max_tiles;        /* tiles of the largest anyres grid (+ base) */
    int vis_tiles;        /* tiles one vision pass holds (>= max_tiles) */
    int step_tokens;      /* A: packed tokens the activation buffers hold */
    int step_seqs;        /* sequences one step may hold */
    int kv_tokens;        /* C: KV-cache positions (0: no cache, classification only) */
    int max_tree;         /* logits rows per LM-head chunk */
    /* weights */
    bf16 *patch_w, *class_emb, *pos_emb, *pre_ln_w, *pre_ln_b;
    gclip_layer *cl;
    bf16 *p_w1, *p_b1, *p_w2, *p_b2, *newline;
    bf16 *embed, *norm, *lm_head;
    gdec_layer *dl;
    /* vision buffers (vis_tiles tiles, NP tokens each) */
    float *v_pix;         /* (vis_tiles, 3, S, S) fp32 pixels */
    bf16 *v_cols;         /* (vis_tiles*GG, 3*P*P) patches */
    bf16 *v_x, *v_h;      /* (vis_tiles*NP, Dv) residual stream, normed input / attention output */
    bf16 *v_qkv;          /* (vis_tiles*NP, 3*Dv) [q | k | v] rows */
    bf16 *v_mlp;          /* (vis_tiles*NP, max(Iv, Ht)) */
    bf16 *v_tmp;          /* (vis_tiles*NP + 1, max(Ht, Dv)): projector output + newline row */
    int *v_qs;            /* constant: t*NP for t = 0..vis_tiles (tile starts for attention) */
    int *v_drop_cls;      /* constant: t*NP + 1 + p (rows without the CLS token) */
    int *v_ids;           /* scratch index list (max(step_tokens, vis_tiles*NP)) */
    bf16 *feats;          /* (step_tokens, Ht) packed image features */
    int n_feats, last_tiles;
    /* decoder buffers (step_tokens tokens) */
    bf16 *x;              /* (A, Ht) bf16 embeddings + image features */
    float *xf;            /* (A, Ht) fp32 residual stream */
    bf16 *h, *q, *att;    /* (A, Ht), (A, QD), (A, QD) */
    bf16 *kvt;            /* (A, 2*KD) this layer's [k | v] */
    bf16 *gu, *act;       /* (A, 2I), (A, I) */
    int fp8;              /* decoder GEMMs in e4m3 (weights quantized at load) */
    uint8_t *x8;          /* fp8: (A, I) the GEMM input as e4m3 */
    float *sx;            /* fp8: (A) its per-token scales */
    bf16 *kc, *vc;        /* (L, C, KD) KV cache (NULL when C = 0) */
    float *logits;        /* (max_tree, V) */
    int *d_ext;           /* llava_gpu_extend's index lists, one upload (4*A + 4*LLAVA_GPU_MAX_SEQS + 1 ints):
                             ids, positions, cache rows (n each), sequence ranges (4*S + 1), image rows */
    int *h_ints;          /* its host copy */
    int *d_step;          /* step index lists (see gpu_step.c), gpu_step_ints(A, step_seqs) ints */
    float *d_out;         /* (A) picked log-probabilities */
};

/* Decoder arguments (all arrays on the device): n packed rows at positions pos, sequences starting
 * at query rows qs (n_seqs + 1).
 * kv = 1 (generation): row i's key/value go to KV-cache row kv_rows[i], and sequence s attends to
 *   cache rows [kv_begin[s], kv_end[s]) (its new rows are the last of them; max_k bounds the lengths).
 * kv = 0 (label scoring step): keys are the step's own rows; tail/parent make each sequence's last
 *   tail[s] rows a label trie. */
typedef struct {
    int n;
    const int *pos;
    const int *qs, *tail, *parent;
    int n_seqs, max_q;
    int kv;
    const int *kv_rows, *kv_begin, *kv_end;
    int max_k;
    /* packed step, optional: only these rows leave the last layer (the rows the LM head needs):
     * keep_rows (n_keep packed rows, per sequence its last prompt row then its trie rows), their
     * positions, per-sequence starts keep_qs (n_seqs+1) and trie parents indexed by kept row.
     * Then g->h holds the n_keep final-normed rows in that order. */
    const int *keep_rows, *keep_pos, *keep_qs, *keep_par;
    int n_keep, max_keep_q;
} gpu_dec_args;
/* 1 when gpu_decoder can prune the last layer to n_keep rows (its scratch fits) */
int gpu_can_keep(const llava_gpu *g, int n_keep);

/* Vision tower over n_tiles tiles whose fp32 pixels are in g->v_pix; leaves the projected
 * features (n_tiles*(NP-1) rows, then the newline row) in g->v_tmp. */
void gpu_vision(llava_gpu *g, int n_tiles);
/* Decoder over the staged embeddings g->x (bf16, positions a->pos); final-normed hidden states
 * in g->h. */
void gpu_decoder(llava_gpu *g, const gpu_dec_args *a);
/* Row order that packs one image's projected features (n_tiles*(NP-1) rows + newline row nsel)
 * into its anyres layout: malloc'd, *count entries (= llava_model_image_tokens). */
int *gpu_pack_order(const llava_model *m, int n_tiles, int H, int W, int *count);
/* profile marks: start before an op of kind k, end after it (no-ops unless LLAVA_PROFILE=1) */
void gpu_prof_begin(llava_gpu *g);
void gpu_prof_end(llava_gpu *g, int kind);
void gpu_prof_collect(llava_gpu *g); /* after the stream is idle: adds the marks to the sums */
/* ints of g->d_step a step of A tokens and S sequences needs */
size_t gpu_step_ints(int A, int S);

#endif
#endif
