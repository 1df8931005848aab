/* cuda_ops.h — the CUDA backend's C interface: device context, memory, and the ops the model
 * blocks need, each the GPU twin of a cpu_* op in backend/cpu/ops.h (same argument order).
 *
 * Storage: activations and weights are bf16 (uint16_t bit patterns, `bf16` below); accumulation,
 * norms and softmax run in fp32; logits are fp32. All pointers passed to ops are device pointers
 * unless the name says host. Every op is asynchronous on the context's stream; every launch is
 * checked (a launch failure is a bug: it aborts with file:line). Fallible calls (allocation, device
 * setup) return 0 / -1 with a message.
 * Compiled only when nvcc is found (LLAVA_CUDA defined); callers guard with #ifdef LLAVA_CUDA.
 */
#ifndef LLAVA_CUDA_OPS_H
#define LLAVA_CUDA_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "util/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef uint16_t bf16;
typedef struct cuda_ctx cuda_ctx;

/* Number of usable CUDA devices (0 when there is no driver or device); name of device 0 if any. */
int cuda_device_count(char *name, size_t name_len);
int cuda_ctx_new(cuda_ctx **out, int device, llava_err *err);
void cuda_ctx_free(cuda_ctx *c);
void cuda_sync(cuda_ctx *c);
/* free / total device memory in bytes */
void cuda_mem_info(size_t *free_b, size_t *total_b);

void *cuda_malloc(size_t bytes, const char *what, llava_err *err); /* NULL + message on failure */
void cuda_free(void *p);
void cuda_upload(cuda_ctx *c, void *dst, const void *host_src, size_t bytes);
void cuda_download(cuda_ctx *c, void *host_dst, const void *src, size_t bytes); /* synchronizes */
void cuda_memset(cuda_ctx *c, void *dst, int byte, size_t bytes);
void cuda_copy(cuda_ctx *c, void *dst, const void *src, size_t bytes); /* device to device */

/* Asynchronous work for pipelined steps (the scheduler): page-locked host buffers, copies that
 * return at once (the host buffer must stay untouched until an event recorded after the copy has
 * completed), strided device copies and events on the context's stream. */
typedef struct cuda_event cuda_event;
void *cuda_host_alloc(size_t bytes, const char *what, llava_err *err); /* page-locked; NULL + message */
void cuda_host_free(void *p);
void cuda_upload_async(cuda_ctx *c, void *dst, const void *pinned_src, size_t bytes);
void cuda_download_async(cuda_ctx *c, void *pinned_dst, const void *src, size_t bytes);
cuda_event *cuda_event_new(void);
void cuda_event_free(cuda_event *ev);
void cuda_event_record(cuda_ctx *c, cuda_event *ev);
void cuda_event_sync(cuda_event *ev);
int cuda_event_done(cuda_event *ev); /* 1 when all work before the record has completed */
cuda_event *cuda_event_new_timed(void);           /* an event that can be timed */
float cuda_event_ms(cuda_event *a, cuda_event *b); /* ms between two completed timed events */

/* host float32 → device bf16 (round to nearest even), n values; uses a staging buffer */
int cuda_upload_f32_as_bf16(cuda_ctx *c, bf16 *dst, const float *host_src, size_t n, llava_err *err);
/* device bf16 → host float32 */
void cuda_download_bf16_as_f32(cuda_ctx *c, float *host_dst, const bf16 *src, size_t n);

/* out (n, d_out) = x (n, d_in) · w (d_out, d_in)ᵀ + b (d_out, may be NULL); cuBLASLt, bf16 in,
 * fp32 accumulate, bf16 out. */
void cuda_linear(cuda_ctx *c, bf16 *out, const bf16 *x, const bf16 *w, const bf16 *b, int n, int d_in, int d_out);
/* the same with fp32 output (LM head → logits) */
void cuda_linear_f32out(cuda_ctx *c, float *out, const bf16 *x, const bf16 *w, int n, int d_in, int d_out);
/* out (n, d_out, fp32) += x · wᵀ, the sum in fp32 without a bf16 rounding of the product (the
 * decoder's residual stream takes its attention and MLP outputs this way) */
