/* norms.cu — LayerNorm, RMSNorm and the fused residual add + LayerNorm / RMSNorm over the last dim
 * of (n, d) bf16 rows, fp32 statistics.
 *
 * One warp per row (8 rows per 256-thread block). When d % 8 == 0 and every pointer is 16-byte
 * aligned each lane moves 8 values per 16-byte access; otherwise a scalar loop does the same math.
 * The row is read once for the statistics and again (from L1/L2) for the output, so out may alias x:
 * every element is read and then written by the same lane. The fused adds store the bf16 sum in x
 * and take the statistics over that rounded sum (the value the next residual add reads); out may
 * alias r for the same reason. The residual add + LayerNorm of rows up to 1024 wide (the vision
 * tower's) keeps the row in registers: x and r are read once.
 * The fused residual add + RMSNorm over the fp32 stream also has a block-per-row kernel that keeps
 * the row in registers (d a multiple of 1024 up to 8192: the decoder's rows).
 * Twins: cpu_layernorm, cpu_rmsnorm (+ a residual add) in backend/cpu/ops.c.
 */
#include "backend/cuda/common.cuh"

#include <cstdlib>
#include <cstring>

#define ROWS_PER_BLOCK 8

/* the residual add of 8 values: f (x at p) += r, rounded to bf16 as stored back at p */
__device__ __forceinline__ void add8_store(float f[8], uint16_t *p, const uint16_t *r) {
    float g[8];
    load8(g, r);
#pragma unroll
    for (int i = 0; i < 8; i++) f[i] = bf2f(f2bf(f[i] + g[i]));
    store8(p, f);
}

/* the same for one value: returns x + r as stored (bf16) at p */
__device__ __forceinline__ float add1_store(float f, uint16_t *p, uint16_t r) {
    const uint16_t h = f2bf(f + bf2f(r));
    *p = h;
    return bf2f(h);
}

/* the LayerNorm output of 8 values f at o: (f - mean) · rstd · w + b (b may be NULL); 16-byte accesses */
__device__ __forceinline__ void ln_out8(uint16_t *o, float f[8], float mean, float rstd, const uint16_t *w,
                                        const uint16_t *b) {
    float g[8], bb[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
    load8(g, w);
    if (b) load8(bb, b);
#pragma unroll
    for (int i = 0; i < 8; i++) f[i] = (f[i] - mean) * rstd * g[i] + bb[i];
    store8(o, f);
}

/* LayerNorm: two-pass mean / centered variance (biased, as torch), then affine; optionally after
 * the residual add x += r (ADD; x only read otherwise). */
template <bool VEC, bool ADD>
__global__ void __launch_bounds__(256) layernorm_kernel(uint16_t *out, uint16_t *x, const uint16_t *r,
                                                        const uint16_t *w, const uint16_t *b, int n, int d, float eps) {
    int row = blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= n) return;
    uint16_t *xr = x + (size_t)row * d;
    const uint16_t *rr = ADD ? r + (size_t)row * d : nullptr;
    uint16_t *orow = out + (size_t)row * d;
    float s = 0.f;
    if (VEC) {
        for (int k = lane * 8; k < d; k += 256) {
            float f[8];
            load8(f, xr + k);
            if (ADD) add8_store(f, xr + k, rr + k);
#pragma unroll
            for (int i = 0; i < 8; i++) s += f[i];
        }
    } else {
        for (int k = lane; k < d; k += 32) {
            float f = bf2f(xr[k]);
            if (ADD) f = add1_store(f, xr + k, rr[k]);
            s += f;
        }
    }
    float mean = warp_sum(s) / d;
    float v = 0.f;
    if (VEC) {
        for (int k = lane * 8; k < d; k += 256) {
            float f[8];
            load8(f, xr + k);
#pragma unroll
            for (int i = 0; i < 8; i++) v += (f[i] - mean) * (f[i] - mean);
        }
    } else {
        for (int k = lane; k < d; k += 32) {
            float t = bf2f(xr[k]) - mean;
            v += t * t;
        }
    }
    float rstd = rsqrtf(warp_sum(v) / d + eps);
    if (VEC) {
        for (int k = lane * 8; k < d; k += 256) {
            float f[8];
            load8(f, xr + k);
            ln_out8(orow + k, f, mean, rstd, w + k, b ? b + k : nullptr);
        }
    } else {
        for (int k = lane; k < d; k += 32)
            orow[k] = f2bf((bf2f(xr[k]) - mean) * rstd * bf2f(w[k]) + (b ? bf2f(b[k]) : 0.f));
    }
}

