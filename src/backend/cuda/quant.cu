/* quant.cu — FP8 (e4m3) rows for --quantization fp8: each row of a matrix over its own scale
 * s = max |row| / 448 (e4m3's largest finite value), q = e4m3(x / s) rounded to nearest,
 * saturating. Alone (weights at load, the attention output), or fused into the op that makes the
 * row so that the bf16 row is never written: the MLP's RMSNorm and its SwiGLU.
 *
 * One block of 256 threads per row. Rows up to 16384 wide whose width is a multiple of 8 (the 7B's
 * 4096 and 14336) take the fast kernels: 16-byte loads, the row's values held in registers between
 * the max and the write (CH chunks of 8 a thread), 8 bytes of e4m3 stored at a time. Other rows take
 * a plain two-pass kernel that recomputes its values.
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

/* 8 values times inv, as e4m3, into 8 bytes at p (8-byte aligned) */
__device__ __forceinline__ void store8_e4m3(uint8_t *p, const float v[8], float inv) {
    uint32_t w[2] = {0, 0};
#pragma unroll
    for (int i = 0; i < 8; i++) w[i / 4] |= (uint32_t)to_e4m3(v[i] * inv) << (8 * (i % 4));
    *reinterpret_cast<uint2 *>(p) = make_uint2(w[0], w[1]);
}

/* the fast kernels' chunk count for a row of d: 0 when d does not qualify */
static int vec_chunks(int d, const void *in, const void *q) {
    const int ch = (d + 8 * QT - 1) / (8 * QT);
    if (d % 8 || ch > 8 || ((uintptr_t)in & 15) || ((uintptr_t)q & 7)) return 0;
    return ch;
}

/* calls K<CH> with CH = ch (1..8) */
#define VEC_DISPATCH(ch, launch)                                                                                       \
    switch (ch) {                                                                                                      \
    case 1: launch(1); break;                                                                                          \
    case 2: launch(2); break;                                                                                          \
    case 3: launch(3); break;                                                                                          \
    case 4: launch(4); break;                                                                                          \
    case 5: launch(5); break;                                                                                          \
    case 6: launch(6); break;                                                                                          \
    case 7: launch(7); break;                                                                                          \
    default: launch(8); break;                                                                                         \
    }

template <int CH>
__global__ void __launch_bounds__(QT) quant_rows_e4m3_vec(uint8_t *q, float *scale, const uint16_t *x, int d) {
    const uint16_t *xr = x + (size_t)blockIdx.x * d;
    uint8_t *qr = q + (size_t)blockIdx.x * d;
    __shared__ float part[QT / 32];
    float v[CH][8], mx = 0.f;
#pragma unroll
    for (int c = 0; c < CH; c++) {
        const int k = (c * QT + threadIdx.x) * 8;
        if (k < d) {
            load8(v[c], xr + k);
#pragma unroll
            for (int i = 0; i < 8; i++) mx = fmaxf(mx, fabsf(v[c][i]));
        }
    }
    const float s = scale_of(block_max(mx, part)), inv = 1.f / s;
    if (threadIdx.x == 0) scale[blockIdx.x] = s;
#pragma unroll
    for (int c = 0; c < CH; c++) {
        const int k = (c * QT + threadIdx.x) * 8;
        if (k < d) store8_e4m3(qr + k, v[c], inv);
    }
}

template <int CH>
__global__ void __launch_bounds__(QT) swiglu_e4m3_vec(uint8_t *q, float *scale, const uint16_t *gu, int I) {
    const uint16_t *g = gu + (size_t)blockIdx.x * 2 * I, *u = g + I;
    uint8_t *qr = q + (size_t)blockIdx.x * I;
    __shared__ float part[QT / 32];
    float v[CH][8], mx = 0.f;
#pragma unroll
    for (int c = 0; c < CH; c++) {
        const int k = (c * QT + threadIdx.x) * 8;
        if (k < I) {
            float uf[8];
            load8(v[c], g + k);
            load8(uf, u + k);
#pragma unroll
            for (int i = 0; i < 8; i++) {
                v[c][i] = v[c][i] / (1.f + expf(-v[c][i])) * uf[i];
                mx = fmaxf(mx, fabsf(v[c][i]));
            }
        }
    }
    const float s = scale_of(block_max(mx, part)), inv = 1.f / s;
    if (threadIdx.x == 0) scale[blockIdx.x] = s;
#pragma unroll
    for (int c = 0; c < CH; c++) {
        const int k = (c * QT + threadIdx.x) * 8;
        if (k < I) store8_e4m3(qr + k, v[c], inv);
    }
}

