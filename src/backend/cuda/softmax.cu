/* softmax.cu — row-wise log-softmax and argmax over fp32 logits (rows, V), V = 32064 for Mistral.
 *
 * One 512-thread block per row. log_softmax makes one pass for (max, sum of exp) with each thread
 * keeping its own running max and rescaling its sum (online softmax), combines the per-thread pairs,
 * and a second pass writes x - lse; out may alias logits (each element is read then written by the
 * same thread). argmax breaks ties toward the lowest index and ignores NaN (cpu twin: a plain scan).
 * Twin: cpu_log_softmax (double precision, one row). cuda_pick gathers the (row, token) entries label
 * scoring needs from a chunk of log-softmaxed rows (twin: cpu_pick).
 */
#include <float.h>
#include <limits.h>

#include "backend/cuda/common.cuh"

#define SM_THREADS 512

__device__ __forceinline__ void ms_combine(float &m, float &s, float m2, float s2) {
    float mn = fmaxf(m, m2);
    if (mn == -INFINITY) return; /* both empty */
    s = s * expf(m - mn) + s2 * expf(m2 - mn);
    m = mn;
}

__global__ void __launch_bounds__(SM_THREADS)
    log_softmax_kernel(float *out, const float *logits, int V, int vec) {
    const float *x = logits + (size_t)blockIdx.x * V;
    float *o = out + (size_t)blockIdx.x * V;
    float m = -INFINITY, s = 0.f;
    int nv = vec ? V / 4 : 0;
    for (int i = threadIdx.x; i < nv; i += SM_THREADS) {
        float4 f = reinterpret_cast<const float4 *>(x)[i];
        float mx = fmaxf(fmaxf(f.x, f.y), fmaxf(f.z, f.w));
        if (mx > m) {
            s *= expf(m - mx);
            m = mx;
        }
        if (m != -INFINITY) s += expf(f.x - m) + expf(f.y - m) + expf(f.z - m) + expf(f.w - m);
    }
    for (int i = nv * 4 + threadIdx.x; i < V; i += SM_THREADS) {
        float f = x[i];
        if (f > m) {
            s *= expf(m - f);
            m = f;
        }
        if (m != -INFINITY) s += expf(f - m);
    }
    for (int off = 16; off > 0; off >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, off), s2 = __shfl_xor_sync(0xffffffffu, s, off);
        ms_combine(m, s, m2, s2);
    }
    __shared__ float sm[SM_THREADS / 32], ss[SM_THREADS / 32];
    __shared__ float lse_s;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) sm[warp] = m, ss[warp] = s;
    __syncthreads();
    if (warp == 0) {
        m = lane < SM_THREADS / 32 ? sm[lane] : -INFINITY;
        s = lane < SM_THREADS / 32 ? ss[lane] : 0.f;
        for (int off = 16; off > 0; off >>= 1) {
            float m2 = __shfl_xor_sync(0xffffffffu, m, off), s2 = __shfl_xor_sync(0xffffffffu, s, off);
            ms_combine(m, s, m2, s2);
        }
        if (lane == 0) lse_s = m + logf(s);
    }
    __syncthreads();
    float lse = lse_s;
    for (int i = threadIdx.x; i < nv; i += SM_THREADS) {
        float4 f = reinterpret_cast<const float4 *>(x)[i];
        f.x -= lse, f.y -= lse, f.z -= lse, f.w -= lse;
        reinterpret_cast<float4 *>(o)[i] = f;
    }
    for (int i = nv * 4 + threadIdx.x; i < V; i += SM_THREADS) o[i] = x[i] - lse;
}

__device__ __forceinline__ void am_combine(float &v, int &i, float v2, int i2) {
    if (v2 > v || (v2 == v && i2 < i)) v = v2, i = i2;
}

__global__ void __launch_bounds__(SM_THREADS) argmax_kernel(int *idx, const float *logits, int V) {
    const float *x = logits + (size_t)blockIdx.x * V;
    float best = -INFINITY;
    int bi = INT_MAX;
    for (int i = threadIdx.x; i < V; i += SM_THREADS) {
        float f = x[i];
        if (f > best || (f == best && i < bi)) best = f, bi = i; /* NaN never compares greater */
    }
    for (int off = 16; off > 0; off >>= 1) {
        float v2 = __shfl_xor_sync(0xffffffffu, best, off);
        int i2 = __shfl_xor_sync(0xffffffffu, bi, off);
        am_combine(best, bi, v2, i2);
    }
    __shared__ float sv[SM_THREADS / 32];
    __shared__ int si[SM_THREADS / 32];
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) sv[warp] = best, si[warp] = bi;
    __syncthreads();
    if (warp == 0) {
        best = lane < SM_THREADS / 32 ? sv[lane] : -INFINITY;
        bi = lane < SM_THREADS / 32 ? si[lane] : INT_MAX;
        for (int off = 16; off > 0; off >>= 1) {
            float v2 = __shfl_xor_sync(0xffffffffu, best, off);
            int i2 = __shfl_xor_sync(0xffffffffu, bi, off);
            am_combine(best, bi, v2, i2);
        }
        if (lane == 0) idx[blockIdx.x] = bi == INT_MAX ? 0 : bi; /* all NaN / -inf row: index 0 */
    }
}

extern "C" void cuda_log_softmax(cuda_ctx *c, float *out, const float *logits, int rows, int V) {
    if (rows <= 0 || V <= 0) return;
    ctx_use(c);
    int vec = V % 4 == 0 && aligned16(out) && aligned16(logits);
    log_softmax_kernel<<<rows, SM_THREADS, 0, c->stream>>>(out, logits, V, vec);
    LAUNCH_CHECK();
}

extern "C" void cuda_argmax(cuda_ctx *c, int *idx, const float *logits, int rows, int V) {
    if (rows <= 0 || V <= 0) return;
    ctx_use(c);
    argmax_kernel<<<rows, SM_THREADS, 0, c->stream>>>(idx, logits, V);
    LAUNCH_CHECK();
}

__global__ void pick_kernel(float *out, const float *x, const int *rows, const int *cols, int n, int row0, int n_rows,
                            int V) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    int r = rows[i] - row0;
    if (r < 0 || r >= n_rows) return;
    out[i] = x[(size_t)r * V + cols[i]];
}

extern "C" void cuda_pick(cuda_ctx *c, float *out, const float *x, const int *rows, const int *cols, int n, int row0,
                          int n_rows, int V) {
    if (n <= 0 || n_rows <= 0) return;
    ctx_use(c);
    pick_kernel<<<ceil_div(n, 256), 256, 0, c->stream>>>(out, x, rows, cols, n, row0, n_rows, V);
    LAUNCH_CHECK();
}
