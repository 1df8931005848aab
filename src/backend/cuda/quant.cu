/* quant.cu — FP8 (e4m3) rows for --quantization fp8: each row of a matrix over its own scale
 * s = max |row| / 448 (e4m3's largest finite value), q = e4m3(x / s) rounded to nearest,
 * saturating. Alone (weights at load, the attention output, the attention's normed input), or fused
 * into the op that makes the row so that its bf16 row is never written: the MLP's RMSNorm and its
 * SwiGLU.
 *
 * One kernel, quant_kernel<Rows, CH>, for every op: a block of 256 threads per row, and a Rows type
 * that gives the row's values (BF16 rows, SwiGLU of [gate | up] rows, or residual add + RMSNorm,
 * whose begin() adds the residual and takes the row's norm first). Rows up to 16384 wide whose width
 * is a multiple of 8 (the 7B's 4096 and 14336) run with CH > 0: 16-byte loads, the row held in
 * registers between its max and its write (CH chunks of 8 values a thread), 8 bytes of e4m3 stored
 * at a time. Other rows run with CH = 0: one value at a time, computed twice.
 * Never: allocates.
 */
#include <cuda_fp8.h>

#include "backend/cuda/common.cuh"

#define QT 256 /* threads per row */

__device__ __forceinline__ uint8_t to_e4m3(float v) {
    return (uint8_t)__nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3);
}

/* the block's sum and max of v (every thread gets it); part: QT / 32 floats of shared memory, free
 * again on return */
__device__ __forceinline__ float block_sum(float v, float *part) {
    v = warp_sum(v);
    if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = v;
    __syncthreads();
    v = 0.f;
#pragma unroll
    for (int i = 0; i < QT / 32; i++) v += part[i];
    __syncthreads();
    return v;
}
__device__ __forceinline__ float block_max(float v, float *part) {
    v = warp_max(v);
    if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = v;
    __syncthreads();
    v = part[0];
#pragma unroll
    for (int i = 1; i < QT / 32; i++) v = fmaxf(v, part[i]);
    __syncthreads();
    return v;
}

/* ---- the row sources: value k of the block's row, alone or 8 at a time (k % 8 == 0) -------------- */

struct Bf16Rows { /* x (n, d) bf16 */
    const uint16_t *x;
    int d;
    __device__ void begin(float *) {}
    __device__ float at(int k) const { return bf2f(x[(size_t)blockIdx.x * d + k]); }
    __device__ void at8(int k, float v[8]) const { load8(v, x + (size_t)blockIdx.x * d + k); }
};

struct SwigluRows { /* gu (n, 2I) = [gate | up] bf16; value k = silu(gate k) * up k */
    const uint16_t *gu;
    int I;
    __device__ void begin(float *) {}
    __device__ float at(int k) const {
        const uint16_t *g = gu + (size_t)blockIdx.x * 2 * I;
        return silu_mul(bf2f(g[k]), bf2f(g[I + k]));
    }
    __device__ void at8(int k, float v[8]) const {
        const uint16_t *g = gu + (size_t)blockIdx.x * 2 * I;
        float u[8];
        load8(v, g + k);
        load8(u, g + I + k);
#pragma unroll
        for (int i = 0; i < 8; i++) v[i] = silu_mul(v[i], u[i]);
    }
};

struct NormRows { /* x (n, d) fp32 += r (bf16, optional), then RMSNorm(x) · w */
    float *x;
    const uint16_t *r, *w;
    int d, vec; /* vec: 8 at a time in begin() */
    float eps, rinv;
    __device__ void begin(float *part) {
        float *xr = x + (size_t)blockIdx.x * d;
        const uint16_t *rr = r ? r + (size_t)blockIdx.x * d : nullptr;
        float ss = 0.f;
        if (vec) {
            for (int k = threadIdx.x * 8; k < d; k += QT * 8) {
                float v[8];
                load8_add_f32(v, xr + k, rr ? rr + k : nullptr);
#pragma unroll
                for (int i = 0; i < 8; i++) ss += v[i] * v[i];
            }
        } else {
            for (int k = threadIdx.x; k < d; k += QT) {
                float v = xr[k];
                if (rr) xr[k] = v += bf2f(rr[k]);
                ss += v * v;
            }
        }
        rinv = rsqrtf(block_sum(ss, part) / d + eps);
    }
    __device__ float at(int k) const { return x[(size_t)blockIdx.x * d + k] * rinv * bf2f(w[k]); }
    __device__ void at8(int k, float v[8]) const {
        float f[8];
        load8_add_f32(v, x + (size_t)blockIdx.x * d + k, nullptr);
        load8(f, w + k);
#pragma unroll
        for (int i = 0; i < 8; i++) v[i] *= rinv * f[i];
    }
};

