/* cmd_run.c — `llava run`: answer a prompt about images, printing text or one JSON object. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "backend/cpu/ops.h"
#include "cli/args.h"
#include "cli/device.h"
#include "cli/commands.h"
#include "engine/generate.h"
#include "engine/prompt.h"
#include "image/image.h"
#include "model/gpu.h"
#include "util/mem.h"

#define MAX_IMAGES 16

static void run_usage(FILE *f) {
    fprintf(f,
            "usage: llava run -m MODEL_DIR [-i IMAGE]... (-p TEXT | --raw PROMPT) [options]\n"
            "  -m, --model DIR        Hugging Face LLaVA-NeXT directory (config.json, *.safetensors, tokenizer.json, ...)\n"
            "  -i, --image FILE       JPEG, PNG or WebP; repeat for several images\n"
            "  -p, --prompt TEXT      user message, rendered with the model's chat template (images first)\n"
            "      --raw PROMPT       pre-formatted prompt instead (BOS added, each <image> expanded)\n"
            "  -n, --max-tokens N     new tokens at most (default 256)\n"
            "      --temp T           sampling temperature (default 0 = greedy)\n"
            "      --top-p P          nucleus sampling (default 1)\n"
            "      --seed S           sampling seed (default 0)\n"
            "      --threads N        CPU threads (default: all cores)\n"
            "      --device D         cpu | cuda | auto (default auto)\n"
            "      --gpu-mem-limit GIB  use at most this much GPU memory (default: what is free)\n"
            "      --step-tokens N    tokens per batched GPU step (default: what fits, at most 65536)\n"
            "      --quantization fp8 the decoder's linear layers in FP8 (e4m3; compute capability 8.9+)\n"
            "      --top-logprobs K   report the K most likely tokens at each step (0..20)\n"
            "      --json             print one JSON object instead of the text\n"
            "      --dump-logits FILE write the last prompt position's logits (float32 LE, vocab_size values)\n"
            "      --max-pixels N     refuse larger images (default 89478485, as Pillow)\n");
}

typedef struct {
    const llava_model *m;
    size_t printed;
} stream_state;

static int on_token(void *ud, const llava_gen_result *r) {
    stream_state *s = ud;
    int *ids = xmalloc(sizeof(int) * (size_t)r->n_gen);
    for (int i = 0; i < r->n_gen; i++) ids[i] = r->tokens[i].id;
    char *text = llava_detokenize(s->m->tok, ids, r->n_gen, 1);
    free(ids);
    if (!text) return 0;
    size_t len = strlen(text);
    /* hold back an incomplete UTF-8 sequence (decoded as U+FFFD) until the next token completes it */
    size_t upto = len;
    if (len >= 3 && !memcmp(text + len - 3, "\xEF\xBF\xBD", 3)) upto = len - 3;
    if (upto > s->printed) {
        fwrite(text + s->printed, 1, upto - s->printed, stdout);
        fflush(stdout);
        s->printed = upto;
    }
    free(text);
    return 0;
}

static cJSON *token_json(const llava_model *m, int id, double lp) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "id", id);
    char *t = llava_detokenize(m->tok, &id, 1, 0);
    cJSON_AddStringToObject(o, "token", t ? t : "");
    free(t);
    cJSON_AddNumberToObject(o, "logprob", lp);
    return o;
}

