/* cuda_util.h — the device helpers the benchmarks (`llava bench`, test_ops --bench-only) need beyond
 * backend/cuda/cuda_ops.h.
 *
 * Declared only in CUDA builds (LLAVA_CUDA); callers guard with #ifdef LLAVA_CUDA.
 * bench_cuda_device_sync: cudaDeviceSynchronize (every stream), used only by --profile, since the
 * model's own context/stream is private to llava_gpu.
 * bench_gemm_ceiling: the card's bf16 GEMM rate through the same cuBLASLt path as the model
 * (cuda_linear, n x n x n, random values in [-1, 1]); one warm-up, then reps timed calls (tflops),
 * then calls back to back for `seconds` (0: none), timed over the second half (sustained: the rate
 * the card's power limit holds, which a long run like W1 sees; below the short burst's).
 * Allocates 3 n^2 bf16 buffers on the device for the call and frees them.
 */
#ifndef LLAVA_BENCH_CUDA_UTIL_H
#define LLAVA_BENCH_CUDA_UTIL_H

#include "util/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifdef LLAVA_CUDA
void bench_cuda_device_sync(void);
int bench_gemm_ceiling(double *tflops, double *sustained, int n, int reps, double seconds, llava_err *err);
/* The FP8 question for the decoder's GEMMs: sustained TFLOP/s (calls back to back for `seconds`,
 * rate over the second half, varied data) of out (m, n) = x (m, k) · wᵀ in bf16 through cuda_linear,
 * and in e4m3 × e4m3 → bf16 with a scale per weight row and per token (cuBLASLt outer-vector
 * scales), on the same card. -1 with a message when cuBLASLt offers no such FP8 GEMM. */
int bench_gemm_fp8(double *tf_bf16, double *tf_fp8, int m, int k, int n, double seconds, llava_err *err);
#endif

#ifdef __cplusplus
}
#endif

#endif
