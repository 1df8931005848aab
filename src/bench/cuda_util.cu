// cuda_util.cu — device sync and the bf16 GEMM ceiling for `llava bench` (see cuda_util.h).
#include "bench/cuda_util.h"

#include <chrono>

#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include <cublasLt.h>
#include <cuda_fp8.h>

#include "backend/cuda/common.cuh"

extern "C" void bench_cuda_device_sync(void) { cudaDeviceSynchronize(); }

// fills x (n values) with hash_unit values as bf16
__global__ static void fill_bf16(uint16_t *x, size_t n, uint32_t seed) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    x[i] = f2bf(hash_unit(i, seed));
}

// back-to-back calls of f for `seconds`, `batch` calls between device syncs; the rate (calls/s) over
// the second half (the card at the clocks its power limit holds under a long load, as in a long job)
template <typename F>
static double sustained_rate(F f, double seconds, int batch) {
    auto ts = std::chrono::steady_clock::now();
    double el = 0, t_half = -1;
    long calls = 0, calls_half = 0;
    while (el < seconds) {
        for (int r = 0; r < batch; r++) f();
        cudaDeviceSynchronize();
        calls += batch;
        el = std::chrono::duration<double>(std::chrono::steady_clock::now() - ts).count();
        if (t_half < 0 && el >= seconds / 2) t_half = el, calls_half = calls;
    }
    return t_half >= 0 && el > t_half ? (double)(calls - calls_half) / (el - t_half) : 0;
}

extern "C" int bench_gemm_ceiling(double *tflops, double *sustained, int n, int reps, double seconds, llava_err *err) {
    *tflops = *sustained = 0;
    cuda_ctx *c = NULL;
    if (cuda_ctx_new(&c, 0, err)) return -1;
    size_t nn = (size_t)n * n;
    bf16 *a = (bf16 *)cuda_malloc(nn * sizeof(bf16), "GEMM ceiling A", err);
    bf16 *w = a ? (bf16 *)cuda_malloc(nn * sizeof(bf16), "GEMM ceiling B", err) : NULL;
    bf16 *o = w ? (bf16 *)cuda_malloc(nn * sizeof(bf16), "GEMM ceiling C", err) : NULL;
    int rc = -1;
    if (o) {
        fill_bf16<<<(unsigned)((nn + 255) / 256), 256>>>(a, nn, 1u);
        fill_bf16<<<(unsigned)((nn + 255) / 256), 256>>>(w, nn, 2u);
        cudaError_t e = cudaDeviceSynchronize();
        if (e != cudaSuccess) {
            llava_errf(err, "GEMM ceiling: %s", cudaGetErrorString(e));
        } else {
            cuda_linear(c, o, a, w, NULL, n, n, n); // warm-up (plan cache, clocks)
            cuda_sync(c);
            // wall time around synchronized calls (the context's stream is private to the backend)
            auto t0 = std::chrono::steady_clock::now();
            for (int r = 0; r < reps; r++) cuda_linear(c, o, a, w, NULL, n, n, n);
            cuda_sync(c);
            double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            *tflops = 2.0 * (double)n * n * n * reps / dt / 1e12;
            if (seconds > 0)
                *sustained = 2.0 * (double)n * n * n *
                             sustained_rate([&] { cuda_linear(c, o, a, w, NULL, n, n, n); }, seconds, 10) / 1e12;
            rc = 0;
        }
    }
    cuda_free(a), cuda_free(w), cuda_free(o);
    cuda_ctx_free(c);
    return rc;
}

// fills x (n bytes) with hash_unit values as e4m3
__global__ static void fill_e4m3(uint8_t *x, size_t n, uint32_t seed) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    __nv_fp8_e4m3 v(hash_unit(i, seed));
    x[i] = v.__x;
}

__global__ static void fill_ones(float *x, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = 1.0f;
}