int cmd_run(int argc, char **argv) {
    const char *model_dir = NULL, *prompt = NULL, *raw = NULL, *dump = NULL, *device = "auto";
    const char *images[MAX_IMAGES];
    int n_images = 0, json = 0;
    long threads = 0, max_pixels = 89478485;
    llava_gen_params gp;
    llava_gen_params_default(&gp);
    llava_gpu_params gpu_params = llava_gpu_params_default();
    llava_err aerr = {{0}};
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        long n;
        double d;
        int r;
#define OPT(names, want) ((r = arg_match(argc, argv, &i, names, want, &v)) != 0)
        if (OPT("-h|--help", 0)) {
            run_usage(stdout);
            return 0;
        } else if (OPT("-m|--model", 1)) model_dir = v;
        else if (OPT("-i|--image", 1)) {
            if (r > 0 && n_images == MAX_IMAGES) {
                fprintf(stderr, "llava run: at most %d images\n", MAX_IMAGES);
                return 2;
            }
            if (r > 0) images[n_images++] = v;
        } else if (OPT("-p|--prompt", 1)) prompt = v;
        else if (OPT("--raw", 1)) raw = v;
        else if (OPT("-n|--max-tokens", 1)) {
            if (r > 0 && arg_int(v, 0, 1 << 20, &n)) goto bad;
            gp.max_tokens = (int)n;
        } else if (OPT("--temp|--temperature", 1)) {
            if (r > 0 && arg_float(v, 0, 100, &d)) goto bad;
            gp.temperature = (float)d;
        } else if (OPT("--top-p", 1)) {
            if (r > 0 && (arg_float(v, 0, 1, &d) || d <= 0)) goto bad;
            gp.top_p = (float)d;
        } else if (OPT("--seed", 1)) {
            if (r > 0 && arg_int(v, 0, 0x7fffffffffffffffL, &n)) goto bad;
            gp.seed = (uint64_t)n;
        } else if (OPT("--threads", 1)) {
            if (r > 0 && arg_int(v, 1, 1024, &threads)) goto bad;
        } else if (OPT("--device", 1)) device = v;
        else if (OPT("--top-logprobs", 1)) {
            if (r > 0 && arg_int(v, 0, LLAVA_MAX_TOP_LOGPROBS, &n)) goto bad;
            gp.top_logprobs = (int)n;
        } else if (OPT("--json", 0)) json = 1;
        else if (OPT("--dump-logits", 1)) dump = v;
        else if (OPT("--max-pixels", 1)) {
            if (r > 0 && arg_int(v, 1, 0x7fffffffffffffffL, &max_pixels)) goto bad;
        } else if ((r = cli_gpu_flag(argc, argv, &i, &gpu_params, &aerr)) != 0) {
            if (r < 0) {
                fprintf(stderr, "llava run: %s\n", aerr.msg);
                return 2;
            }
            continue;
        } else {
            fprintf(stderr, "llava run: unknown option %s (see llava run --help)\n", argv[i]);
            return 2;
        }
        if (r < 0) {
            fprintf(stderr, "llava run: %s needs a value\n", argv[i]);
            return 2;
        }
        continue;
    bad:
        fprintf(stderr, "llava run: invalid value \"%s\" for %s\n", v, argv[i - 1]);
        return 2;
#undef OPT
    }
    if (!model_dir || (!prompt && !raw)) {
        fprintf(stderr, "llava run: -m MODEL_DIR and -p TEXT (or --raw PROMPT) are required (see llava run --help)\n");
        return 2;
    }
    if (prompt && raw) {
        fprintf(stderr, "llava run: give either -p or --raw, not both\n");
        return 2;
    }
    if (strcmp(device, "cpu") && strcmp(device, "auto") && strcmp(device, "cuda")) {
        fprintf(stderr, "llava run: --device must be cpu, cuda or auto\n");
        return 2;
    }
    char gpu_name[256] = "";
    int use_gpu = cli_want_gpu(device, &gpu_params, gpu_name, sizeof gpu_name, &aerr);
    if (use_gpu < 0) {
        fprintf(stderr, "llava run: %s\n", aerr.msg);
        return 1;
    }
    cpu_set_threads((int)threads);

    llava_err err = {{0}};
    int status = 1;
    llava_model *m = NULL;
    llava_image img[MAX_IMAGES];
    float *pixels[MAX_IMAGES] = {0};
    int n_tiles[MAX_IMAGES] = {0}, n_feats[MAX_IMAGES] = {0};
    int *ids = NULL, n_ids = 0;
    llava_gen_result res = {0};
    llava_gpu *gpu = NULL;
    memset(img, 0, sizeof img);
    double t0 = llava_now();
    /* on the GPU the weights go straight from the checkpoint to the device: no fp32 host copies */
    if (llava_model_load_ex(&m, model_dir, !use_gpu, &err)) goto fail;
    double t_load = llava_now() - t0;
    t0 = llava_now();
    for (int i = 0; i < n_images; i++) {
        if (llava_image_load(&img[i], images[i], max_pixels, &err)) goto fail;
        if (llava_preprocess(&pixels[i], &n_tiles[i], &img[i], &m->pp, &err)) {
            llava_err_prefix(&err, "%s", images[i]);
            goto fail;
        }
    }
    double t_pre = llava_now() - t0;
    double t_gpu_load = 0;
    if (use_gpu) {
        for (int i = 0; i < n_images; i++) n_feats[i] = llava_model_image_tokens(m, img[i].h, img[i].w);
        if (llava_build_prompt(&ids, &n_ids, NULL, m, raw ? raw : prompt, raw != NULL, n_images, n_feats, &err)) goto fail;
        t0 = llava_now();
        gpu_params.kv_tokens = n_ids + gp.max_tokens + 8;
        if (cli_device_open(&m, &gpu, device, &gpu_params, "llava run", &err)) goto fail;
        if (!gpu) {
            use_gpu = 0;
            free(ids);
            ids = NULL;
        }
        t_gpu_load = llava_now() - t0;
    }
    if (!ids) {
        for (int i = 0; i < n_images; i++) n_feats[i] = llava_model_image_tokens(m, img[i].h, img[i].w);
        if (llava_build_prompt(&ids, &n_ids, NULL, m, raw ? raw : prompt, raw != NULL, n_images, n_feats, &err))
            goto fail;
    }
    llava_gen_image gimg[MAX_IMAGES];
    for (int i = 0; i < n_images; i++) gimg[i] = (llava_gen_image){pixels[i], n_tiles[i], img[i].h, img[i].w};
    stream_state ss = {m, 0};
    llava_gen_request req = {ids, n_ids, gimg, n_images, gp, json ? NULL : on_token, &ss, NULL};
    if (llava_generate(&res, m, gpu, &req, &err)) goto fail;
    double t_vis = res.t_vision;
    if (dump) {
        FILE *f = fopen(dump, "wb");
        if (!f || fwrite(res.prompt_logits, sizeof(float), (size_t)res.vocab, f) != (size_t)res.vocab) {
            if (f) fclose(f);
            llava_errf(&err, "%s: cannot write the logits", dump);
            goto fail;
        }
        if (fclose(f)) {
            llava_errf(&err, "%s: cannot write the logits", dump);
            goto fail;
        }
    }
    int *gen = xmalloc(sizeof(int) * (size_t)(res.n_gen ? res.n_gen : 1));
    for (int i = 0; i < res.n_gen; i++) gen[i] = res.tokens[i].id;
    char *text = llava_detokenize(m->tok, gen, res.n_gen, 1);
    int image_tokens = 0;
    for (int i = 0; i < n_images; i++) image_tokens += n_feats[i];
    double tps = res.t_decode > 0 && res.n_gen > 1 ? (res.n_gen - 1) / res.t_decode : 0;
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "prompt_tokens", n_ids);
        cJSON_AddNumberToObject(o, "image_tokens", image_tokens);
        cJSON_AddNumberToObject(o, "completion_tokens", res.n_gen);
        cJSON *g = cJSON_AddArrayToObject(o, "generated_ids");
        for (int i = 0; i < res.n_gen; i++) cJSON_AddItemToArray(g, cJSON_CreateNumber(gen[i]));
        cJSON_AddStringToObject(o, "text", text ? text : "");
        cJSON_AddStringToObject(o, "finish_reason", res.finish_reason);
        cJSON *lp = cJSON_AddArrayToObject(o, "logprobs");
        for (int i = 0; i < res.n_gen; i++) {
            const llava_token_info *t = &res.tokens[i];
            cJSON *e = token_json(m, t->id, t->logprob);
            if (gp.top_logprobs > 0) {
                cJSON *tl = cJSON_AddArrayToObject(e, "top_logprobs");
                for (int k = 0; k < t->n_top; k++) cJSON_AddItemToArray(tl, token_json(m, t->top_ids[k], t->top_logprobs[k]));
            }
            cJSON_AddItemToArray(lp, e);
        }
        cJSON_AddStringToObject(o, "device", use_gpu ? gpu_name : "cpu");
        cJSON *tm = cJSON_AddObjectToObject(o, "timings");
        cJSON_AddNumberToObject(tm, "load_s", t_load + t_gpu_load);
        cJSON_AddNumberToObject(tm, "preprocess_s", t_pre);
        cJSON_AddNumberToObject(tm, "vision_s", t_vis);
        cJSON_AddNumberToObject(tm, "prefill_s", res.t_prefill - res.t_vision);
        cJSON_AddNumberToObject(tm, "decode_s", res.t_decode);
        cJSON_AddNumberToObject(tm, "decode_tokens_per_s", tps);
        char *s = cJSON_PrintUnformatted(o);
        puts(s);
        free(s);
        cJSON_Delete(o);
    } else {
        if (text && strlen(text) > ss.printed) fputs(text + ss.printed, stdout);
        putchar('\n');
        fflush(stdout);
        fprintf(stderr,
                "llava: %s: %d prompt tokens (%d image), %d generated (%s); load %.2fs, preprocess %.3fs, vision %.3fs, "
                "prefill %.3fs, decode %.3fs (%.1f tok/s)\n",
                use_gpu ? gpu_name : "cpu", n_ids, image_tokens, res.n_gen, res.finish_reason, t_load + t_gpu_load, t_pre,
                t_vis, res.t_prefill - res.t_vision, res.t_decode, tps);
    }
    free(text);
    free(gen);
    status = 0;
fail:
    if (status) fprintf(stderr, "llava run: %s\n", err.msg);
    llava_gen_result_free(&res);
    llava_gpu_free(gpu);
    free(ids);
    for (int i = 0; i < n_images; i++) {
        llava_image_free(&img[i]);
        free(pixels[i]);
    }
    llava_model_free(m);
    return status;
}