/* Residual add + LayerNorm with the row in registers: one warp per row, d % 8 == 0 and d <= 1024
 * (CLIP-B/L widths: up to 4 chunks of 8 values a lane), 16-byte accesses. The same math as
 * layernorm_kernel<true, true>, with one read of x and r instead of three of x. */
__global__ void __launch_bounds__(256) add_layernorm_reg_kernel(uint16_t *out, uint16_t *x, const uint16_t *r,
                                                                const uint16_t *w, const uint16_t *b, int n, int d,
                                                                float eps) {
    constexpr int CH = 4;
    int row = blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= n) return;
    uint16_t *xr = x + (size_t)row * d;
    const uint16_t *rr = r + (size_t)row * d;
    uint16_t *orow = out + (size_t)row * d;
    float v[CH][8], s = 0.f;
#pragma unroll
    for (int c = 0; c < CH; c++) {
        const int k = c * 256 + lane * 8;
        if (k < d) {
            load8(v[c], xr + k);
            add8_store(v[c], xr + k, rr + k);
#pragma unroll
            for (int i = 0; i < 8; i++) s += v[c][i];
        }
    }
    const float mean = warp_sum(s) / d;
    float var = 0.f;
#pragma unroll
    for (int c = 0; c < CH; c++) {
        if (c * 256 + lane * 8 >= d) continue;
#pragma unroll
        for (int i = 0; i < 8; i++) var += (v[c][i] - mean) * (v[c][i] - mean);
    }
    const float rstd = rsqrtf(warp_sum(var) / d + eps);
#pragma unroll
    for (int c = 0; c < CH; c++) {
        const int k = c * 256 + lane * 8;
        if (k < d) ln_out8(orow + k, v[c], mean, rstd, w + k, b ? b + k : nullptr);
    }
}

/* RMSNorm, optionally after the residual add x += r (x is updated in bf16 and the statistics are
 * taken over the stored, rounded sum — the value the next residual add will read). */
template <bool VEC, bool ADD>
__global__ void __launch_bounds__(256)
    rmsnorm_kernel(uint16_t *out, uint16_t *x, const uint16_t *r, const uint16_t *w, int n, int d, float eps) {
    int row = blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= n) return;
    uint16_t *xr = x + (size_t)row * d;
    const uint16_t *rr = ADD ? r + (size_t)row * d : nullptr;
    uint16_t *orow = out + (size_t)row * d;
    float ss = 0.f;
    if (VEC) {
        for (int k = lane * 8; k < d; k += 256) {
            float f[8];
            load8(f, xr + k);
            if (ADD) add8_store(f, xr + k, rr + k);
#pragma unroll
            for (int i = 0; i < 8; i++) ss += f[i] * f[i];
        }
    } else {
        for (int k = lane; k < d; k += 32) {
            float f = bf2f(xr[k]);
            if (ADD) f = add1_store(f, xr + k, rr[k]);
            ss += f * f;
        }
    }
    float rinv = rsqrtf(warp_sum(ss) / d + eps);
    if (VEC) {
        for (int k = lane * 8; k < d; k += 256) {
            float f[8], g[8];
            load8(f, xr + k);
            load8(g, w + k);
#pragma unroll
            for (int i = 0; i < 8; i++) f[i] = g[i] * (f[i] * rinv);
            store8(orow + k, f);
        }
    } else {
        for (int k = lane; k < d; k += 32) orow[k] = f2bf(bf2f(w[k]) * (bf2f(xr[k]) * rinv));
    }
}

extern "C" void cuda_layernorm(cuda_ctx *c, bf16 *out, const bf16 *x, const bf16 *w, const bf16 *b, int n, int d,
                               float eps) {
    if (n <= 0 || d <= 0) return;
    ctx_use(c);
    bool vec = d % 8 == 0 && aligned16(out) && aligned16(x) && aligned16(w) && (!b || aligned16(b));
    int grid = ceil_div(n, ROWS_PER_BLOCK);
    /* x is only read when ADD is false; the cast keeps one kernel for both forms */
    if (vec)
        layernorm_kernel<true, false><<<grid, 256, 0, c->stream>>>(out, (uint16_t *)x, nullptr, w, b, n, d, eps);
    else
        layernorm_kernel<false, false><<<grid, 256, 0, c->stream>>>(out, (uint16_t *)x, nullptr, w, b, n, d, eps);
    LAUNCH_CHECK();
}

