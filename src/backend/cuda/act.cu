/* act.cu — elementwise ops on bf16 activations, fp32 math: GELU (erf and tanh forms), quick-GELU
 * (CLIP), SwiGLU over side-by-side gate/up projections, and the residual add.
 *
 * Layout: flat arrays; SwiGLU reads gu (n, 2I) = [gate | up] per row and writes out (n, I).
 * Every kernel is a grid-stride loop over 8-value groups (one 16-byte access) when the pointers are
 * 16-byte aligned, with a scalar tail; otherwise one value per step.
 * Twins: cpu_gelu, cpu_gelu_tanh, cpu_quick_gelu, cpu_silu_mul (gate/up as separate arrays).
 */
#include "backend/cuda/common.cuh"

enum { ACT_GELU, ACT_GELU_TANH, ACT_QUICK_GELU };

template <int KIND>
__device__ __forceinline__ float act_f(float x) {
    if (KIND == ACT_GELU) return 0.5f * x * (1.f + erff(x * 0.70710678118654752440f));
    if (KIND == ACT_GELU_TANH) return 0.5f * x * (1.f + tanhf(0.79788456080286535588f * (x + 0.044715f * x * x * x)));
    return x / (1.f + expf(-1.702f * x));
}

template <int KIND>
__global__ void act_kernel(uint16_t *x, size_t n, int vec) {
    size_t stride = (size_t)gridDim.x * blockDim.x, t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t nv = vec ? n / 8 : 0;
    for (size_t i = t; i < nv; i += stride) {
        float f[8];
        load8(f, x + i * 8);
#pragma unroll
        for (int j = 0; j < 8; j++) f[j] = act_f<KIND>(f[j]);
        store8(x + i * 8, f);
    }
    for (size_t i = nv * 8 + t; i < n; i += stride) x[i] = f2bf(act_f<KIND>(bf2f(x[i])));
}

__global__ void add_kernel(uint16_t *x, const uint16_t *r, size_t n, int vec) {
    size_t stride = (size_t)gridDim.x * blockDim.x, t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t nv = vec ? n / 8 : 0;
    for (size_t i = t; i < nv; i += stride) {
        float a[8], b[8];
        load8(a, x + i * 8);
        load8(b, r + i * 8);
#pragma unroll
        for (int j = 0; j < 8; j++) a[j] += b[j];
        store8(x + i * 8, a);
    }
    for (size_t i = nv * 8 + t; i < n; i += stride) x[i] = f2bf(bf2f(x[i]) + bf2f(r[i]));
}

/* vec: I % 8 == 0 and both pointers 16-byte aligned, so every 8-group stays inside one row */
__global__ void swiglu_kernel(uint16_t *out, const uint16_t *gu, int n, int I, int vec) {
    size_t stride = (size_t)gridDim.x * blockDim.x, t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t total = (size_t)n * I;
    if (vec) {
        for (size_t i = t; i < total / 8; i += stride) {
            size_t e = i * 8, row = e / I, col = e % I;
            float g[8], u[8];
            load8(g, gu + row * 2 * I + col);
            load8(u, gu + row * 2 * I + I + col);
#pragma unroll
            for (int j = 0; j < 8; j++) g[j] = silu_mul(g[j], u[j]);
            store8(out + e, g);
        }
    } else {
        for (size_t e = t; e < total; e += stride) {
            size_t row = e / I, col = e % I;
            out[e] = f2bf(silu_mul(bf2f(gu[row * 2 * I + col]), bf2f(gu[row * 2 * I + I + col])));
        }
    }
}

template <int KIND>
static void act_launch(cuda_ctx *c, bf16 *x, size_t n) {
    if (!n) return;
    ctx_use(c);
    int vec = aligned16(x);
    act_kernel<KIND><<<grid_for(vec ? (n + 7) / 8 : n, 256, c), 256, 0, c->stream>>>(x, n, vec);
    LAUNCH_CHECK();
}

extern "C" void cuda_gelu(cuda_ctx *c, bf16 *x, size_t n) { act_launch<ACT_GELU>(c, x, n); }
extern "C" void cuda_gelu_tanh(cuda_ctx *c, bf16 *x, size_t n) { act_launch<ACT_GELU_TANH>(c, x, n); }
extern "C" void cuda_quick_gelu(cuda_ctx *c, bf16 *x, size_t n) { act_launch<ACT_QUICK_GELU>(c, x, n); }

extern "C" void cuda_add(cuda_ctx *c, bf16 *x, const bf16 *r, size_t n) {
    if (!n) return;
    ctx_use(c);
    int vec = aligned16(x) && aligned16(r);
    add_kernel<<<grid_for(vec ? (n + 7) / 8 : n, 256, c), 256, 0, c->stream>>>(x, r, n, vec);
    LAUNCH_CHECK();
}

extern "C" void cuda_swiglu(cuda_ctx *c, bf16 *out, const bf16 *gu, int n, int I) {
    if (n <= 0 || I <= 0) return;
    ctx_use(c);
    int vec = I % 8 == 0 && aligned16(out) && aligned16(gu);
    size_t total = (size_t)n * I;
    swiglu_kernel<<<grid_for(vec ? total / 8 : total, 256, c), 256, 0, c->stream>>>(out, gu, n, I, vec);
    LAUNCH_CHECK();
}

__global__ void bf16_to_f32_kernel(float *out, const uint16_t *x, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = bf2f(x[i]);
}

extern "C" void cuda_bf16_to_f32(cuda_ctx *c, float *out, const bf16 *x, size_t n) {
    if (!n) return;
    ctx_use(c);
    bf16_to_f32_kernel<<<grid_for(n, 256, c), 256, 0, c->stream>>>(out, x, n);
    LAUNCH_CHECK();
}
