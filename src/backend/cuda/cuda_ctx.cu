/* cuda_ctx.cu — device discovery, the context (stream + cuBLASLt handle + workspace), device memory
 * and host <-> device transfers, including the fp32 -> bf16 upload of checkpoints.
 *
 * Owns: cuda_ctx lifetime. Every buffer it allocates is freed by cuda_ctx_free.
 * Assumes: one context per (device, stream); ops on one context are issued from one thread at a time.
 * Never: abort on a missing device or out-of-memory — those return -1 with a message.
 */
#include <string.h>

#include "backend/cuda/common.cuh"

#define WORKSPACE_BYTES ((size_t)32 << 20) /* cuBLASLt: 32 MiB is what Hopper kernels want */
#define STAGE_DEV_FLOATS ((size_t)8 << 20) /* 32 MiB fp32 staging for uploads */
#define STAGE_HOST_VALUES ((size_t)2 << 20) /* 4 MiB pinned bf16 staging for downloads */

extern "C" int cuda_device_count(char *name, size_t name_len) {
    if (name && name_len) name[0] = 0;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        (void)cudaGetLastError(); /* no driver / no device: not an error for the caller */
        return 0;
    }
    if (n > 0 && name && name_len) {
        cudaDeviceProp p;
        if (cudaGetDeviceProperties(&p, 0) == cudaSuccess) {
            strncpy(name, p.name, name_len - 1);
            name[name_len - 1] = 0;
        } else {
            (void)cudaGetLastError();
        }
    }
    return n;
}

static int cuda_fail(llava_err *err, cudaError_t e, const char *what) {
    (void)cudaGetLastError();
    return llava_errf(err, "CUDA: %s failed: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

static const char *env_attn_names[] = {"auto", "generic", "mma-plain", "mma"};

extern "C" int cuda_ctx_new(cuda_ctx **out, int device, llava_err *err) {
    *out = NULL;
    int n = cuda_device_count(NULL, 0);
    if (n <= 0) return llava_errf(err, "CUDA: no usable device (no NVIDIA driver or GPU found); use --device cpu");
    if (device < 0 || device >= n)
        return llava_errf(err, "CUDA: device %d does not exist (%d device%s found)", device, n, n == 1 ? "" : "s");
    cudaError_t e = cudaSetDevice(device);
    if (e != cudaSuccess) return cuda_fail(err, e, "cudaSetDevice");
    cudaDeviceProp p;
    e = cudaGetDeviceProperties(&p, device);
    if (e != cudaSuccess) return cuda_fail(err, e, "cudaGetDeviceProperties");
    if (p.major < 8)
        return llava_errf(err, "CUDA: device %d (%s) has compute capability %d.%d; llava needs 8.0 or newer (bf16)",
                          device, p.name, p.major, p.minor);

    cuda_ctx *c = (cuda_ctx *)calloc(1, sizeof *c);
    if (!c) return llava_errf(err, "out of host memory creating the CUDA context");
    c->device = device;
    c->sm_count = p.multiProcessorCount;
    c->cc_major = p.major;
    c->cc_minor = p.minor;
    const char *impl = getenv("LLAVA_CUDA_ATTN");
    if (impl && *impl) {
        for (int i = 0; i < 4; i++)
            if (!strcmp(impl, env_attn_names[i])) c->attn_impl = i;
    }
    const char *cfg = getenv("LLAVA_CUDA_ATTN_CFG");
    if (cfg && *cfg) {
        static const char *const cfgs[] = {"8x1", "4x1", "4x2", "4x3"};
        for (int i = 0; i < 4; i++)
            if (!strcmp(cfg, cfgs[i])) c->attn_cfg = 1 + i;
    }

    e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking);
    if (e != cudaSuccess) {
        free(c);
        return cuda_fail(err, e, "cudaStreamCreate");
    }
    cublasStatus_t s = cublasLtCreate(&c->lt);
    if (s != CUBLAS_STATUS_SUCCESS) {
        cudaStreamDestroy(c->stream);
        free(c);
        return llava_errf(err, "CUDA: cublasLtCreate failed (status %d)", (int)s);
    }
    c->workspace_bytes = WORKSPACE_BYTES;
    e = cudaMalloc(&c->workspace, c->workspace_bytes);
    if (e == cudaSuccess) {
        e = cudaMallocHost((void **)&c->stage_host, STAGE_HOST_VALUES * sizeof(uint16_t));
        c->stage_host_n = STAGE_HOST_VALUES;
    }
    if (e != cudaSuccess) {
        int rc = cuda_fail(err, e, "allocating the CUDA context's buffers");
        cuda_ctx_free(c);
        return rc;
    }
    if (attention_ctx_init(c) != 0) {
        cuda_ctx_free(c);
        return llava_errf(err, "CUDA: device %d (%s) refused the attention kernels' shared-memory size", device, p.name);
    }
    *out = c;
    return 0;
}

extern "C" void cuda_ctx_free(cuda_ctx *c) {
    if (!c) return;
    ctx_use(c);
    if (c->stream) cudaStreamSynchronize(c->stream);
    gemm_cache_free(c);
    if (c->lt) cublasLtDestroy(c->lt);
    cudaFree(c->workspace);
    cudaFree(c->stage_dev);
    cudaFreeHost(c->stage_host);
    if (c->stream) cudaStreamDestroy(c->stream);
    free(c);
}

extern "C" void cuda_sync(cuda_ctx *c) {
    ctx_use(c);
    CUDA_CHECK(cudaStreamSynchronize(c->stream));
}

extern "C" void cuda_mem_info(size_t *free_b, size_t *total_b) {
    size_t f = 0, t = 0;
    if (cudaMemGetInfo(&f, &t) != cudaSuccess) {
        (void)cudaGetLastError();
        f = t = 0;
    }
    if (free_b) *free_b = f;
    if (total_b) *total_b = t;
}

extern "C" void *cuda_malloc(size_t bytes, const char *what, llava_err *err) {
    void *p = NULL;
    if (bytes == 0) bytes = 1;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        size_t f = 0, t = 0;
        cuda_mem_info(&f, &t);
        llava_errf(err, "CUDA out of memory allocating %s: %.1f MiB requested, %.1f MiB free of %.1f MiB (%s); "
                        "lower the batch size or context length",
                   what ? what : "a buffer", bytes / 1048576.0, f / 1048576.0, t / 1048576.0, cudaGetErrorString(e));
        return NULL;
    }
    return p;
}