/* ---- the kernel ------------------------------------------------------------------------------------ */

template <class Rows, int CH>
__global__ void __launch_bounds__(QT) quant_kernel(uint8_t *q, float *scale, Rows rows, int d) {
    __shared__ float part[QT / 32];
    uint8_t *qr = q + (size_t)blockIdx.x * d;
    rows.begin(part);
    float mx = 0.f;
    if constexpr (CH == 0) {
        for (int k = threadIdx.x; k < d; k += QT) mx = fmaxf(mx, fabsf(rows.at(k)));
    }
    float v[CH > 0 ? CH : 1][8];
#pragma unroll
    for (int c = 0; c < CH; c++) {
        const int k = (c * QT + threadIdx.x) * 8;
        if (k < d) {
            rows.at8(k, v[c]);
#pragma unroll
            for (int i = 0; i < 8; i++) mx = fmaxf(mx, fabsf(v[c][i]));
        }
    }
    mx = block_max(mx, part);
    const float s = mx > 0.f ? mx / 448.f : 1.f, inv = 1.f / s;
    if (threadIdx.x == 0) scale[blockIdx.x] = s;
    if constexpr (CH == 0) {
        for (int k = threadIdx.x; k < d; k += QT) qr[k] = to_e4m3(rows.at(k) * inv);
    }
#pragma unroll
    for (int c = 0; c < CH; c++) {
        const int k = (c * QT + threadIdx.x) * 8;
        if (k < d) {
            uint32_t w[2] = {0, 0};
#pragma unroll
            for (int i = 0; i < 8; i++) w[i / 4] |= (uint32_t)to_e4m3(v[c][i] * inv) << (8 * (i % 4));
            *reinterpret_cast<uint2 *>(qr + k) = make_uint2(w[0], w[1]);
        }
    }
}

/* n rows of d through quant_kernel<Rows, CH>; vec: the rows' inputs allow 16-byte loads */
template <class Rows>
static void quant_launch(cuda_ctx *c, uint8_t *q, float *scale, Rows rows, int n, int d, bool vec) {
    if (n <= 0 || d <= 0) return;
    ctx_use(c);
    const int ch = (d + 8 * QT - 1) / (8 * QT);
    const bool fast = vec && d % 8 == 0 && ch <= 8 && !((uintptr_t)q & 7);
    cudaStream_t st = c->stream;
    switch (fast ? ch : 0) {
    case 0: quant_kernel<Rows, 0><<<n, QT, 0, st>>>(q, scale, rows, d); break;
    case 1: quant_kernel<Rows, 1><<<n, QT, 0, st>>>(q, scale, rows, d); break;
    case 2: quant_kernel<Rows, 2><<<n, QT, 0, st>>>(q, scale, rows, d); break;
    case 3: quant_kernel<Rows, 3><<<n, QT, 0, st>>>(q, scale, rows, d); break;
    case 4: quant_kernel<Rows, 4><<<n, QT, 0, st>>>(q, scale, rows, d); break;
    case 5: quant_kernel<Rows, 5><<<n, QT, 0, st>>>(q, scale, rows, d); break;
    case 6: quant_kernel<Rows, 6><<<n, QT, 0, st>>>(q, scale, rows, d); break;
    case 7: quant_kernel<Rows, 7><<<n, QT, 0, st>>>(q, scale, rows, d); break;
    default: quant_kernel<Rows, 8><<<n, QT, 0, st>>>(q, scale, rows, d); break;
    }
    LAUNCH_CHECK();
}

extern "C" void cuda_quant_rows_e4m3(cuda_ctx *c, uint8_t *q, float *scale, const bf16 *x, int n, int d) {
    quant_launch(c, q, scale, Bf16Rows{x, d}, n, d, aligned16(x));
}

extern "C" void cuda_swiglu_e4m3(cuda_ctx *c, uint8_t *q, float *scale, const bf16 *gu, int n, int I) {
    quant_launch(c, q, scale, SwigluRows{gu, I}, n, I, aligned16(gu));
}

extern "C" void cuda_add_rmsnorm_f32_e4m3(cuda_ctx *c, uint8_t *q, float *scale, float *x, const bf16 *r, const bf16 *w,
                                          int n, int d, float eps) {
    const bool vec = d % 8 == 0 && aligned16(x) && (!r || aligned16(r)) && aligned16(w);
    quant_launch(c, q, scale, NormRows{x, r, w, d, vec, eps, 0.f}, n, d, vec);
}
