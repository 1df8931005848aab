/* quant.cu — FP8 (e4m3) rows for --quantization fp8: each row of a matrix over its own scale
 * s = max |row| / 448 (e4m3's largest finite value), q = e4m3(x / s) rounded to nearest,
 * saturating. Alone (weights at load, the attention output), or fused into the op that makes the
 * row so that the bf16 row is never written: the MLP's RMSNorm and its SwiGLU.
 *
 * One block of 256 threads per row: a pass for the row's max, then a pass that writes q (the fused
 * kernels recompute their values in the second pass: the row is in L1/L2 by then).
 * Never: allocates.
 */
#include <cuda_fp8.h>

#include "backend/cuda/common.cuh"

#define QT 256 /* threads per row */

__device__ __forceinline__ uint8_t to_e4m3(float v) {
    return (uint8_t)__nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3);
}

/* the block's max of m (every thread gets it); part: QT / 32 floats of shared memory */
__device__ __forceinline__ float block_max(float m, float *part) {
    m = warp_max(m);
    if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = m;
    __syncthreads();
    m = part[0];
#pragma unroll
    for (int i = 1; i < QT / 32; i++) m = fmaxf(m, part[i]);
    return m;
}

__device__ __forceinline__ float scale_of(float mx) { return mx > 0.f ? mx / 448.f : 1.f; }

__global__ void __launch_bounds__(QT) quant_rows_e4m3_kernel(uint8_t *q, float *scale, const uint16_t *x, int d) {
    const uint16_t *xr = x + (size_t)blockIdx.x * d;
    uint8_t *qr = q + (size_t)blockIdx.x * d;
    __shared__ float part[QT / 32];
    float mx = 0.f;
    for (int k = threadIdx.x; k < d; k += QT) mx = fmaxf(mx, fabsf(bf2f(xr[k])));
    const float s = scale_of(block_max(mx, part)), inv = 1.f / s;
    if (threadIdx.x == 0) scale[blockIdx.x] = s;
    for (int k = threadIdx.x; k < d; k += QT) qr[k] = to_e4m3(bf2f(xr[k]) * inv);
}

extern "C" void cuda_quant_rows_e4m3(cuda_ctx *c, uint8_t *q, float *scale, const bf16 *x, int n, int d) {
    if (n <= 0 || d <= 0) return;
    ctx_use(c);
    quant_rows_e4m3_kernel<<<n, QT, 0, c->stream>>>(q, scale, x, d);
    LAUNCH_CHECK();
}

/* SwiGLU of one row of gu ([gate | up], 2I wide) straight to e4m3 */
__global__ void __launch_bounds__(QT) swiglu_e4m3_kernel(uint8_t *q, float *scale, const uint16_t *gu, int I) {
    const uint16_t *g = gu + (size_t)blockIdx.x * 2 * I, *u = g + I;
    uint8_t *qr = q + (size_t)blockIdx.x * I;
    __shared__ float part[QT / 32];
    float mx = 0.f;
    for (int k = threadIdx.x; k < I; k += QT) {
        const float gv = bf2f(g[k]);
        mx = fmaxf(mx, fabsf(gv / (1.f + expf(-gv)) * bf2f(u[k])));
    }
    const float s = scale_of(block_max(mx, part)), inv = 1.f / s;
    if (threadIdx.x == 0) scale[blockIdx.x] = s;
    for (int k = threadIdx.x; k < I; k += QT) {
        const float gv = bf2f(g[k]);
        qr[k] = to_e4m3(gv / (1.f + expf(-gv)) * bf2f(u[k]) * inv);
    }
}

extern "C" void cuda_swiglu_e4m3(cuda_ctx *c, uint8_t *q, float *scale, const bf16 *gu, int n, int I) {
    if (n <= 0 || I <= 0) return;
    ctx_use(c);
    swiglu_e4m3_kernel<<<n, QT, 0, c->stream>>>(q, scale, gu, I);
    LAUNCH_CHECK();
}

/* x (fp32) += r (bf16, optional), then RMSNorm(x) · w of the row straight to e4m3 */
__global__ void __launch_bounds__(QT)
    add_rmsnorm_f32_e4m3_kernel(uint8_t *q, float *scale, float *x, const uint16_t *r, const uint16_t *w, int d,
                                float eps) {
    float *xr = x + (size_t)blockIdx.x * d;
    const uint16_t *rr = r ? r + (size_t)blockIdx.x * d : nullptr;
    uint8_t *qr = q + (size_t)blockIdx.x * d;
    __shared__ float part[QT / 32];
    float ss = 0.f;
    for (int k = threadIdx.x; k < d; k += QT) {
        float v = xr[k];
        if (rr) xr[k] = v += bf2f(rr[k]);
        ss += v * v;
    }
    ss = warp_sum(ss);
    if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = ss;
    __syncthreads();
    float tot = 0.f;
#pragma unroll
    for (int i = 0; i < QT / 32; i++) tot += part[i];
    const float rinv = rsqrtf(tot / d + eps);
    __syncthreads(); /* part is reused by block_max */
    float mx = 0.f;
    for (int k = threadIdx.x; k < d; k += QT) mx = fmaxf(mx, fabsf(xr[k] * rinv * bf2f(w[k])));
    const float s = scale_of(block_max(mx, part)), inv = 1.f / s;
    if (threadIdx.x == 0) scale[blockIdx.x] = s;
    for (int k = threadIdx.x; k < d; k += QT) qr[k] = to_e4m3(xr[k] * rinv * bf2f(w[k]) * inv);
}

extern "C" void cuda_add_rmsnorm_f32_e4m3(cuda_ctx *c, uint8_t *q, float *scale, float *x, const bf16 *r, const bf16 *w,
                                          int n, int d, float eps) {
    if (n <= 0 || d <= 0) return;
    ctx_use(c);
    add_rmsnorm_f32_e4m3_kernel<<<n, QT, 0, c->stream>>>(q, scale, x, r, w, d, eps);
    LAUNCH_CHECK();
}
