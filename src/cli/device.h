/* device.h — `--device cpu|cuda|auto` for the subcommands: which device, the device model, and the
 * device flags they share. */
#ifndef LLAVA_CLI_DEVICE_H
#define LLAVA_CLI_DEVICE_H

#include <stdio.h>

#include "model/gpu.h"
#include "model/llava.h"

/* 1: use the GPU (name filled), 0: the CPU ("cpu", or "auto" without a device), -1: "cuda" asked
 * for and no device, or gp asks for FP8 and the run would be on the CPU (message in err). */
int cli_want_gpu(const char *device, const llava_gpu_params *gp, char *name, size_t name_len, llava_err *err);

/* After llava_model_load_ex(m, dir, !want_gpu): uploads the model to the device. If that fails, so
 * does this, whatever the device flag (with "auto" the message suggests --device cpu: a quiet
 * fallback would run a 7B on the CPU for hours). On success prints what was reserved (who: the
 * prefix of the messages). */
int cli_device_open(llava_model **m, llava_gpu **gpu, const char *device, const llava_gpu_params *gp, const char *who,
                    llava_err *err);

/* The shared flags --gpu-mem-limit GIB, --step-tokens N and --quantization fp8|none; 1 matched (and
 * *i advanced), 0 not this flag, -1 bad value (message in err). */
int cli_gpu_flag(int argc, char **argv, int *i, llava_gpu_params *gp, llava_err *err);
/* --quantization's value into gp: "fp8" or "none"; -1 for anything else */
int cli_quantization(const char *v, llava_gpu_params *gp);
#define CLI_GPU_FLAGS_HELP                                                                               \
    "  --gpu-mem-limit GIB    use at most this much GPU memory in all (default: what is free)\n"        \
    "  --step-tokens N        tokens per batched GPU step (default: what fits, at most 65536)\n"        \
    "  --quantization fp8     the decoder's linear layers in FP8 (e4m3; compute capability 8.9+)\n"

#endif
