/* patch.cu — the CLIP embedding layer's data movement: patchify (im2col of the tiles for the
 * stride-P patch convolution, fp32 pixels → bf16 patch rows) and the assembly of the embeddings
 * (class token first, then the patch projections, plus the position embeddings).
 *
 * Both are pure gathers: one thread per output element, fp32 math, bf16 stores. The pixels come
 * from the host as fp32 (the preprocessor's output, exactly as the CPU path sees them) and are
 * rounded to bf16 here, once.
 * Twins: cpu_patchify, cpu_clip_embed (backend/cpu/ops.c), which the CPU CLIP tower uses.
 */
#include "backend/cuda/common.cuh"

__global__ void patchify_kernel(uint16_t *cols, const float *pixels, int n_tiles, int S, int P) {
    const int G = S / P, K = 3 * P * P;
    const size_t total = (size_t)n_tiles * G * G * K;
    for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
        size_t row = e / K;
        int k = (int)(e % K);
        int t = (int)(row / ((size_t)G * G)), p = (int)(row % ((size_t)G * G));
        int ch = k / (P * P), ky = (k / P) % P, kx = k % P;
        int y = (p / G) * P + ky, x = (p % G) * P + kx;
        cols[e] = f2bf(pixels[(((size_t)t * 3 + ch) * S + y) * S + x]);
    }
}

extern "C" void cuda_patchify(cuda_ctx *c, bf16 *cols, const float *pixels, int n_tiles, int S, int P) {
    if (n_tiles <= 0) return;
    ctx_use(c);
    size_t total = (size_t)n_tiles * (S / P) * (S / P) * 3 * P * P;
    patchify_kernel<<<grid_for(total, 256, c), 256, 0, c->stream>>>(cols, pixels, n_tiles, S, P);
    LAUNCH_CHECK();
}

__global__ void clip_embed_kernel(uint16_t *x, const uint16_t *patches, const uint16_t *class_emb,
                                  const uint16_t *pos_emb, int n_tiles, int GG, int d) {
    const int NP = GG + 1;
    const size_t total = (size_t)n_tiles * NP * d;
    for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
        size_t row = e / d;
        int j = (int)(e % d);
        int t = (int)(row / NP), p = (int)(row % NP);
        float v = p == 0 ? bf2f(class_emb[j]) : bf2f(patches[((size_t)t * GG + p - 1) * d + j]);
        x[e] = f2bf(v + bf2f(pos_emb[(size_t)p * d + j]));
    }
}

extern "C" void cuda_clip_embed(cuda_ctx *c, bf16 *x, const bf16 *patches, const bf16 *class_emb, const bf16 *pos_emb,
                                int n_tiles, int GG, int d) {
    if (n_tiles <= 0) return;
    ctx_use(c);
    size_t total = (size_t)n_tiles * (GG + 1) * d;
    clip_embed_kernel<<<grid_for(total, 256, c), 256, 0, c->stream>>>(x, patches, class_emb, pos_emb, n_tiles, GG, d);
    LAUNCH_CHECK();
}
