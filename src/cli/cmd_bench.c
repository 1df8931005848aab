/* cmd_bench.c — `llava bench`: end-to-end classification throughput on synthetic JPEGs.
 *
 * Writes N synthetic photos (src/bench/synth) to a temp dir, then reads them back through the real
 * pipeline: decode + preprocess threads (batch/prefetch) feeding the scheduler (engine/scheduler:
 * batched GPU steps, the same path as classify and serve; per-step device time split into vision,
 * decoder and LM head by timed events). Then images one at a time for the idle latency. Prints
 * images/s, prompt tokens/s, achieved TFLOP/s (src/bench/flops), the bf16 GEMM ceiling measured in
 * the same run on CUDA, p50/p99 latency, peak memory and $/1000 images. With --random-weights the
 * model is a random BF16 checkpoint written for the config (src/bench/randckpt), so the 7B shapes
 * run without a download. Every temp file is removed at the end (unless kept on request).
 * Exit status: 0 measured, 1 could not run (model, device, I/O, an image failed), 2 usage error.
 * See docs/bench.md.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench/cuda_util.h"
#include "bench/flops.h"
#include "batch/prefetch.h"
#include "bench/randckpt.h"
#include "bench/synth.h"
#include "cli/device.h"
#include "engine/classify.h"
#include "engine/scheduler.h"
#include "formats/tokenizer.h"
#include "model/gpu.h"
#include "model/llava.h"
#include "util/mem.h"
#ifdef LLAVA_CUDA
#include "backend/cuda/cuda_ops.h"
#endif

int cmd_bench(int argc, char **argv);

/* The W1 label set (issue 5), in order. */
static const char *const W1_LABELS[] = {
    "Pool", "Exterior", "Bar", "Lobby", "Room", "Suite", "Bathroom", "Restaurant", "Breakfast Area", "Gym",
    "Spa", "Sauna", "Meeting Room", "Ballroom", "Terrace/Patio", "Balcony", "View", "Garden", "Beach", "Parking",
    "Reception", "Kitchen", "Living Room", "Kids Club", "Business Center", "Elevator", "Hallway",
    "Facade at Night", "Aerial View", "Other"};
#define N_W1_LABELS ((int)(sizeof W1_LABELS / sizeof W1_LABELS[0]))

static void bench_usage(FILE *f) {
    fputs("usage: llava bench (-m MODEL_DIR | --config CONFIG_DIR|config.json --random-weights) [options]\n"
          "\n"
          "Classifies N synthetic JPEG photos end to end (files on disk -> decode/preprocess threads ->\n"
          "model -> label probabilities) and reports throughput, FLOP rate, latency, memory and cost.\n"
          "\n"
          "  -m, --model DIR         Hugging Face LLaVA-NeXT checkpoint folder\n"
          "  --config PATH           a config folder (or config.json) for --random-weights\n"
          "  --random-weights        write a random BF16 checkpoint of that config to a temp dir first\n"
          "  --images N              timed images (default 32)\n"
          "  --image-size WxH        synthetic photo size (default 550x412: 2340 image tokens on LLaVA-NeXT)\n"
          "  --labels FILE|a,b,c     labels (default: the 30 hotel labels of workload W1)\n"
          "  --question Q, --answer A  prompt templates as in llava classify\n"
          "  --device cpu|cuda|auto  where the model runs (default auto: CUDA if present)\n"
          "  --threads N             decode/preprocess threads (default: half the CPUs, 1..8)\n"
          "  --warmup K              untimed runs on the first image before timing (default 1)\n"
          "  --batch B               at most B images per GPU step (default 0: as many as fit the step)\n"
          "  --gpu-mem-limit GIB     use at most this much GPU memory in all (e.g. 22 for an A10G-class card)\n"
          "  --step-tokens N         tokens per batched GPU step (default: what fits, at most 65536)\n"
          "  --quantization fp8      the decoder's linear layers in FP8 (e4m3, per-row/per-token scales; 8.9+)\n"
          "  --price-per-hour P      report $ per 1000 images at P per hour of wall time\n"
          "  --json                  print one JSON object instead of the text report\n"
          "  --gemm-size N           edge of the bf16 GEMM ceiling measurement on CUDA (default 8192; 0 skips)\n"
          "  --gemm-seconds S        then that GEMM back to back for S seconds: the sustained ceiling (default 3)\n"
          "  --tmp-dir DIR           where the temp images/checkpoint go (default $TMPDIR or /tmp)\n"
          "  --images-dir DIR        write the JPEGs to DIR and keep them (e.g. for tools/bench_hf.py)\n"
          "  --checkpoint-dir DIR    write the random checkpoint to DIR and keep it\n"
          "  --tokenizer-dir DIR     tokenizer/template donor for --random-weights (default tests/fixtures/tiny-a)\n"
          "  --seed S                image and weight seed (default 1)\n"
          "See docs/bench.md for the FLOP formula and what each number means.\n",
          f);
}