extern "C" int bench_gemm_fp8(double *tf_bf16, double *tf_fp8, int m, int k, int n, double seconds, llava_err *err) {
    *tf_bf16 = *tf_fp8 = 0;
    cuda_ctx *c = NULL;
    if (cuda_ctx_new(&c, 0, err)) return -1;
    const size_t mk = (size_t)m * k, nk = (size_t)n * k, mn = (size_t)m * n;
    bf16 *xa = (bf16 *)cuda_malloc(mk * 2, "probe x", err);
    bf16 *wa = xa ? (bf16 *)cuda_malloc(nk * 2, "probe w", err) : NULL;
    bf16 *out = wa ? (bf16 *)cuda_malloc(mn * 2, "probe out", err) : NULL;
    uint8_t *x8 = out ? (uint8_t *)cuda_malloc(mk, "probe x fp8", err) : NULL;
    uint8_t *w8 = x8 ? (uint8_t *)cuda_malloc(nk, "probe w fp8", err) : NULL;
    float *sx = w8 ? (float *)cuda_malloc(sizeof(float) * m, "probe scales", err) : NULL;
    float *sw = sx ? (float *)cuda_malloc(sizeof(float) * n, "probe scales", err) : NULL;
    void *ws = sw ? cuda_malloc(32u << 20, "probe workspace", err) : NULL;
    int rc = -1;
    cublasLtHandle_t lt = NULL;
    cublasLtMatmulDesc_t op = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, ld = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    if (!ws) goto done;
    fill_bf16<<<(unsigned)((mk + 255) / 256), 256>>>(xa, mk, 1u);
    fill_bf16<<<(unsigned)((nk + 255) / 256), 256>>>(wa, nk, 2u);
    fill_e4m3<<<(unsigned)((mk + 255) / 256), 256>>>(x8, mk, 1u);
    fill_e4m3<<<(unsigned)((nk + 255) / 256), 256>>>(w8, nk, 2u);
    fill_ones<<<(unsigned)((m + 255) / 256), 256>>>(sx, (size_t)m);
    fill_ones<<<(unsigned)((n + 255) / 256), 256>>>(sw, (size_t)n);
    cudaDeviceSynchronize();
    {
        // bf16 through the model's path, then e4m3 x e4m3 -> bf16 with a scale per weight row and per token
        cuda_linear(c, out, xa, wa, NULL, m, k, n);
        cuda_sync(c);
        const double fl = 2.0 * m * k * n;
        *tf_bf16 = fl * sustained_rate([&] { cuda_linear(c, out, xa, wa, NULL, m, k, n); }, seconds, 4) / 1e12;
        if (cublasLtCreate(&lt) != CUBLAS_STATUS_SUCCESS) {
            llava_errf(err, "cublasLtCreate failed");
            goto done;
        }
        cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
        cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
        int32_t mode = CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &mode, sizeof mode);
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &mode, sizeof mode);
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &sw, sizeof sw);
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &sx, sizeof sx);
        cublasLtMatrixLayoutCreate(&la, CUDA_R_8F_E4M3, (uint64_t)k, (uint64_t)n, (int64_t)k);
        cublasLtMatrixLayoutCreate(&lb, CUDA_R_8F_E4M3, (uint64_t)k, (uint64_t)m, (int64_t)k);
        cublasLtMatrixLayoutCreate(&ld, CUDA_R_16BF, (uint64_t)n, (uint64_t)m, (int64_t)n);
        cublasLtMatmulPreferenceCreate(&pref);
        uint64_t wsb = 32u << 20;
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof wsb);
        cublasLtMatmulHeuristicResult_t res;
        int cnt = 0;
        if (cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, ld, ld, pref, 1, &res, &cnt) != CUBLAS_STATUS_SUCCESS ||
            cnt < 1) {
            llava_errf(err, "cuBLASLt offers no e4m3 GEMM with per-row / per-column (outer vector) scales here");
            goto done;
        }
        const float alpha = 1.f, beta = 0.f;
        auto call = [&] {
            cublasLtMatmul(lt, op, &alpha, w8, la, x8, lb, &beta, out, ld, out, ld, &res.algo, ws, wsb, 0);
        };
        call();
        if (cudaDeviceSynchronize() != cudaSuccess) {
            llava_errf(err, "the e4m3 GEMM failed");
            goto done;
        }
        *tf_fp8 = fl * sustained_rate(call, seconds, 4) / 1e12;
        rc = 0;
    }
done:
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (ld) cublasLtMatrixLayoutDestroy(ld);
    if (op) cublasLtMatmulDescDestroy(op);
    if (lt) cublasLtDestroy(lt);
    cuda_free(xa), cuda_free(wa), cuda_free(out), cuda_free(x8), cuda_free(w8), cuda_free(sx), cuda_free(sw), cuda_free(ws);
    cuda_ctx_free(c);
    return rc;
}
