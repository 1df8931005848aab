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

__global__ void rope_kernel(uint16_t *x, int n, int heads, int hd, int stride, const int *pos, float theta) {
    extern __shared__ float inv[];
    int half = hd / 2;
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        float e = (float)(2 * i) / (float)hd;
        inv[i] = (float)(1.0 / (double)(float)pow((double)theta, (double)e));
    }
    __syncthreads();
    int t0 = blockIdx.x * ROPE_TOK;
    for (int w = threadIdx.x; w < ROPE_TOK * half; w += blockDim.x) {
        int t = t0 + w / half, i = w % half;
        if (t >= n) break;
        float ang = (float)pos[t] * inv[i];
        double sd, cd;
        sincos((double)ang, &sd, &cd);
        float cs = (float)cd, sn = (float)sd;
        uint16_t *row = x + (size_t)t * stride;
        for (int h = 0; h < heads; h++) {
            uint16_t *p = row + (size_t)h * hd;
            float a = bf2f(p[i]), b = bf2f(p[i + half]);
            p[i] = f2bf(a * cs - b * sn);
            p[i + half] = f2bf(b * cs + a * sn);
        }
    }
}

extern "C" void cuda_rope(cuda_ctx *c, bf16 *x, int n, int heads, int hd, int stride, const int *pos, float theta) {
    if (n <= 0 || heads <= 0 || hd < 2) return;
    ctx_use(c);
    int half = hd / 2;
    rope_kernel<<<ceil_div(n, ROPE_TOK), 128, (size_t)half * sizeof(float), c->stream>>>(x, n, heads, hd, stride, pos,
                                                                                          theta);
    LAUNCH_CHECK();
}