typedef struct bench_opts {
    const char *model, *config, *labels, *question, *answer, *device, *tmp_dir, *images_dir, *ckpt_dir, *tok_dir;
    int random_weights, images, w, h, threads, warmup, json, gemm, gemm_seconds, batch;
    llava_gpu_params gp;
    double price;
    long seed;
} bench_opts;

static int usage_err(const char *fmt, const char *a, const char *b) {
    fprintf(stderr, "llava bench: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, " (see llava bench --help)\n");
    return -1;
}

static int parse_size(const char *s, int *w, int *h) {
    char *end;
    errno = 0;
    long a = strtol(s, &end, 10);
    if (errno || end == s || (*end != 'x' && *end != 'X')) return -1;
    const char *p = end + 1;
    long b = strtol(p, &end, 10);
    if (errno || end == p || *end || a < 1 || b < 1 || a > 20000 || b > 20000) return -1;
    *w = (int)a, *h = (int)b;
    return 0;
}

static int parse_long(const char *opt, const char *v, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "llava bench: invalid value for %s: \"%s\" (an integer from %ld to %ld)\n", opt, v, lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

/* 0 ok, 1 help printed, -1 usage error */
static int parse_args(bench_opts *o, int argc, char **argv) {
    memset(o, 0, sizeof *o);
    o->images = 32, o->w = 550, o->h = 412, o->warmup = 1, o->device = "auto", o->gemm = 8192, o->seed = 1;
    o->gemm_seconds = 3;
    o->price = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            bench_usage(stdout);
            return 1;
        }
        if (!strcmp(a, "--random-weights")) { o->random_weights = 1; continue; }
        if (!strcmp(a, "--json")) { o->json = 1; continue; }
        static const char *const takes[] = {"-m", "--model", "--config", "--images", "--image-size", "--labels",
                                            "--question", "--answer", "--device", "--threads", "--warmup", "--batch",
                                            "--price-per-hour", "--gemm-size", "--gemm-seconds", "--tmp-dir", "--images-dir",
                                            "--checkpoint-dir", "--tokenizer-dir", "--seed", "--gpu-mem-limit",
                                            "--step-tokens", "--quantization", NULL};
        int known = 0;
        for (int k = 0; takes[k]; k++) known |= !strcmp(a, takes[k]);
        if (!known) return usage_err("unknown option %s%s", a, "");
        if (i + 1 >= argc) return usage_err("%s needs a value%s", a, "");
        const char *v = argv[++i];
        long x;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "--config")) o->config = v;
        else if (!strcmp(a, "--labels")) o->labels = v;
        else if (!strcmp(a, "--question")) o->question = v;
        else if (!strcmp(a, "--answer")) o->answer = v;
        else if (!strcmp(a, "--tmp-dir")) o->tmp_dir = v;
        else if (!strcmp(a, "--images-dir")) o->images_dir = v;
        else if (!strcmp(a, "--checkpoint-dir")) o->ckpt_dir = v;
        else if (!strcmp(a, "--tokenizer-dir")) o->tok_dir = v;
        else if (!strcmp(a, "--device")) {
            if (strcmp(v, "cpu") && strcmp(v, "cuda") && strcmp(v, "auto"))
                return usage_err("invalid value for --device: \"%s\"%s (cpu, cuda or auto)", v, "");
            o->device = v;
        } else if (!strcmp(a, "--image-size")) {
            if (parse_size(v, &o->w, &o->h))
                return usage_err("invalid value for --image-size: \"%s\"%s (WxH, e.g. 550x412, each 1..20000)", v, "");
        } else if (!strcmp(a, "--images")) {
            if (parse_long(a, v, 1, 10000000, &x)) return -1;
            o->images = (int)x;
        } else if (!strcmp(a, "--threads")) {
            if (parse_long(a, v, 1, 256, &x)) return -1;
            o->threads = (int)x;
        } else if (!strcmp(a, "--warmup")) {
            if (parse_long(a, v, 0, 1000, &x)) return -1;
            o->warmup = (int)x;
        } else if (!strcmp(a, "--batch")) {
            if (parse_long(a, v, 0, 4096, &x)) return -1;
            o->batch = (int)x;
        } else if (!strcmp(a, "--gpu-mem-limit")) {
            char *end;
            errno = 0;
            o->gp.mem_limit_gib = strtod(v, &end);
            if (errno || end == v || *end || !(o->gp.mem_limit_gib >= 1))
                return usage_err("invalid value for --gpu-mem-limit: \"%s\"%s (GiB, >= 1)", v, "");
        } else if (!strcmp(a, "--step-tokens")) {
            if (parse_long(a, v, 2048, 1 << 20, &x)) return -1;
            o->gp.step_tokens = (int)x;
        } else if (!strcmp(a, "--quantization")) {
            if (cli_quantization(v, &o->gp)) return usage_err("--quantization takes fp8 or none, not \"%s\"%s", v, "");
        } else if (!strcmp(a, "--gemm-size")) {
            if (parse_long(a, v, 0, 65536, &x)) return -1;
            o->gemm = (int)x;
        } else if (!strcmp(a, "--gemm-seconds")) {
            if (parse_long(a, v, 0, 600, &x)) return -1;
            o->gemm_seconds = (int)x;
        } else if (!strcmp(a, "--seed")) {
            if (parse_long(a, v, 0, LONG_MAX, &x)) return -1;
            o->seed = x;
        } else if (!strcmp(a, "--price-per-hour")) {
            char *end;
            errno = 0;
            o->price = strtod(v, &end);
            if (errno || end == v || *end || !(o->price >= 0 && o->price <= 1e9))
                return usage_err("invalid value for --price-per-hour: \"%s\"%s (a number >= 0)", v, "");
        }
    }
    if (!o->model == !o->config)
        return usage_err("give either -m MODEL_DIR or --config CONFIG --random-weights%s%s", "", "");
    if (o->config && !o->random_weights)
        return usage_err("--config needs --random-weights (or use -m MODEL_DIR for real weights)%s%s", "", "");
    if (o->model && o->random_weights)
        return usage_err("--random-weights goes with --config CONFIG, not -m%s%s", "", "");
    return 0;
}