void cuda_linear_acc_f32(cuda_ctx *c, float *out, const bf16 *x, const bf16 *w, int n, int d_in, int d_out);
/* Bench helper: times (ms per call, on scratch buffers allocated and freed here) each algorithm
 * cuBLASLt's heuristic offers for that shape, at most max, in the heuristic's order (ms[0] is the
 * one the ops above use; -1 where an algorithm failed); mode 0 bf16 out, 1 fp32 out, 2 fp32
 * accumulate. Returns how many entries of ms it set (0: none, or no memory). Synchronizes. */
int cuda_linear_algos(cuda_ctx *c, int n, int d_in, int d_out, int mode, float *ms, int max);

/* FP8 (e4m3) linear layers, the opt-in --quantization fp8 path: q (n, d) e4m3 and scale (n) fp32 =
 * each row of x over its own scale max|x| / 448 (weights: a scale per output row, once at load;
 * activations: a scale per token, before each GEMM). */
void cuda_quant_rows_e4m3(cuda_ctx *c, uint8_t *q, float *scale, const bf16 *x, int n, int d);
/* the same fused into the op that makes the rows (quant.cu): SwiGLU of gu (n, 2I) = [gate | up] into
 * q (n, I); and x (n, d) fp32 += r (optional), then RMSNorm(x) · w into q (n, d) */
void cuda_swiglu_e4m3(cuda_ctx *c, uint8_t *q, float *scale, const bf16 *gu, int n, int I);
void cuda_add_rmsnorm_f32_e4m3(cuda_ctx *c, uint8_t *q, float *scale, float *x, const bf16 *r, const bf16 *w, int n,
                               int d, float eps);
/* out (n, d_out) bf16 = (x8 · sx) · (w8 · sw)ᵀ: e4m3 × e4m3 with fp32 accumulation and the per-token
 * (sx, n) and per-weight-row (sw, d_out) scales applied by cuBLASLt (outer-vector scaling, CUDA
 * 12.9+, compute capability 8.9+); _acc_f32 adds the product into an fp32 out instead. Returns 0
 * when cuBLASLt ran it, 1 when a slow SIMT kernel did (no such GEMM on this device, or rows that
 * are not 16-byte multiples); the result is the same either way. */
int cuda_linear_fp8(cuda_ctx *c, bf16 *out, const uint8_t *x8, const float *sx, const uint8_t *w8, const float *sw,
                    int n, int d_in, int d_out);
int cuda_linear_fp8_acc_f32(cuda_ctx *c, float *out, const uint8_t *x8, const float *sx, const uint8_t *w8,
                            const float *sw, int n, int d_in, int d_out);

/* LayerNorm / RMSNorm over the last dim, fp32 math; out may alias x. */
void cuda_layernorm(cuda_ctx *c, bf16 *out, const bf16 *x, const bf16 *w, const bf16 *b, int n, int d, float eps);
void cuda_rmsnorm(cuda_ctx *c, bf16 *out, const bf16 *x, const bf16 *w, int n, int d, float eps);
/* Fused residual: x += r (bf16, fp32 add), then out = rmsnorm(x) — the pre-norm of the next block. */
void cuda_add_rmsnorm(cuda_ctx *c, bf16 *out, bf16 *x, const bf16 *r, const bf16 *w, int n, int d, float eps);
void cuda_add(cuda_ctx *c, bf16 *x, const bf16 *r, size_t n); /* x += r */
/* Fused residual: x += r (bf16, fp32 add), then out = layernorm(x) ⊙ w + b (b may be NULL) over the
 * stored, rounded sum (the vision tower's residual add + the next norm). out may alias r. */
void cuda_add_layernorm(cuda_ctx *c, bf16 *out, bf16 *x, const bf16 *r, const bf16 *w, const bf16 *b, int n, int d,
                        float eps);