extern "C" void cuda_add_layernorm(cuda_ctx *c, bf16 *out, bf16 *x, const bf16 *r, const bf16 *w, const bf16 *b, int n,
                                   int d, float eps) {
    if (n <= 0 || d <= 0) return;
    ctx_use(c);
    bool vec = d % 8 == 0 && aligned16(out) && aligned16(x) && aligned16(r) && aligned16(w) && (!b || aligned16(b));
    int grid = ceil_div(n, ROWS_PER_BLOCK);
    if (vec && d <= 1024)
        add_layernorm_reg_kernel<<<grid, 256, 0, c->stream>>>(out, x, r, w, b, n, d, eps);
    else if (vec)
        layernorm_kernel<true, true><<<grid, 256, 0, c->stream>>>(out, x, r, w, b, n, d, eps);
    else
        layernorm_kernel<false, true><<<grid, 256, 0, c->stream>>>(out, x, r, w, b, n, d, eps);
    LAUNCH_CHECK();
}

extern "C" void cuda_rmsnorm(cuda_ctx *c, bf16 *out, const bf16 *x, const bf16 *w, int n, int d, float eps) {
    if (n <= 0 || d <= 0) return;
    ctx_use(c);
    bool vec = d % 8 == 0 && aligned16(out) && aligned16(x) && aligned16(w);
    int grid = ceil_div(n, ROWS_PER_BLOCK);
    /* x is only read when ADD is false; the cast keeps one kernel for both forms */
    if (vec)
        rmsnorm_kernel<true, false><<<grid, 256, 0, c->stream>>>(out, (uint16_t *)x, nullptr, w, n, d, eps);
    else
        rmsnorm_kernel<false, false><<<grid, 256, 0, c->stream>>>(out, (uint16_t *)x, nullptr, w, n, d, eps);
    LAUNCH_CHECK();
}

extern "C" void cuda_add_rmsnorm(cuda_ctx *c, bf16 *out, bf16 *x, const bf16 *r, const bf16 *w, int n, int d,
                                 float eps) {
    if (n <= 0 || d <= 0) return;
    ctx_use(c);
    bool vec = d % 8 == 0 && aligned16(out) && aligned16(x) && aligned16(r) && aligned16(w);
    int grid = ceil_div(n, ROWS_PER_BLOCK);
    if (vec)
        rmsnorm_kernel<true, true><<<grid, 256, 0, c->stream>>>(out, x, r, w, n, d, eps);
    else
        rmsnorm_kernel<false, true><<<grid, 256, 0, c->stream>>>(out, x, r, w, n, d, eps);
    LAUNCH_CHECK();
}

/* fp32 residual stream: x (fp32) += r (bf16, may be NULL), out (bf16) = rmsnorm(x) ⊙ w.
 * One warp per row. VEC (d % 8 == 0, 16-byte aligned rows): each lane moves 8 values per access
 * (two float4 of x, one 16-byte load of r, w and out); otherwise scalar. Each lane reads r[k] in the
 * first loop and writes out[k] in the second, so out may alias r. */
template <bool VEC>
__global__ void __launch_bounds__(256)
    add_rmsnorm_f32_kernel(uint16_t *out, float *x, const uint16_t *r, const uint16_t *w, int n, int d, float eps) {
    int row = blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= n) return;
    float *xr = x + (size_t)row * d;
    const uint16_t *rr = r ? r + (size_t)row * d : nullptr;
    uint16_t *orow = out + (size_t)row * d;
    float ss = 0.f;
    if (VEC) {
#pragma unroll 4
        for (int k = lane * 8; k < d; k += 256) {
            float v[8];
            load8_add_f32(v, xr + k, rr ? rr + k : nullptr);
#pragma unroll
            for (int i = 0; i < 8; i++) ss += v[i] * v[i];
        }
    } else {
        for (int k = lane; k < d; k += 32) {
            float v = xr[k] + (rr ? bf2f(rr[k]) : 0.f);
            xr[k] = v;
            ss += v * v;
        }
    }
    float rinv = rsqrtf(warp_sum(ss) / d + eps);
    if (VEC) {
#pragma unroll 4
        for (int k = lane * 8; k < d; k += 256) {
            float4 a = *reinterpret_cast<const float4 *>(xr + k), b = *reinterpret_cast<const float4 *>(xr + k + 4);
            float v[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w}, f[8];
            load8(f, w + k);
#pragma unroll
            for (int i = 0; i < 8; i++) v[i] = v[i] * rinv * f[i];
            store8(orow + k, v);
        }
    } else {
        for (int k = lane; k < d; k += 32) orow[k] = f2bf(xr[k] * rinv * bf2f(w[k]));
    }
}