/* ---- small helpers ---------------------------------------------------------------------------- */

typedef struct strs {
    char **v;
    int n;
} strs;

static void strs_push(strs *l, const char *s, size_t n) {
    while (n && (*s == ' ' || *s == '\t' || *s == '\r')) s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r')) n--;
    l->v = xrealloc(l->v, sizeof(char *) * (size_t)(l->n + 1));
    l->v[l->n] = xmalloc(n + 1);
    memcpy(l->v[l->n], s, n);
    l->v[l->n++][n] = 0;
}

static void strs_free(strs *l) {
    for (int i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* --labels: a file (one label a line, blank lines skipped) when it exists, else a comma list.
 * Empty and duplicate labels are refused by llava_classifier_new. */
static int load_labels(strs *l, const char *arg, llava_err *err) {
    if (!arg) {
        for (int i = 0; i < N_W1_LABELS; i++) strs_push(l, W1_LABELS[i], strlen(W1_LABELS[i]));
        return 0;
    }
    struct stat st;
    if (stat(arg, &st) == 0 && S_ISREG(st.st_mode)) {
        size_t len;
        char *buf = llava_read_file(arg, &len, (size_t)16 << 20, err);
        if (!buf) return -1;
        for (char *s = buf; s < buf + len;) {
            char *nl = memchr(s, '\n', (size_t)(buf + len - s));
            size_t n = nl ? (size_t)(nl - s) : (size_t)(buf + len - s);
            int blank = 1;
            for (size_t k = 0; k < n; k++) blank &= s[k] == ' ' || s[k] == '\t' || s[k] == '\r';
            if (!blank) strs_push(l, s, n);
            s += n + 1;
        }
        free(buf);
    } else {
        if (strchr(arg, '/')) return llava_errf(err, "--labels %s: no such file", arg);
        for (const char *s = arg;;) {
            const char *c = strchr(s, ',');
            strs_push(l, s, c ? (size_t)(c - s) : strlen(s));
            if (!c) break;
            s = c + 1;
        }
    }
    if (l->n == 0) return llava_errf(err, "--labels %s: no labels", arg);
    return 0;
}

static int default_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    int t = n > 1 ? (int)(n / 2) : 1;
    return t < 1 ? 1 : t > 8 ? 8 : t;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* nearest-rank percentile of sorted v[n] */
static double pct(const double *v, int n, double p) {
    if (n <= 0) return 0;
    int k = (int)ceil(p / 100.0 * n) - 1;
    return v[k < 0 ? 0 : k >= n ? n - 1 : k];
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

static char *make_temp_dir(const char *base, const char *stem, llava_err *err) {
    if (!base) base = getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    size_t n = strlen(base) + strlen(stem) + 16;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s.XXXXXX", base, stem);
    if (!mkdtemp(p)) {
        llava_errf(err, "cannot create a temp dir in %s: %s (use --tmp-dir)", base, strerror(errno));
        free(p);
        return NULL;
    }
    return p;
}

static int ensure_dir(const char *d, llava_err *err) {
    if (mkdir(d, 0755) == 0 || errno == EEXIST) return 0;
    return llava_errf(err, "cannot create %s: %s", d, strerror(errno));
}

/* the tokenizer donor of --random-weights: --tokenizer-dir, else tests/fixtures/tiny-a from the
 * current directory, else from the repository the binary was built in (BUILD/llava). */
static char *find_donor(const char *given) {
    if (given) return xstrdup(given);
    if (llava_file_exists("tests/fixtures/tiny-a/tokenizer.json")) return xstrdup("tests/fixtures/tiny-a");
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            char *p = llava_path_join(exe, "../tests/fixtures/tiny-a");
            char *t = llava_path_join(p, "tokenizer.json");
            int ok = llava_file_exists(t);
            free(t);
            if (ok) return p;
            free(p);
        }
    }
    return xstrdup("tests/fixtures/tiny-a");
}

static long long peak_rss_bytes(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru)) return 0;
    return (long long)ru.ru_maxrss * 1024;
}