extern "C" void cuda_free(void *p) {
    if (p) CUDA_CHECK(cudaFree(p));
}

/* Contract: host_src may be reused as soon as this returns. Pageable memory is staged by the driver
 * before cudaMemcpyAsync returns; page-locked memory is read asynchronously, so we wait for it. */
extern "C" void cuda_upload(cuda_ctx *c, void *dst, const void *host_src, size_t bytes) {
    if (!bytes) return;
    ctx_use(c);
    CUDA_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, c->stream));
    cudaPointerAttributes a;
    if (cudaPointerGetAttributes(&a, host_src) == cudaSuccess) {
        if (a.type == cudaMemoryTypeHost) CUDA_CHECK(cudaStreamSynchronize(c->stream));
    } else {
        (void)cudaGetLastError();
    }
}

extern "C" void cuda_download(cuda_ctx *c, void *host_dst, const void *src, size_t bytes) {
    if (!bytes) return;
    ctx_use(c);
    CUDA_CHECK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, c->stream));
    CUDA_CHECK(cudaStreamSynchronize(c->stream));
}

extern "C" void cuda_memset(cuda_ctx *c, void *dst, int byte, size_t bytes) {
    if (!bytes) return;
    ctx_use(c);
    CUDA_CHECK(cudaMemsetAsync(dst, byte, bytes, c->stream));
}

extern "C" void cuda_copy(cuda_ctx *c, void *dst, const void *src, size_t bytes) {
    if (!bytes) return;
    ctx_use(c);
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, c->stream));
}

__global__ void f32_to_bf16_kernel(uint16_t *dst, const float *src, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = f2bf(src[i]);
}

/* fp32 chunks go through a device staging buffer and are rounded on the GPU (round to nearest even,
 * as torch's .to(bfloat16)); stream order keeps the single staging buffer safe to reuse. */
