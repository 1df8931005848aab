/* common.cuh — what every CUDA op file shares: the cuda_ctx layout, the launch/status checks,
 * bf16 <-> fp32 helpers, warp reductions, 16-byte vector access, and the index hash that benchmark
 * operands are filled with.
 *
 * Owns: struct cuda_ctx (one per device and stream; all mutable backend state lives here — the
 *   cuBLASLt handle, its workspace, the GEMM plan cache, upload staging buffers).
 * Assumes: compute capability >= 8.0 (bf16 mma.sync, cp.async); cuda_ctx_new refuses older cards.
 * Never: global mutable state (no static handles), device allocation on the op path.
 */
#ifndef LLAVA_CUDA_COMMON_CUH
#define LLAVA_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <cublasLt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "backend/cuda/cuda_ops.h"

/* A failed CUDA call inside an op is a bug (bad pointer, bad launch configuration, sticky device
 * error): report where and abort. Fallible setup paths (allocation, device open) check by hand. */
#define CUDA_CHECK(call)                                                                        \
    do {                                                                                        \
        cudaError_t e_ = (call);                                                                \
        if (e_ != cudaSuccess) {                                                                \
            fprintf(stderr, "llava: CUDA error at %s:%d: %s (%s) in %s\n", __FILE__, __LINE__,  \
                    cudaGetErrorString(e_), cudaGetErrorName(e_), #call);                       \
            abort();                                                                            \
        }                                                                                       \
    } while (0)

/* after every kernel launch */
#define LAUNCH_CHECK() CUDA_CHECK(cudaGetLastError())

#define CUBLAS_CHECK(call)                                                                      \
    do {                                                                                        \
        cublasStatus_t s_ = (call);                                                             \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                      \
            fprintf(stderr, "llava: cuBLAS error at %s:%d: status %d in %s\n", __FILE__, __LINE__, \
                    (int)s_, #call);                                                            \
            abort();                                                                            \
        }                                                                                       \
    } while (0)

/* ---- GEMM plan cache (gemm.cu) --------------------------------------------------------------- */
#define GEMM_CACHE_N 48

typedef struct gemm_plan {
    int used;                      /* slot holds a plan */
    int n, d_in, d_out;            /* shape */
    int mode, has_bias;            /* variant: output bf16 / fp32 / fp32 accumulated (gemm.cu) */
    int align_x, align_w, align_o; /* pointer alignment classes (bytes, 2..256) the algo was chosen for */
    int fallback;                  /* 1: cuBLASLt offered no algo; use the SIMT kernel */
    unsigned long long last_use;   /* LRU clock */
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t lw, lx, lo;
    cublasLtMatmulAlgo_t algo;
} gemm_plan;

struct cuda_ctx {
    int device;
    int sm_count;
    int cc_major, cc_minor;
    cudaStream_t stream;
    cublasLtHandle_t lt;
    void *workspace; /* cuBLASLt workspace, device */
    size_t workspace_bytes;
    gemm_plan plans[GEMM_CACHE_N];
    unsigned long long plan_clock;
    float *stage_dev;     /* fp32 staging for cuda_upload_f32_as_bf16, allocated on first use */
    size_t stage_dev_n;   /* floats */
    uint16_t *stage_host; /* pinned bf16 staging for cuda_download_bf16_as_f32 */
    size_t stage_host_n;  /* values */
    int attn_impl;        /* 0 auto, 1 generic SIMT, 2 mma (plain V loads), 3 mma (ldmatrix V); env LLAVA_CUDA_ATTN */
    int attn_cfg;         /* tensor-core kernel shape: 0 auto, else 1 + index into attention.cu's table;
                             env LLAVA_CUDA_ATTN_CFG (e.g. 4x2 = 4 warps, 2 blocks per SM) */
};

/* Makes the context's device current for the calling thread (cheap when it already is). */
static inline void ctx_use(cuda_ctx *c) {
    int cur = -1;
    CUDA_CHECK(cudaGetDevice(&cur));
    if (cur != c->device) CUDA_CHECK(cudaSetDevice(c->device));
}

void gemm_cache_free(cuda_ctx *c);    /* gemm.cu */
int attention_ctx_init(cuda_ctx *c); /* attention.cu: kernel attributes (shared-memory limits) */

/* ---- small helpers --------------------------------------------------------------------------- */
static inline int ceil_div(long long a, long long b) { return (int)((a + b - 1) / b); }
static inline int aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

/* grid size for a grid-stride loop over `work` items with `threads` per block */
static inline int grid_for(size_t work, int threads, const cuda_ctx *c) {
    size_t b = (work + threads - 1) / threads;
    size_t cap = (size_t)c->sm_count * 32;
    if (b > cap) b = cap;
    return b < 1 ? 1 : (int)b;
}

__device__ __forceinline__ float bf2f(uint16_t h) { return __uint_as_float(((uint32_t)h) << 16); }
/* round to nearest even (NaN stays NaN) */
__device__ __forceinline__ uint16_t f2bf(float f) { return __bfloat16_as_ushort(__float2bfloat16_rn(f)); }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* a cheap hash of index i mapped to [-1, 1]: varied benchmark operands (constant ones draw less power) */
__device__ __forceinline__ float hash_unit(size_t i, uint32_t seed) {
    uint32_t h = (uint32_t)i * 2654435761u ^ seed;
    h ^= h >> 16;
    h *= 0x7feb352du;
    h ^= h >> 15;
    return (float)(h & 0xFFFFFF) / 8388608.0f - 1.0f;
}

/* 8 bf16 <-> 8 floats through one 16-byte access (p must be 16-byte aligned) */
__device__ __forceinline__ void load8(float f[8], const uint16_t *p) {
    uint4 u = *reinterpret_cast<const uint4 *>(p);
    uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        f[2 * i] = __uint_as_float(w[i] << 16);
        f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    }
}
/* 8 fp32 of the residual stream at x (16-byte aligned) into v; with r (8 bf16, 16-byte aligned) the
 * sum x + r, also written back to x */
__device__ __forceinline__ void load8_add_f32(float v[8], float *x, const uint16_t *r) {
    const float4 a = *reinterpret_cast<const float4 *>(x), b = *reinterpret_cast<const float4 *>(x + 4);
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
    if (r) {
        float f[8];
        load8(f, r);
#pragma unroll
        for (int i = 0; i < 8; i++) v[i] += f[i];
        *reinterpret_cast<float4 *>(x) = make_float4(v[0], v[1], v[2], v[3]);
        *reinterpret_cast<float4 *>(x + 4) = make_float4(v[4], v[5], v[6], v[7]);
    }
}

__device__ __forceinline__ float silu_mul(float g, float u) { return g / (1.f + expf(-g)) * u; }

__device__ __forceinline__ void store8(uint16_t *p, const float f[8]) {
    uint32_t w[4];
#pragma unroll
    for (int i = 0; i < 4; i++) w[i] = (uint32_t)f2bf(f[2 * i]) | ((uint32_t)f2bf(f[2 * i + 1]) << 16);
    *reinterpret_cast<uint4 *>(p) = make_uint4(w[0], w[1], w[2], w[3]);
}

#endif