/* The same with an fp32 residual stream x (the decoder keeps its residual in fp32, closer to the fp32
 * reference than bf16): x += r (r bf16, may be NULL), out (bf16) = rmsnorm(x) ⊙ w; out may alias r. */
void cuda_add_rmsnorm_f32(cuda_ctx *c, bf16 *out, float *x, const bf16 *r, const bf16 *w, int n, int d, float eps);
/* out (fp32) = x (bf16), n values */
void cuda_bf16_to_f32(cuda_ctx *c, float *out, const bf16 *x, size_t n);

void cuda_gelu(cuda_ctx *c, bf16 *x, size_t n);        /* erf form */
void cuda_gelu_tanh(cuda_ctx *c, bf16 *x, size_t n);
void cuda_quick_gelu(cuda_ctx *c, bf16 *x, size_t n);
/* out (n, I) = silu(gu[:, :I]) ⊙ gu[:, I:] where gu is (n, 2I) (gate and up projections side by side) */
void cuda_swiglu(cuda_ctx *c, bf16 *out, const bf16 *gu, int n, int I);

/* out (n, d) = table rows ids (device int32, n) */
void cuda_embed(cuda_ctx *c, bf16 *out, const bf16 *table, const int *ids, int n, int d);
/* dst rows at positions idx (device int32, n) ← src rows (n, d): scatter of image features */
void cuda_scatter_rows(cuda_ctx *c, bf16 *dst, const bf16 *src, const int *idx, int n, int d);
/* dst rows i ← src rows idx[i] (gather) */
void cuda_gather_rows(cuda_ctx *c, bf16 *dst, const bf16 *src, const int *idx, int n, int d);
/* KV-cache store: kc row rows[i] <- kv[i][0:kd], vc row rows[i] <- kv[i][kd:2kd] (kv rows are the
 * [k | v] GEMM output, 2*kd wide; rows must not repeat). */
void cuda_kv_store(cuda_ctx *c, bf16 *kc, bf16 *vc, const bf16 *kv, const int *rows, int n, int kd);

/* CLIP patch embedding input: cols (n_tiles*G*G, 3*P*P) bf16 = the P×P patches of pixels
 * (n_tiles, 3, S, S) fp32 (G = S / P), patch-major, channel then row then column within a patch
 * (the conv weight's layout), so cols · patch_wᵀ is the stride-P convolution. */
void cuda_patchify(cuda_ctx *c, bf16 *cols, const float *pixels, int n_tiles, int S, int P);
/* CLIP embeddings: x (n_tiles*(GG+1), d) where row t*(GG+1) = class_emb + pos[0] and row t*(GG+1)+1+p
 * = patches[t*GG+p] + pos[1+p] (fp32 adds, bf16 out). */
void cuda_clip_embed(cuda_ctx *c, bf16 *x, const bf16 *patches, const bf16 *class_emb, const bf16 *pos_emb, int n_tiles,
                     int GG, int d);

/* RoPE, half-split pairs, in place on x (n, heads*hd) with row stride `stride` elements;
 * token i at position pos[i] (device int32). Angles in fp32 as cpu_rope. */
void cuda_rope(cuda_ctx *c, bf16 *x, int n, int heads, int hd, int stride, const int *pos, float theta);
/* the same for q and k of the same tokens in one launch (one cos/sin table) */
void cuda_rope_qk(cuda_ctx *c, bf16 *q, int q_heads, int q_stride, bf16 *k, int k_heads, int k_stride, int n, int hd,
                  const int *pos, float theta);