extern "C" int cuda_upload_f32_as_bf16(cuda_ctx *c, bf16 *dst, const float *host_src, size_t n, llava_err *err) {
    if (!n) return 0;
    ctx_use(c);
    if (!c->stage_dev) {
        cudaError_t e = cudaMalloc((void **)&c->stage_dev, STAGE_DEV_FLOATS * sizeof(float));
        if (e != cudaSuccess) {
            c->stage_dev = NULL;
            return cuda_fail(err, e, "allocating the 32 MiB upload staging buffer");
        }
        c->stage_dev_n = STAGE_DEV_FLOATS;
    }
    for (size_t off = 0; off < n; off += c->stage_dev_n) {
        size_t m = n - off < c->stage_dev_n ? n - off : c->stage_dev_n;
        CUDA_CHECK(cudaMemcpyAsync(c->stage_dev, host_src + off, m * sizeof(float), cudaMemcpyHostToDevice, c->stream));
        f32_to_bf16_kernel<<<grid_for(m, 256, c), 256, 0, c->stream>>>(dst + off, c->stage_dev, m);
        LAUNCH_CHECK();
    }
    /* host_src may be page-locked (read asynchronously): make the contract "reusable on return" hold */
    CUDA_CHECK(cudaStreamSynchronize(c->stream));
    return 0;
}

extern "C" void cuda_download_bf16_as_f32(cuda_ctx *c, float *host_dst, const bf16 *src, size_t n) {
    ctx_use(c);
    for (size_t off = 0; off < n; off += c->stage_host_n) {
        size_t m = n - off < c->stage_host_n ? n - off : c->stage_host_n;
        CUDA_CHECK(cudaMemcpyAsync(c->stage_host, src + off, m * sizeof(uint16_t), cudaMemcpyDeviceToHost, c->stream));
        CUDA_CHECK(cudaStreamSynchronize(c->stream));
        for (size_t i = 0; i < m; i++) {
            uint32_t u = (uint32_t)c->stage_host[i] << 16;
            memcpy(&host_dst[off + i], &u, 4);
        }
    }
}

/* ---- asynchronous work: page-locked host buffers, async copies, events ------------------------ */

extern "C" void *cuda_host_alloc(size_t bytes, const char *what, llava_err *err) {
    void *p = NULL;
    cudaError_t e = cudaMallocHost(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        cuda_fail(err, e, what);
        return NULL;
    }
    return p;
}

extern "C" void cuda_host_free(void *p) {
    if (p) CUDA_CHECK(cudaFreeHost(p));
}

extern "C" void cuda_upload_async(cuda_ctx *c, void *dst, const void *pinned_src, size_t bytes) {
    if (!bytes) return;
    ctx_use(c);
    CUDA_CHECK(cudaMemcpyAsync(dst, pinned_src, bytes, cudaMemcpyHostToDevice, c->stream));
}

extern "C" void cuda_download_async(cuda_ctx *c, void *pinned_dst, const void *src, size_t bytes) {
    if (!bytes) return;
    ctx_use(c);
    CUDA_CHECK(cudaMemcpyAsync(pinned_dst, src, bytes, cudaMemcpyDeviceToHost, c->stream));
}

extern "C" cuda_event *cuda_event_new(void) {
    cudaEvent_t e;
    CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    return (cuda_event *)e;
}

extern "C" void cuda_event_free(cuda_event *ev) {
    if (ev) CUDA_CHECK(cudaEventDestroy((cudaEvent_t)ev));
}

extern "C" void cuda_event_record(cuda_ctx *c, cuda_event *ev) {
    ctx_use(c);
    CUDA_CHECK(cudaEventRecord((cudaEvent_t)ev, c->stream));
}

extern "C" void cuda_event_sync(cuda_event *ev) { CUDA_CHECK(cudaEventSynchronize((cudaEvent_t)ev)); }

extern "C" int cuda_event_done(cuda_event *ev) {
    cudaError_t e = cudaEventQuery((cudaEvent_t)ev);
    if (e == cudaErrorNotReady) {
        (void)cudaGetLastError();
        return 0;
    }
    CUDA_CHECK(e);
    return 1;
}

extern "C" cuda_event *cuda_event_new_timed(void) {
    cudaEvent_t e;
    CUDA_CHECK(cudaEventCreate(&e));
    return (cuda_event *)e;
}

extern "C" float cuda_event_ms(cuda_event *a, cuda_event *b) {
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, (cudaEvent_t)a, (cudaEvent_t)b));
    return ms;
}
