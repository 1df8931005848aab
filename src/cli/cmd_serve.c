/* cmd_serve.c — `llava serve`: the OpenAI-compatible (and SageMaker) HTTP endpoint.
 *
 * Loads the model (and the GPU when asked/available), starts the engine worker (server/queue.h)
 * and the HTTP server (server/http.h), then waits for SIGINT/SIGTERM: stop accepting, let in-flight
 * requests finish (up to --shutdown-timeout seconds), close, exit 0.
 */
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend/cpu/ops.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/device.h"
#include "model/gpu.h"
#include "model/llava.h"
#include "server/fetch.h"
#include "server/http.h"
#include "server/queue.h"
#include "util/mem.h"

static void serve_usage(FILE *f) {
    fprintf(f,
            "usage: llava serve -m MODEL_DIR [options]\n"
            "OpenAI-compatible server: POST /v1/chat/completions, POST /v1/classify, GET /v1/models, GET /health,\n"
            "GET /metrics, and the SageMaker contract GET /ping + POST /invocations. See docs/serve.md.\n"
            "  -m, --model DIR              Hugging Face LLaVA-NeXT directory\n"
            "      --host H                 address to bind (default 127.0.0.1)\n"
            "      --port P                 TCP port (default 8000, or 8080 when SM_* variables say SageMaker; 0 = any)\n"
            "      --device D               cpu | cuda | auto (default auto)\n"
            "      --gpu-mem-limit GIB      use at most this much GPU memory (default: what is free)\n"
            "      --step-tokens N          tokens per batched GPU step (default: what fits, at most 65536)\n"
            "      --quantization fp8       the decoder's linear layers in FP8 (e4m3; compute capability 8.9+)\n"
            "      --api-key K              require Authorization: Bearer K (default: $LLAVA_API_KEY, else none)\n"
            "      --served-model-name NAME the model id clients send and /v1/models lists (default: the folder name)\n"
            "      --max-body-bytes N       larger request bodies get 413 (default 33554432)\n"
            "      --max-images N           images per request (default 8)\n"
            "      --max-pixels N           pixels per image, larger get 413 (default 89478485, as Pillow)\n"
            "      --max-queue N            requests waiting for the engine; more get 429 (default 256)\n"
            "      --max-tokens-default N   max_tokens when a request gives none (default 256)\n"
            "      --max-model-len N        prompt + generated tokens (default: the model's, at most the GPU's KV cache)\n"
            "      --max-num-seqs N         chats generating at once (default 64 on a GPU, 4 on the CPU)\n"
            "      --max-num-batched-tokens N  new tokens per generation step: prompt chunks + one per running\n"
            "                               chat (default 8192; bounds the running chats' time per token)\n"
            "      --allowed-local-media DIR  accept file:// image URLs that resolve inside DIR\n"
            "      --allow-remote-images    fetch http(s):// image URLs (at most 3 redirects, http/https only) from\n"
            "                               public addresses only (not loopback, private, link-local, metadata, ...)\n"
            "      --allow-private-remote-images  also from non-public addresses (implies --allow-remote-images)\n"
            "      --remote-image-max-bytes N  larger remote images get 413 (default 20971520)\n"
            "      --remote-image-timeout S    whole fetch, else 400 remote_image_timeout (default 5)\n"
            "      --threads N              CPU threads (default: all cores)\n"
            "      --shutdown-timeout S     on SIGTERM wait this long for in-flight requests (default 25)\n");
}

