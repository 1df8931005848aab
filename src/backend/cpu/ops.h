/* ops.h — the fp32 CPU reference for every op the model blocks use.
 *
 * Layout conventions: activations are row-major (n_tokens, features); linear weights are stored
 * as Hugging Face stores them, (out_features, in_features), so y = x·Wᵀ + b. Output pointers come
 * first, then inputs, then dimensions. Every op here has (or will have) a CUDA twin in
 * backend/cuda with the same name and argument order, and a cross-check test.
 * Threads: ops use OpenMP and OpenBLAS; cpu_set_threads() sets both.
 */
#ifndef LLAVA_CPU_OPS_H
#define LLAVA_CPU_OPS_H

#include <stddef.h>

void cpu_set_threads(int n);

/* out (n, d_out) = x (n, d_in) · w (d_out, d_in)ᵀ + b (d_out; may be NULL). out must not alias x. */
void cpu_linear(float *out, const float *x, const float *w, const float *b, int n, int d_in, int d_out);

/* LayerNorm over the last dim (biased variance, as torch), affine. out may alias x. */
void cpu_layernorm(float *out, const float *x, const float *w, const float *b, int n, int d, float eps);

/* RMSNorm: out = w ⊙ x / sqrt(mean(x²) + eps). out may alias x. */
void cpu_rmsnorm(float *out, const float *x, const float *w, int n, int d, float eps);

/* In place activations over n values. gelu = exact erf form. */
void cpu_gelu(float *x, size_t n);
void cpu_gelu_tanh(float *x, size_t n);
void cpu_quick_gelu(float *x, size_t n);
/* gate (n) ← silu(gate) ⊙ up (n) */
void cpu_silu_mul(float *gate, const float *up, size_t n);

/* Rotary embedding, half-split pairs (j, j + head_dim/2) as HF rotate_half, in place on
 * x (n, n_heads*head_dim); token i sits at position pos ? pos[i] : pos0 + i. Angles are computed
 * in float32 the way transformers does (inv_freq in float32, position × inv_freq rounded to float32). */
void cpu_rope(float *x, int n, int n_heads, int head_dim, int pos0, const int *pos, double theta);

/* Scaled dot-product attention for one sequence.
 * q (n_q, n_heads*hd); k, v (n_kv, n_kv_heads*hd) with row stride kv_stride floats;
 * out (n_q, n_heads*hd). Query head h reads kv head h / (n_heads/n_kv_heads).
 * causal: query i (absolute position q_pos0 + i) sees keys j <= q_pos0 + i; window > 0 also hides
 * keys with (q_pos0 + i) - j >= window. Softmax in fp32 with the max subtracted. */
void cpu_attention(float *out, const float *q, const float *k, const float *v, int n_q, int n_kv, int n_heads,
                   int n_kv_heads, int hd, int kv_stride, int causal, int q_pos0, int window, float scale);

/* Attention of a token tree after a cached prefix (label scoring): query i sees the n_prefix cached
 * keys and the tree keys of its ancestors and itself; tree key a lives at row n_prefix + a of k/v.
 * parent[i] is -1 (child of the prefix) or an index < i. */
void cpu_attention_tree(float *out, const float *q, const float *k, const float *v, int n_q, int n_prefix,
                        const int *parent, int n_heads, int n_kv_heads, int hd, int kv_stride, float scale);

/* out[i] = log_softmax(x)[i] over n values (computed in double). */
void cpu_log_softmax(double *out, const float *x, int n);
/* out[i] = x[rows[i] - row0][cols[i]] for pairs with row0 <= rows[i] < row0 + n_rows; x (n_rows, V). */
void cpu_pick(float *out, const float *x, const int *rows, const int *cols, int n, int row0, int n_rows, int V);

/* CLIP patch-convolution input: cols (n_tiles*G*G, 3*P*P) = the P×P patches of pixels
 * (n_tiles, 3, S, S), G = S/P, patch-major; each row is (channel, row, column) like the conv weight. */
void cpu_patchify(float *cols, const float *pixels, int n_tiles, int S, int P);
/* CLIP embeddings x (n_tiles*(GG+1), d): row t*(GG+1) = class_emb + pos[0], row t*(GG+1)+1+p =
 * patches[t*GG+p] + pos[1+p]. For one tile patches may be x + d (in place). */
void cpu_clip_embed(float *x, const float *patches, const float *class_emb, const float *pos_emb, int n_tiles, int GG,
                    int d);

#endif
