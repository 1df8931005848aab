/* rope.cu — rotary position embedding, half-split pairs (j, j + hd/2) as HF rotate_half, in place on
 * x (n, heads*hd) with row stride `stride` elements (so q and k can be rotated inside a fused qkv
 * buffer); token i sits at position pos[i].
 *
 * Angles match cpu_rope bit for bit where it matters: inv_freq = float(1 / float(theta^(2j/hd))),
 * angle = float(pos) * inv_freq in fp32, cos/sin evaluated in double on that fp32 angle and rounded.
 * (Double precision costs little here: one cos/sin per (token, pair), shared by all heads.)
 */
#include "backend/cuda/common.cuh"

#define ROPE_TOK 16

/* One block per ROPE_TOK tokens: cos/sin of every (token, pair) into shared memory once, then
 * every head of x (and of x2 when given: q and k in one launch) rotated from that table; VEC moves
 * 8 pairs per thread with 16-byte accesses (hd/2 % 8 == 0, strides % 8 == 0, 16-byte bases). */
template <bool VEC>
__global__ void rope_kernel(uint16_t *x, int heads, int stride, uint16_t *x2, int heads2, int stride2, int n, int hd,
                            const int *pos, float theta) {
    extern __shared__ float tab[]; /* [ROPE_TOK][half] cos, then [ROPE_TOK][half] sin */
    const int half = hd / 2, t0 = blockIdx.x * ROPE_TOK;
    const int nt = min(ROPE_TOK, n - t0);
    float *cs = tab, *sn = tab + ROPE_TOK * half;
    for (int w = threadIdx.x; w < nt * half; w += blockDim.x) {
        int t = w / half, i = w % half;
        float e = (float)(2 * i) / (float)hd;
        float inv = (float)(1.0 / (double)(float)pow((double)theta, (double)e));
        float ang = (float)pos[t0 + t] * inv;
        double sd, cd;
        sincos((double)ang, &sd, &cd);
        cs[w] = (float)cd, sn[w] = (float)sd;
    }
    __syncthreads();
    const int chunk = VEC ? 8 : 1, nc = half / chunk;
    const int per_tok = (heads + heads2) * nc;
    for (int w = threadIdx.x; w < nt * per_tok; w += blockDim.x) {
        int t = w / per_tok, r = w % per_tok, h = r / nc, i = (r % nc) * chunk;
        uint16_t *p = h < heads ? x + (size_t)(t0 + t) * stride + (size_t)h * hd
                                : x2 + (size_t)(t0 + t) * stride2 + (size_t)(h - heads) * hd;
        const float *c = cs + t * half + i, *s_ = sn + t * half + i;
        if (VEC) {
            float a[8], b[8];
            load8(a, p + i);
            load8(b, p + i + half);
            float o1[8], o2[8];
#pragma unroll
            for (int j = 0; j < 8; j++) o1[j] = a[j] * c[j] - b[j] * s_[j], o2[j] = b[j] * c[j] + a[j] * s_[j];
            store8(p + i, o1);
            store8(p + i + half, o2);
        } else {
            float a = bf2f(p[i]), b = bf2f(p[i + half]);
            p[i] = f2bf(a * c[0] - b * s_[0]);
            p[i + half] = f2bf(b * c[0] + a * s_[0]);
        }
    }
}

static void rope_launch(cuda_ctx *c, bf16 *x, int heads, int stride, bf16 *x2, int heads2, int stride2, int n, int hd,
                        const int *pos, float theta) {
    if (n <= 0 || heads + heads2 <= 0 || hd < 2) return;
    ctx_use(c);
    const int half = hd / 2;
    bool vec = half % 8 == 0 && stride % 8 == 0 && aligned16(x) && (!x2 || (stride2 % 8 == 0 && aligned16(x2)));
    size_t smem = (size_t)2 * ROPE_TOK * half * sizeof(float);
    if (vec)
        rope_kernel<true><<<ceil_div(n, ROPE_TOK), 256, smem, c->stream>>>(x, heads, stride, x2, heads2, stride2, n, hd,
                                                                            pos, theta);
    else
        rope_kernel<false><<<ceil_div(n, ROPE_TOK), 256, smem, c->stream>>>(x, heads, stride, x2, heads2, stride2, n,
                                                                             hd, pos, theta);
    LAUNCH_CHECK();
}

extern "C" void cuda_rope(cuda_ctx *c, bf16 *x, int n, int heads, int hd, int stride, const int *pos, float theta) {
    rope_launch(c, x, heads, stride, NULL, 0, 0, n, hd, pos, theta);
}

extern "C" void cuda_rope_qk(cuda_ctx *c, bf16 *q, int q_heads, int q_stride, bf16 *k, int k_heads, int k_stride, int n,
                             int hd, const int *pos, float theta) {
    rope_launch(c, q, q_heads, q_stride, k, k_heads, k_stride, n, hd, pos, theta);
}