/* The same with a 128-thread block per row and the row in registers (CH chunks of 8 values a
 * thread, d == CH * 1024): all loads of a row are issued before the first use, and the output pass
 * needs no second read of x. The decoder's rows (d 4096: 32 fp32 values a thread) take this one. */
template <int CH>
__global__ void __launch_bounds__(128)
    add_rmsnorm_f32_row_kernel(uint16_t *out, float *x, const uint16_t *r, const uint16_t *w, int d, float eps) {
    float *xr = x + (size_t)blockIdx.x * d;
    const uint16_t *rr = r ? r + (size_t)blockIdx.x * d : nullptr;
    uint16_t *orow = out + (size_t)blockIdx.x * d;
    float v[CH][8], ss = 0.f;
#pragma unroll
    for (int c = 0; c < CH; c++) {
        const int k = (c * 128 + threadIdx.x) * 8;
        load8_add_f32(v[c], xr + k, rr ? rr + k : nullptr);
#pragma unroll
        for (int i = 0; i < 8; i++) ss += v[c][i] * v[c][i];
    }
    __shared__ float part[4];
    ss = warp_sum(ss);
    if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = ss;
    __syncthreads();
    const float rinv = rsqrtf((part[0] + part[1] + part[2] + part[3]) / d + eps);
#pragma unroll
    for (int c = 0; c < CH; c++) {
        const int k = (c * 128 + threadIdx.x) * 8;
        float f[8];
        load8(f, w + k);
#pragma unroll
        for (int i = 0; i < 8; i++) f[i] = v[c][i] * rinv * f[i];
        store8(orow + k, f);
    }
}

/* LLAVA_CUDA_NORM=warp keeps every row on the warp kernel (to compare); read once */
static bool norm_rows_on() {
    static int on = -1;
    if (on < 0) {
        const char *e = getenv("LLAVA_CUDA_NORM");
        on = !(e && !strcmp(e, "warp"));
    }
    return on;
}

extern "C" void cuda_add_rmsnorm_f32(cuda_ctx *c, bf16 *out, float *x, const bf16 *r, const bf16 *w, int n, int d,
                                     float eps) {
    if (n <= 0 || d <= 0) return;
    ctx_use(c);
    bool vec = d % 8 == 0 && aligned16(out) && aligned16(x) && aligned16(w) && (!r || aligned16(r));
    if (vec && d % 1024 == 0 && d <= 8192 && norm_rows_on()) {
        switch (d / 1024) {
        case 1: add_rmsnorm_f32_row_kernel<1><<<n, 128, 0, c->stream>>>(out, x, r, w, d, eps); break;
        case 2: add_rmsnorm_f32_row_kernel<2><<<n, 128, 0, c->stream>>>(out, x, r, w, d, eps); break;
        case 3: add_rmsnorm_f32_row_kernel<3><<<n, 128, 0, c->stream>>>(out, x, r, w, d, eps); break;
        case 4: add_rmsnorm_f32_row_kernel<4><<<n, 128, 0, c->stream>>>(out, x, r, w, d, eps); break;
        case 5: add_rmsnorm_f32_row_kernel<5><<<n, 128, 0, c->stream>>>(out, x, r, w, d, eps); break;
        case 6: add_rmsnorm_f32_row_kernel<6><<<n, 128, 0, c->stream>>>(out, x, r, w, d, eps); break;
        case 7: add_rmsnorm_f32_row_kernel<7><<<n, 128, 0, c->stream>>>(out, x, r, w, d, eps); break;
        default: add_rmsnorm_f32_row_kernel<8><<<n, 128, 0, c->stream>>>(out, x, r, w, d, eps); break;
        }
        LAUNCH_CHECK();
        return;
    }
    if (vec)
        add_rmsnorm_f32_kernel<true><<<ceil_div(n, ROWS_PER_BLOCK), 256, 0, c->stream>>>(out, x, r, w, n, d, eps);
    else
        add_rmsnorm_f32_kernel<false><<<ceil_div(n, ROWS_PER_BLOCK), 256, 0, c->stream>>>(out, x, r, w, n, d, eps);
    LAUNCH_CHECK();
}