/* ---- the run ------------------------------------------------------------------------------------ */

typedef struct img_stat {
    double decode, preprocess;       /* seconds, on a decode thread */
    double vision, prefill, scoring; /* seconds: the image's share of its step's device time (GPU) */
    double model;                    /* seconds: its share of the step's model time (device or CPU) */
    double t_ready, t_done;          /* preprocessed / scored (llava_now) */
    int label, prompt_tokens, tiles, batch;
} img_stat;

/* what the scheduler's callback fills in */
typedef struct bench_sink {
    img_stat *st;   /* NULL during warm-up and the latency runs */
    int n_labels, got;
    double t0;
    double *probs0; /* (n_labels) image 0's probabilities (the check) */
    char error[1024];
} bench_sink;

static void bench_on_result(void *user, const llava_sched_result *r) {
    bench_sink *k = user;
    if (r->error) {
        snprintf(k->error, sizeof k->error, "%s", r->error);
        return;
    }
    intptr_t i = (intptr_t)r->tag;
    if (!k->st || i < 0) return;
    img_stat *s = &k->st[i];
    s->t_done = llava_now();
    s->prompt_tokens = r->prompt_tokens;
    s->batch = r->batch;
    s->vision = r->step_ms[0] / 1e3 / r->batch;
    s->prefill = r->step_ms[1] / 1e3 / r->batch;
    s->scoring = r->step_ms[2] / 1e3 / r->batch;
    s->model = r->model_ms / 1e3 / r->batch;
    int best = 0;
    for (int j = 1; j < k->n_labels; j++)
        if (r->probs[j] > r->probs[best]) best = j;
    s->label = best;
    if (i == 0) memcpy(k->probs0, r->probs, sizeof(double) * (size_t)k->n_labels);
    k->got++;
}