int cmd_serve(int argc, char **argv) {
    const char *model_dir = NULL, *host = "127.0.0.1", *device = "auto", *api_key = getenv("LLAVA_API_KEY");
    const char *served = NULL, *media = NULL;
    int allow_remote = 0, allow_private = 0;
    long remote_max_bytes = 20L << 20, remote_timeout = 5;
    long port = -1, max_body = 32L << 20, max_images = 8, max_pixels = 89478485, max_queue = 256,
         max_tokens_default = 256, max_model_len = 0, threads = 0, shutdown_timeout = 25, max_seqs = 0,
         max_rows = 8192;
    llava_gpu_params gpu_params = llava_gpu_params_default();
    llava_err aerr = {{0}};
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int r;
#define OPT(names, want) ((r = arg_match(argc, argv, &i, names, want, &v)) != 0)
#define INTOPT(names, lo, hi, dst)                             \
    else if (OPT(names, 1)) {                                  \
        if (r > 0 && arg_int(v, lo, hi, &dst)) goto bad;       \
    }
        if (OPT("-h|--help", 0)) {
            serve_usage(stdout);
            return 0;
        } else if (OPT("-m|--model", 1)) model_dir = v;
        else if (OPT("--host", 1)) host = v;
        else if (OPT("--device", 1)) device = v;
        else if (OPT("--api-key", 1)) api_key = v;
        else if (OPT("--served-model-name", 1)) served = v;
        else if (OPT("--allowed-local-media", 1)) media = v;
        else if (OPT("--allow-remote-images", 0)) allow_remote = 1;
        else if (OPT("--allow-private-remote-images", 0)) allow_remote = allow_private = 1;
        else if ((r = cli_gpu_flag(argc, argv, &i, &gpu_params, &aerr)) != 0) {
            if (r < 0) {
                fprintf(stderr, "llava serve: %s\n", aerr.msg);
                return 2;
            }
            continue;
        }
        INTOPT("--port", 0, 65535, port)
        INTOPT("--max-body-bytes", 1024, 1L << 40, max_body)
        INTOPT("--max-images", 0, 1024, max_images)
        INTOPT("--max-pixels", 1, 0x7fffffffffffffffL, max_pixels)
        INTOPT("--max-queue", 1, 1 << 20, max_queue)
        INTOPT("--max-tokens-default", 1, 1 << 24, max_tokens_default)
        INTOPT("--max-model-len", 16, 1 << 24, max_model_len)
        INTOPT("--max-num-seqs", 1, LLAVA_GPU_MAX_SEQS, max_seqs)
        INTOPT("--max-num-batched-tokens", 256, 1 << 24, max_rows)
        INTOPT("--threads", 1, 1024, threads)
        INTOPT("--shutdown-timeout", 0, 3600, shutdown_timeout)
        INTOPT("--remote-image-max-bytes", 1, 1L << 40, remote_max_bytes)
        INTOPT("--remote-image-timeout", 1, 3600, remote_timeout)
        else {
            fprintf(stderr, "llava serve: unknown option %s (see llava serve --help)\n", argv[i]);
            return 2;
        }
        if (r < 0) {
            fprintf(stderr, "llava serve: %s needs a value\n", argv[i]);
            return 2;
        }
        continue;
    bad:
        fprintf(stderr, "llava serve: invalid value \"%s\" for %s\n", v, argv[i - 1]);
        return 2;
#undef INTOPT
#undef OPT
    }
    if (!model_dir) {
        fprintf(stderr, "llava serve: -m MODEL_DIR is required (see llava serve --help)\n");
        return 2;
    }
    if (strcmp(device, "cpu") && strcmp(device, "auto") && strcmp(device, "cuda")) {
        fprintf(stderr, "llava serve: --device must be cpu, cuda or auto\n");
        return 2;
    }
    if (port < 0) port = getenv("SM_MODEL_DIR") || getenv("SAGEMAKER_BIND_TO_PORT") ? 8080 : 8000;
    if (getenv("SAGEMAKER_BIND_TO_PORT") && port == 8080) port = atol(getenv("SAGEMAKER_BIND_TO_PORT"));
    char *media_real = NULL;
    if (media && !(media_real = realpath(media, NULL))) {
        fprintf(stderr, "llava serve: --allowed-local-media %s: no such directory\n", media);
        return 2;
    }
    /* libcurl's global init is not thread-safe: once, here, before any thread of ours starts */
    llava_fetch_cfg remote = {.max_bytes = (size_t)remote_max_bytes, .timeout_s = remote_timeout, .max_redirs = 3,
                              .allow_private = allow_private};
    if (allow_remote && llava_fetch_global_init()) {
        fprintf(stderr, "llava serve: --allow-remote-images: libcurl failed to initialise\n");
        free(media_real);
        return 1;
    }
    /* the name clients send: the folder's last component unless given */
    char name_buf[256];
    if (!served) {
        size_t l = strlen(model_dir);
        while (l > 1 && model_dir[l - 1] == '/') l--;
        size_t b = l;
        while (b > 0 && model_dir[b - 1] != '/') b--;
        snprintf(name_buf, sizeof name_buf, "%.*s", (int)(l - b), model_dir + b);
        served = name_buf;
    }
    char gpu_name[256] = "";
    int use_gpu = cli_want_gpu(device, &gpu_params, gpu_name, sizeof gpu_name, &aerr);
    if (use_gpu < 0) {
        fprintf(stderr, "llava serve: %s\n", aerr.msg);
        if (allow_remote) llava_fetch_global_cleanup();
        free(media_real);
        return 1;
    }
    cpu_set_threads((int)threads);

    /* SIGINT/SIGTERM are taken by sigwait below: block them in every thread started from here on */
    sigset_t sigs, old_mask;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, &old_mask);
    struct sigaction ign, old_pipe;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ign, &old_pipe);

    int rc = 1;
    llava_err err = {{0}};
    llava_model *m = NULL;
    llava_gpu *gpu = NULL;
    llava_engine *eng = NULL;
    llava_server *srv = NULL;
    double t0 = llava_now();
    /* on the GPU the weights go straight from the checkpoint to the device (no fp32 host copies) */
    if (llava_model_load_ex(&m, model_dir, !use_gpu, &err)) goto done;
    if (!m->tmpl) {
        llava_errf(&err, "%s: serving needs the model's chat template", m->tmpl_error[0] ? m->tmpl_error : "no chat template");
        goto done;
    }
    int ctx = m->cfg.text.max_pos > 0 ? m->cfg.text.max_pos : 4096;
    if (max_model_len) ctx = (int)max_model_len;
    if (use_gpu) {
        /* the KV cache takes what the step leaves; running chats share it (each holds prompt + max_tokens) */
        gpu_params.kv_tokens = -1;
        if (cli_device_open(&m, &gpu, device, &gpu_params, "llava serve", &err)) goto done;
        use_gpu = gpu != NULL;
        if (gpu && ctx > llava_gpu_get_info(gpu)->kv_tokens) ctx = llava_gpu_get_info(gpu)->kv_tokens;
    }
    if (llava_engine_start(&eng, m, gpu, (int)max_queue, (int)max_seqs, (int)max_rows, &err)) goto done;
    llava_server_params sp = {
        .host = host,
        .port = (int)port,
        .api_key = api_key,
        .max_body = (size_t)max_body,
        .device = use_gpu ? gpu_name : "cpu",
        .cfg = {.model_name = served,
                .max_images = (int)max_images,
                .max_pixels = max_pixels,
                .max_tokens_default = (int)max_tokens_default,
                .max_model_len = ctx,
                .media_dir = media_real,
                .remote = allow_remote ? &remote : NULL},
    };
    if (llava_server_start(&srv, &sp, m, eng, &err)) goto done;
    fprintf(stderr, "llava serve: model %s (%s) on %s, loaded in %.2fs; listening on http://%s:%d\n", served, model_dir,
            use_gpu ? gpu_name : "the CPU", llava_now() - t0, host, llava_server_port(srv));

    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "llava serve: %s: no new requests; finishing %d in flight\n", sig == SIGINT ? "SIGINT" : "SIGTERM",
            llava_server_inflight(srv));
    llava_server_quiesce(srv);
    double deadline = llava_now() + (double)shutdown_timeout;
    while (llava_server_inflight(srv) > 0 && llava_now() < deadline) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (llava_server_inflight(srv) > 0)
        fprintf(stderr, "llava serve: %d requests still in flight after %lds; closing them\n", llava_server_inflight(srv),
                shutdown_timeout);
    rc = 0;
done:
    if (rc) fprintf(stderr, "llava serve: %s\n", err.msg);
    llava_server_stop(srv);  /* joins the connection threads (they wait for their jobs) */
    llava_engine_stop(eng);  /* runs what is left, joins the worker */
    llava_gpu_free(gpu);
    llava_model_free(m);
    if (allow_remote) llava_fetch_global_cleanup();
    free(media_real);
    sigaction(SIGPIPE, &old_pipe, NULL);
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    if (!rc) fprintf(stderr, "llava serve: stopped\n");
    return rc;
}
