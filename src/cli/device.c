/* device.c — see device.h. */
#include "cli/device.h"

#include <string.h>

#include "cli/args.h"

int cli_want_gpu(const char *device, const llava_gpu_params *gp, char *name, size_t name_len, llava_err *err) {
    int gpu = strcmp(device, "cpu") && llava_gpu_available(name, name_len) > 0;
    if (!gpu && gp->fp8)
        return llava_errf(err, "--quantization fp8 runs on a CUDA device (compute capability 8.9+); %s",
                          strcmp(device, "cpu") ? "none is available here" : "leave it out with --device cpu");
    if (gpu) return 1;
    if (!strcmp(device, "cuda"))
        return llava_errf(err, "--device cuda: no CUDA device is available%s; use --device cpu",
#ifdef LLAVA_CUDA
                          ""
#else
                          " (this build has no CUDA backend)"
#endif
        );
    return 0;
}

int cli_device_open(llava_model **m, llava_gpu **gpu, const char *device, const llava_gpu_params *gp,
                    const char *who, llava_err *err) {
    *gpu = NULL;
    if (llava_gpu_load(gpu, *m, gp, err)) {
        /* a CUDA device is there but the model does not load on it: an error, not a quiet run on the
         * CPU (hours for a 7B) */
        if (strcmp(device, "cuda")) {
            char msg[sizeof err->msg];
            memcpy(msg, err->msg, sizeof msg);
            llava_errf(err, "%s (--device cpu runs it on the CPU)", msg);
        }
        return -1;
    }
    const llava_gpu_info *in = llava_gpu_get_info(*gpu);
    fprintf(stderr, "%s: %s: weights %.1f GiB%s, buffers %.1f GiB (steps of %d tokens, %d vision tiles a pass%s", who,
            in->device, in->weights_gib, in->fp8 ? " (decoder in FP8)" : "", in->buffers_gib, in->step_tokens,
            in->vision_tiles, in->kv_tokens ? ", KV cache " : ")\n");
    if (in->kv_tokens) fprintf(stderr, "%d positions)\n", in->kv_tokens);
    return 0;
}

int cli_quantization(const char *v, llava_gpu_params *gp) {
    if (!strcmp(v, "fp8")) gp->fp8 = 1;
    else if (!strcmp(v, "none")) gp->fp8 = 0;
    else return -1;
    return 0;
}

int cli_gpu_flag(int argc, char **argv, int *i, llava_gpu_params *gp, llava_err *err) {
    const char *v = NULL;
    int r;
    if ((r = arg_match(argc, argv, i, "--gpu-mem-limit", 1, &v)) != 0) {
        double d;
        if (r < 0 || arg_float(v, 1, 1e6, &d)) return llava_errf(err, "--gpu-mem-limit needs a size in GiB (>= 1)");
        gp->mem_limit_gib = d;
        return 1;
    }
    if ((r = arg_match(argc, argv, i, "--quantization", 1, &v)) != 0) {
        if (r < 0 || cli_quantization(v, gp)) return llava_errf(err, "--quantization takes fp8 or none");
        return 1;
    }
    if ((r = arg_match(argc, argv, i, "--step-tokens", 1, &v)) != 0) {
        long n;
        if (r < 0 || arg_int(v, 2048, 1 << 20, &n)) return llava_errf(err, "--step-tokens needs a number in 2048..1048576");
        gp->step_tokens = (int)n;
        return 1;
    }
    return 0;
}