int cmd_bench(int argc, char **argv) {
    bench_opts o;
    int pr = parse_args(&o, argc, argv);
    if (pr) return pr > 0 ? 0 : 2;

    int rc = 1;
    llava_err err = {{0}};
    strs labels = {0};
    char *img_dir = NULL, *ckpt_dir = NULL, *donor = NULL;
    int img_dir_temp = 0, ckpt_dir_temp = 0;
    char **paths = NULL;
    llava_model *m = NULL;
    llava_classifier *clf = NULL;
    llava_gpu *gpu = NULL;
    llava_prefetch *pool = NULL;
    llava_inputs bench_in = {0};
    int *bench_todo = NULL;
    img_stat *st = NULL;
    llava_sched *sched = NULL;
    bench_sink sink = {0};
    double *lat = NULL;
    float *wpix = NULL;
    char dev_name[256] = "";
    double ceiling = 0, sustained = 0, check_diff = -1, t_write_ckpt = 0, t_write_img = 0, t_load = 0;
    int64_t ckpt_params = 0;
    size_t gpu_total = 0, gpu_min_free = (size_t)-1;

    if (load_labels(&labels, o.labels, &err)) {
        fprintf(stderr, "llava bench: %s\n", err.msg);
        rc = 2;
        goto done;
    }
    struct stat mst;
    if (o.model && (stat(o.model, &mst) != 0 || !S_ISDIR(mst.st_mode))) {
        fprintf(stderr, "llava bench: model folder %s does not exist\n", o.model);
        rc = 2;
        goto done;
    }

    /* 1. the images */
    double t0 = llava_now();
    if (o.images_dir) {
        if (ensure_dir(o.images_dir, &err)) goto fail;
        img_dir = xstrdup(o.images_dir);
    } else {
        if (!(img_dir = make_temp_dir(o.tmp_dir, "llava-bench-img", &err))) goto fail;
        img_dir_temp = 1;
    }
    paths = xcalloc((size_t)o.images, sizeof(char *));
    for (int i = 0; i < o.images; i++) {
        char name[64];
        snprintf(name, sizeof name, "bench-%05d.jpg", i);
        paths[i] = llava_path_join(img_dir, name);
        if (bench_synth_write_jpeg(paths[i], o.w, o.h, (uint64_t)o.seed * 1000003u + (uint64_t)i, 90, &err))
            goto fail;
    }
    t_write_img = llava_now() - t0;

    /* 2. the model */
    const char *model_dir = o.model;
    if (o.random_weights) {
        if (o.ckpt_dir) {
            if (ensure_dir(o.ckpt_dir, &err)) goto fail;
            ckpt_dir = xstrdup(o.ckpt_dir);
        } else {
            if (!(ckpt_dir = make_temp_dir(o.tmp_dir, "llava-bench-ckpt", &err))) goto fail;
            ckpt_dir_temp = 1;
        }
        donor = find_donor(o.tok_dir);
        if (!o.json) fprintf(stderr, "llava bench: writing a random BF16 checkpoint for %s to %s\n", o.config, ckpt_dir);
        t0 = llava_now();
        if (bench_random_checkpoint(o.config, donor, ckpt_dir, (uint64_t)o.seed, &ckpt_params, &err)) {
            rc = llava_file_exists(o.config) ? 1 : 2;
            goto fail;
        }
        t_write_ckpt = llava_now() - t0;
        model_dir = ckpt_dir;
    }
    int use_gpu = cli_want_gpu(o.device, &o.gp, dev_name, sizeof dev_name, &err);
    if (use_gpu < 0) goto fail;
    t0 = llava_now();
    if (llava_model_load_ex(&m, model_dir, !use_gpu, &err)) {
        llava_err_prefix(&err, "cannot load the model %s", o.model ? o.model : o.config);
        goto fail;
    }
#ifdef LLAVA_CUDA
    if (use_gpu && o.gemm > 0) {
        if (bench_gemm_ceiling(&ceiling, &sustained, o.gemm, 5, o.gemm_seconds, &err)) {
            fprintf(stderr, "llava bench: warning: GEMM ceiling not measured: %s\n", err.msg);
            ceiling = 0;
        }
    }
#endif
    if (use_gpu && cli_device_open(&m, &gpu, o.device, &o.gp, "llava bench", &err)) goto fail;
    t_load = llava_now() - t0;
    if (llava_classifier_new(&clf, m, (const char *const *)labels.v, labels.n, o.question, o.answer, &err)) {
        rc = 2;
        goto fail;
    }
    if (!gpu) snprintf(dev_name, sizeof dev_name, "CPU (%ld threads)", sysconf(_SC_NPROCESSORS_ONLN));
    const int n_labels = labels.n;
    sink.n_labels = n_labels;
    sink.probs0 = xcalloc((size_t)n_labels, sizeof(double));
    if (llava_sched_new(&sched, m, gpu, bench_on_result, &sink, &err)) goto fail;
    llava_sched_set_max_batch(sched, o.batch);
#ifdef LLAVA_CUDA
    if (gpu) {
        size_t fr, tot;
        cuda_mem_info(&fr, &tot);
        gpu_total = tot, gpu_min_free = fr;
    }
#endif

    /* 3. warm-up on the first image, untimed; its probabilities are checked against the library call */
    llava_image wimg = {0};
    int wnt = 0, wH = 0, wW = 0;
    if (llava_image_load(&wimg, paths[0], LLAVA_DEFAULT_MAX_PIXELS, &err)) goto fail;
    int bad = llava_preprocess(&wpix, &wnt, &wimg, &m->pp, &err);
    wH = wimg.h, wW = wimg.w;
    llava_image_free(&wimg);
    if (bad) goto fail;
    for (int k = 0; k < o.warmup; k++) {
        if (llava_sched_add(sched, clf, wpix, wnt, wH, wW, (void *)(intptr_t)-1, &err) ||
            llava_sched_flush(sched, &err))
            goto fail;
        if (sink.error[0]) {
            llava_errf(&err, "%s", sink.error);
            goto fail;
        }
    }

    /* 4. the timed run: decode threads feed the scheduler, which batches images into steps */
    const int threads = o.threads ? o.threads : default_threads();
    st = xcalloc((size_t)o.images, sizeof *st);
    sink.st = st;
    sink.t0 = llava_now();
    const double t_run0 = sink.t0;
    bench_todo = xmalloc(sizeof(int) * (size_t)o.images);
    for (int i = 0; i < o.images; i++) {
        if (llava_inputs_add(&bench_in, paths[i], &err)) goto fail;
        bench_todo[i] = i;
    }
    llava_prefetch_params pfp = {.inputs = &bench_in, .todo = bench_todo, .n_todo = o.images, .pp = &m->pp,
                                 .max_pixels = 0, .threads = threads, .depth = 4 * threads + 8};
    if (llava_prefetch_start(&pool, &pfp, &err)) goto fail;
    for (;;) {
        llava_prefetch_item it;
        int r = llava_prefetch_next(pool, &it, llava_sched_pending(sched) ? 0.002 : 1.0);
        if (r < 0) break;
        if (r == 0) {
            if (llava_sched_poll(sched, 0, &err) < 0) goto fail;
            continue;
        }
        if (it.error[0]) {
            llava_errf(&err, "%s", it.error);
            llava_prefetch_item_free(&it);
            goto fail;
        }
        img_stat *s = &st[it.input];
        s->decode = it.t_decode, s->preprocess = it.t_preprocess, s->tiles = it.n_tiles;
        s->t_ready = llava_now();
        int bad_add = llava_sched_add(sched, clf, it.pixels, it.n_tiles, it.H, it.W, (void *)(intptr_t)it.input, &err);
        llava_prefetch_item_free(&it);
        if (bad_add) goto fail;
#ifdef LLAVA_CUDA
        if (gpu) {
            size_t fr, tot;
            cuda_mem_info(&fr, &tot);
            if (fr < gpu_min_free) gpu_min_free = fr;
        }
#endif
    }
    if (llava_sched_flush(sched, &err)) goto fail;
    const double wall = llava_now() - t_run0;
    if (gpu) llava_gpu_profile_report(gpu, "timed run"); /* LLAVA_PROFILE=1 only */
    llava_prefetch_stop(pool);
    pool = NULL;
    if (sink.error[0]) {
        llava_errf(&err, "%s", sink.error);
        goto fail;
    }
    CHECK(sink.got == o.images);
    {
        /* the first image through the library call on its own: the batched step must agree */
        llava_err ce = {{0}};
        double *ref = xmalloc(sizeof(double) * (size_t)n_labels);
        llava_image img0 = {0};
        float *px0 = NULL;
        int nt0 = 0;
        if (llava_image_load(&img0, paths[0], LLAVA_DEFAULT_MAX_PIXELS, &ce) ||
            llava_preprocess(&px0, &nt0, &img0, &m->pp, &ce) ||
            (gpu ? llava_classify_pixels_gpu(ref, NULL, clf, gpu, px0, nt0, img0.h, img0.w, &ce)
                 : llava_classify_pixels(ref, NULL, clf, px0, nt0, img0.h, img0.w, &ce))) {
            free(ref), free(px0);
            llava_image_free(&img0);
            llava_errf(&err, "%s", ce.msg);
            goto fail;
        }
        check_diff = 0;
        for (int i = 0; i < n_labels; i++) {
            double dd = fabs(ref[i] - sink.probs0[i]);
            if (dd > check_diff) check_diff = dd;
        }
        free(ref), free(px0);
        llava_image_free(&img0);
    }

    /* 4b. latency: images one at a time on an idle device (decode + preprocess + model) */
    const int n_lat = o.images < 16 ? o.images : 16;
    lat = xmalloc(sizeof(double) * (size_t)(n_lat > 0 ? n_lat : 1));
    for (int i = 0; i < n_lat; i++) {
        double tl = llava_now();
        llava_image img = {0};
        float *px = NULL;
        int nt = 0;
        if (llava_image_load(&img, paths[i], LLAVA_DEFAULT_MAX_PIXELS, &err) ||
            llava_preprocess(&px, &nt, &img, &m->pp, &err)) {
            llava_image_free(&img);
            free(px);
            goto fail;
        }
        int H = img.h, W = img.w;
        llava_image_free(&img);
        int bad_lat = llava_sched_add(sched, clf, px, nt, H, W, (void *)(intptr_t)-1, &err) ||
                      llava_sched_flush(sched, &err);
        free(px);
        if (bad_lat) goto fail;
        lat[i] = llava_now() - tl;
    }

    /* 5. the figures */
    double sum[6] = {0}, batch_sum = 0;
    long long tokens = 0;
    for (int i = 0; i < o.images; i++) {
        sum[0] += st[i].decode, sum[1] += st[i].preprocess, sum[2] += st[i].vision;
        sum[3] += st[i].prefill, sum[4] += st[i].scoring, sum[5] += st[i].model;
        tokens += st[i].prompt_tokens;
        batch_sum += st[i].batch;
    }
    qsort(lat, (size_t)n_lat, sizeof(double), cmp_double);
    const int N = o.images;
    const int T = st[0].prompt_tokens, tiles = st[0].tiles;
    /* the trie tokens a forward needs: its leaves' own outputs score nothing */
    const int trie = llava_classifier_trie_inner(clf), trie_nodes = llava_classifier_trie_size(clf);
    const int img_tokens = llava_model_image_tokens(m, o.h, o.w);
    bench_flops fl;
    double flops_all = 0;
    for (int i = 0; i < N; i++) {
        bench_flops fi;
        bench_flops_image(&fi, &m->cfg, m->clip.n_run, st[i].tiles, st[i].prompt_tokens, trie);
        flops_all += fi.total;
    }
    bench_flops_image(&fl, &m->cfg, m->clip.n_run, tiles, T, trie);
    const double ips = N / wall, tps = (double)tokens / wall, tflops = flops_all / wall / 1e12;
    const double usd = o.price >= 0 ? o.price / 3600.0 * wall / N * 1000.0 : -1;
    const long long rss = peak_rss_bytes();
    const double p50 = pct(lat, n_lat, 50) * 1e3, p99 = pct(lat, n_lat, 99) * 1e3;
    const double ms = 1e3 / N, idle = wall - sum[5] > 0 ? wall - sum[5] : 0, mean_batch = batch_sum / N;

    if (o.json) {
        FILE *f = stdout;
        fprintf(f, "{\"model\":");
        json_str(f, o.model ? o.model : o.config);
        fprintf(f, ",\"random_weights\":%s", o.random_weights ? "true" : "false");
        if (o.random_weights) fprintf(f, ",\"random_params\":%lld", (long long)ckpt_params);
        fprintf(f, ",\"device\":\"%s\",\"device_name\":", gpu ? "cuda" : "cpu");
        json_str(f, dev_name);
        fprintf(f, ",\"images\":%d,\"warmup\":%d,\"max_batch\":%d,\"mean_batch\":%.4g,\"image_size\":[%d,%d]", N,
                o.warmup, o.batch, mean_batch, o.w, o.h);
        fprintf(f, ",\"jpeg_quality\":90");
        if (gpu) {
            const llava_gpu_info *gi = llava_gpu_get_info(gpu);
            fprintf(f, ",\"step_tokens\":%d,\"gpu_weights_gib\":%.4g,\"gpu_buffers_gib\":%.4g", gi->step_tokens,
                    gi->weights_gib, gi->buffers_gib);
            fprintf(f, ",\"quantization\":\"%s\"", gi->fp8 ? "fp8" : "none");
        }
        fprintf(f, ",\"labels\":%d,\"threads\":%d", n_labels, threads);
        fprintf(f, ",\"prompt_tokens_per_image\":%d,\"image_tokens_per_image\":%d,\"tiles_per_image\":%d", T,
                img_tokens, tiles);
        fprintf(f, ",\"trie_tokens\":%d,\"trie_nodes\":%d", trie, trie_nodes);
        fprintf(f,
                ",\"flops_per_image\":{\"total\":%.6e,\"vision\":%.6e,\"projector\":%.6e,\"lm_prefill\":%.6e,"
                "\"lm_head\":%.6e,\"label_scoring\":%.6e,\"params_lm\":%.0f,\"params_vision_used\":%.0f}",
                fl.total, fl.vision, fl.projector, fl.lm, fl.head, fl.scoring, fl.params_lm, fl.params_vision_used);
        fprintf(f, ",\"wall_s\":%.6f,\"images_per_s\":%.6g,\"prompt_tokens_per_s\":%.6g,\"achieved_tflops\":%.6g", wall,
                ips, tps, tflops);
        if (ceiling > 0)
            fprintf(f, ",\"gemm_ceiling_tflops\":%.6g,\"gemm_size\":%d,\"pct_of_ceiling\":%.4g", ceiling, o.gemm,
                    100.0 * tflops / ceiling);
        else
            fprintf(f, ",\"gemm_ceiling_tflops\":null,\"pct_of_ceiling\":null");
        if (sustained > 0)
            fprintf(f, ",\"gemm_sustained_tflops\":%.6g,\"gemm_seconds\":%d,\"pct_of_sustained\":%.4g", sustained,
                    o.gemm_seconds, 100.0 * tflops / sustained);
        fprintf(f, ",\"latency_ms\":{\"p50\":%.4f,\"p99\":%.4f,\"images\":%d}", p50, p99, n_lat);
        fprintf(f, ",\"stages_ms_per_image\":{\"decode\":%.4f,\"preprocess\":%.4f,\"model\":%.4f", sum[0] * ms,
                sum[1] * ms, sum[5] * ms);
        if (gpu)
            fprintf(f, ",\"vision\":%.4f,\"lm_prefill_and_trie\":%.4f,\"lm_head_and_scoring\":%.4f", sum[2] * ms,
                    sum[3] * ms, sum[4] * ms);
        fprintf(f, ",\"model_idle\":%.4f}", idle * ms);
        fprintf(f, ",\"peak_rss_bytes\":%lld", rss);
        if (gpu)
            fprintf(f, ",\"gpu_memory\":{\"total_bytes\":%zu,\"peak_used_bytes\":%zu}", gpu_total,
                    gpu_total - gpu_min_free);
        else
            fprintf(f, ",\"gpu_memory\":null");
        if (usd >= 0) fprintf(f, ",\"price_per_hour\":%.6g,\"usd_per_1000_images\":%.6g", o.price, usd);
        else fprintf(f, ",\"price_per_hour\":null,\"usd_per_1000_images\":null");
        if (check_diff >= 0) fprintf(f, ",\"check_max_prob_diff\":%.3g", check_diff);
        else fprintf(f, ",\"check_max_prob_diff\":null");
        fprintf(f, ",\"setup_s\":{\"write_images\":%.3f,\"write_checkpoint\":%.3f,\"load\":%.3f}", t_write_img,
                t_write_ckpt, t_load);
        fprintf(f, ",\"predictions\":[");
        for (int i = 0; i < N; i++) {
            if (i) fputc(',', f);
            json_str(f, labels.v[st[i].label]);
        }
        fprintf(f, "]}\n");
    } else {
        printf("llava bench: %d images %dx%d (JPEG q90), %d labels, %s%s on %s\n", N, o.w, o.h, n_labels,
               o.model ? o.model : o.config, o.random_weights ? " (random weights)" : "", dev_name);
        printf("  per image   %d prompt tokens (%d image), %d tiles, %d label-trie tokens run (of %d nodes)\n", T,
               img_tokens, tiles, trie, trie_nodes);
        printf("  FLOPs/image %.4g TFLOP (vision %.3g, projector %.3g, LM prefill %.4g, LM head %.3g, label scoring "
               "%.3g)\n",
               fl.total / 1e12, fl.vision / 1e12, fl.projector / 1e12, fl.lm / 1e12, fl.head / 1e12,
               fl.scoring / 1e12);
        printf("  throughput  %.4g images/s, %.4g prompt tokens/s, %.4g TFLOP/s achieved", ips, tps, tflops);
        if (ceiling > 0)
            printf(" = %.1f%% of the bf16 GEMM ceiling (%.4g TFLOP/s, %d^3, measured now)", 100.0 * tflops / ceiling,
                   ceiling, o.gemm);
        if (sustained > 0)
            printf(", %.1f%% of its sustained rate (%.4g TFLOP/s after %d s of it)", 100.0 * tflops / sustained,
                   sustained, o.gemm_seconds);
        printf("\n  batching    %.3g images per step on average", mean_batch);
        if (gpu)
            printf(" (steps of up to %d tokens)%s", llava_gpu_get_info(gpu)->step_tokens,
                   llava_gpu_get_info(gpu)->fp8 ? "; decoder linear layers in FP8 (e4m3)" : "");
        printf("\n  latency     p50 %.2f ms, p99 %.2f ms (one image alone on an idle device: decode + preprocess + "
               "model, %d runs)\n",
               p50, p99, n_lat);
        printf("  stages      per image: decode %.2f ms, preprocess %.2f ms (%d threads, overlapped); model %.2f ms",
               sum[0] * ms, sum[1] * ms, threads, sum[5] * ms);
        if (gpu)
            printf(" = vision %.2f + LM prefill and label trie %.2f + LM head and scoring %.2f (device time)", sum[2] * ms,
                   sum[3] * ms, sum[4] * ms);
        printf("; model idle %.2f ms\n", idle * ms);
        printf("  memory      peak RSS %.3g GiB", rss / 1073741824.0);
        if (gpu)
            printf("; GPU %.3g GiB used at peak of %.3g GiB (all processes)", (gpu_total - gpu_min_free) / 1073741824.0,
                   gpu_total / 1073741824.0);
        printf("\n");
        if (usd >= 0) printf("  cost        $%.4g per 1000 images at $%.4g/h\n", usd, o.price);
        if (check_diff >= 0)
            printf("  check       first image, batched run vs the one-image library call: max |dp| %.3g\n", check_diff);
        printf("  setup       images written in %.2f s", t_write_img);
        if (o.random_weights) printf(", random checkpoint (%lld params) written in %.2f s", (long long)ckpt_params, t_write_ckpt);
        printf(", model loaded in %.2f s; timed run %.3f s\n", t_load, wall);
    }
    rc = 0;
    goto done;

fail:
    fprintf(stderr, "llava bench: %s\n", err.msg);
    if (!rc) rc = 1;
done:
    if (pool) llava_prefetch_stop(pool);
    llava_inputs_free(&bench_in);
    free(bench_todo);
    llava_sched_free(sched);
    free(sink.probs0);
    llava_gpu_free(gpu);
    llava_classifier_free(clf);
    llava_model_free(m);
    if (paths) {
        for (int i = 0; i < o.images; i++) {
            if (img_dir_temp && paths[i]) unlink(paths[i]);
            free(paths[i]);
        }
        free(paths);
    }
    if (img_dir_temp && img_dir) rmdir(img_dir);
    if (ckpt_dir_temp && ckpt_dir) bench_remove_flat_dir(ckpt_dir);
    free(img_dir), free(ckpt_dir), free(donor);
    free(st), free(lat), free(wpix);
    strs_free(&labels);
    return rc;
}