template <int CH>
__global__ void __launch_bounds__(QT) add_rmsnorm_f32_e4m3_vec(uint8_t *q, float *scale, float *x, const uint16_t *r,
                                                               const uint16_t *w, int d, float eps) {
    float *xr = x + (size_t)blockIdx.x * d;
    const uint16_t *rr = r ? r + (size_t)blockIdx.x * d : nullptr;
    uint8_t *qr = q + (size_t)blockIdx.x * d;
    __shared__ float part[QT / 32];
    float v[CH][8], ss = 0.f;
#pragma unroll
    for (int c = 0; c < CH; c++) {
        const int k = (c * QT + threadIdx.x) * 8;
        if (k < d) {
            const float4 a = *reinterpret_cast<const float4 *>(xr + k), b = *reinterpret_cast<const float4 *>(xr + k + 4);
            v[c][0] = a.x, v[c][1] = a.y, v[c][2] = a.z, v[c][3] = a.w;
            v[c][4] = b.x, v[c][5] = b.y, v[c][6] = b.z, v[c][7] = b.w;
            if (rr) {
                float f[8];
                load8(f, rr + k);
#pragma unroll
                for (int i = 0; i < 8; i++) v[c][i] += f[i];
                *reinterpret_cast<float4 *>(xr + k) = make_float4(v[c][0], v[c][1], v[c][2], v[c][3]);
                *reinterpret_cast<float4 *>(xr + k + 4) = make_float4(v[c][4], v[c][5], v[c][6], v[c][7]);
            }
#pragma unroll
            for (int i = 0; i < 8; i++) ss += v[c][i] * v[c][i];
        }
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
#pragma unroll
    for (int c = 0; c < CH; c++) {
        const int k = (c * QT + threadIdx.x) * 8;
        if (k < d) {
            float f[8];
            load8(f, w + k);
#pragma unroll
            for (int i = 0; i < 8; i++) {
                v[c][i] = v[c][i] * rinv * f[i];
                mx = fmaxf(mx, fabsf(v[c][i]));
            }
        }
    }
    const float s = scale_of(block_max(mx, part)), inv = 1.f / s;
    if (threadIdx.x == 0) scale[blockIdx.x] = s;
#pragma unroll
    for (int c = 0; c < CH; c++) {
        const int k = (c * QT + threadIdx.x) * 8;
        if (k < d) store8_e4m3(qr + k, v[c], inv);
    }
}

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
    const int ch = vec_chunks(d, x, q);
#define L_(CH) quant_rows_e4m3_vec<CH><<<n, QT, 0, c->stream>>>(q, scale, x, d)
    if (ch) {
        VEC_DISPATCH(ch, L_)
    } else {
        quant_rows_e4m3_kernel<<<n, QT, 0, c->stream>>>(q, scale, x, d);
    }
#undef L_
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
    const int ch = vec_chunks(I, gu, q);
#define L_(CH) swiglu_e4m3_vec<CH><<<n, QT, 0, c->stream>>>(q, scale, gu, I)
    if (ch) {
        VEC_DISPATCH(ch, L_)
    } else {
        swiglu_e4m3_kernel<<<n, QT, 0, c->stream>>>(q, scale, gu, I);
    }
#undef L_
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
    const int ch = (!r || !((uintptr_t)r & 15)) && !((uintptr_t)w & 15) ? vec_chunks(d, x, q) : 0;
#define L_(CH) add_rmsnorm_f32_e4m3_vec<CH><<<n, QT, 0, c->stream>>>(q, scale, x, r, w, d, eps)
    if (ch) {
        VEC_DISPATCH(ch, L_)
    } else {
        add_rmsnorm_f32_e4m3_kernel<<<n, QT, 0, c->stream>>>(q, scale, x, r, w, d, eps);
    }
#undef L_
    LAUNCH_CHECK();
}