/* Attention over packed variable-length sequences (flash-style: K/V tiles in shared memory,
 * online softmax, no n×n matrix in memory).
 * Sequence s owns query rows [q_start[s], q_start[s+1]) of q/out and key rows
 * [k_start[s], k_start[s+1]) of k/v (all int32 device arrays of n_seqs+1 entries).
 * k/v row stride = kv_stride elements, kv head j at offset j*hd; q row stride = q_stride elements
 * (0: heads*hd), so q may sit inside a fused [q | k | v] projection row; out row stride = heads*hd.
 * causal: query row i of sequence s has absolute position (k_len_s - q_len_s) + (i - q_start[s])
 * and sees keys with position <= its own (prefill after a cached prefix, or decode with q_len 1).
 * Query head h reads kv head h / (heads/kv_heads). hd <= 128. */
void cuda_attention(cuda_ctx *c, bf16 *out, const bf16 *q, const bf16 *k, const bf16 *v, const int *q_start,
                    const int *k_start, int n_seqs, int max_q, int heads, int kv_heads, int hd, int kv_stride,
                    int q_stride, int causal, float scale);

/* Causal attention of packed new rows against ranges of a shared KV cache (batched generation):
 * sequence s owns query rows [q_start[s], q_start[s+1]) and key rows [k_begin[s], k_end[s]) of k/v
 * (device int32; n_seqs+1, n_seqs, n_seqs entries; ranges may have gaps between them); its queries
 * are its last keys (query i at position (k_len - q_len) + i). max_k >= every k_end - k_begin.
 * q and out rows have stride heads*hd. */
void cuda_attention_ranges(cuda_ctx *c, bf16 *out, const bf16 *q, const bf16 *k, const bf16 *v, const int *q_start,
                           const int *k_begin, const int *k_end, int n_seqs, int max_q, int max_k, int heads,
                           int kv_heads, int hd, int kv_stride, float scale);

/* Packed prompts each followed by a label trie, in one launch (batched label scoring): causal
 * attention over sequences as cuda_attention (q_len == k_len), except that the last tail_len[s]
 * (device, n_seqs; 0 = none) queries/keys of sequence s form a tree: tail query a sees the
 * sequence's first k_len - tail_len keys and the tail keys of its ancestors (itself included).
 * parent (device) is indexed by packed query row; for a tail row it holds the parent's index within
 * the tail (-1 = root; parents precede children). q_stride as cuda_attention (0: heads*hd). */
void cuda_attention_tail_tree(cuda_ctx *c, bf16 *out, const bf16 *q, const bf16 *k, const bf16 *v, const int *q_start,
                              const int *k_start, const int *tail_len, const int *parent, int n_seqs, int max_q,
                              int heads, int kv_heads, int hd, int kv_stride, int q_stride, float scale);

/* Hopper path: cuda_attention and cuda_attention_tail_tree calls whose queries are their keys
 * (q_start == k_start, the same pointer) run on a wgmma kernel (prompts and trie tails in one
 * launch) for causal hd 128, causal hd 64 and full hd 64, when the build has sm_90a code and the
 * device is compute capability 9.0 (available: 1). It is used when available, LLAVA_CUDA_ATTN is
 * auto or mma, and the process-wide switch is on: initially LLAVA_CUDA_ATTN_SM90 (0 = off; unset =
 * on); cuda_attention_sm90_set(0|1) sets it and returns the previous value (-1 only reads it). */
int cuda_attention_sm90_available(cuda_ctx *c);
int cuda_attention_sm90_set(int on);

/* out (rows, V) fp32 log-softmax of logits (rows, V) fp32; out may alias logits. */
void cuda_log_softmax(cuda_ctx *c, float *out, const float *logits, int rows, int V);
/* out[i] = x[rows[i] - row0][cols[i]] for the pairs with row0 <= rows[i] < row0 + n_rows (others
 * untouched): the log-probabilities label scoring needs, picked from a chunk of rows (n_rows, V). */
void cuda_pick(cuda_ctx *c, float *out, const float *x, const int *rows, const int *cols, int n, int row0, int n_rows,
               int V);
/* argmax of each row of logits (rows, V) into idx (device int32); ties → lowest index */
void cuda_argmax(cuda_ctx *c, int *idx, const float *logits, int rows, int V);

#ifdef __cplusplus
}
#endif

#endif
