// cuda_util.cu — device sync and the bf16 GEMM ceiling for `llava bench` (see cuda_util.h).
#include "bench/cuda_util.h"

#include <chrono>

#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "backend/cuda/cuda_ops.h"

extern "C" void bench_cuda_device_sync(void) { cudaDeviceSynchronize(); }

// fills x (n values) with a cheap hash of the index mapped to [-1, 1] as bf16
__global__ static void fill_bf16(uint16_t *x, size_t n, uint32_t seed) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    uint32_t h = (uint32_t)i * 2654435761u ^ seed;
    h ^= h >> 16;
    h *= 0x7feb352du;
    h ^= h >> 15;
    float f = (float)(h & 0xFFFFFF) / 8388608.0f - 1.0f;
    uint32_t b;
    memcpy(&b, &f, 4);
    x[i] = (uint16_t)((b + 0x7FFF + ((b >> 16) & 1)) >> 16);
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
            // sustained: calls back to back for `seconds`, the rate over the second half (the card
            // at the clocks its power limit holds under a long GEMM load, as in a long job)
            auto ts = std::chrono::steady_clock::now();
            double el = 0, t_half = -1;
            long calls = 0, calls_half = 0;
            while (seconds > 0 && el < seconds) {
                for (int r = 0; r < 10; r++) cuda_linear(c, o, a, w, NULL, n, n, n);
                cuda_sync(c);
                calls += 10;
                el = std::chrono::duration<double>(std::chrono::steady_clock::now() - ts).count();
                if (t_half < 0 && el >= seconds / 2) t_half = el, calls_half = calls;
            }
            if (t_half >= 0 && el > t_half)
                *sustained = 2.0 * (double)n * n * n * (double)(calls - calls_half) / (el - t_half) / 1e12;
            rc = 0;
        }
    }
    cuda_free(a), cuda_free(w), cuda_free(o);
    cuda_ctx_free(c);
    return rc;
}
