/* cmd_classify.c — `llava classify`: file every input image under one of the user's labels.
 *
 * Thin front end over src/batch (inputs, results file, shards, merge, decode pool, progress) and
 * src/engine/classify.h (label scoring). argv[0] is the subcommand name.
 * Pipeline: decode threads (llava_prefetch) load + preprocess images into a bounded queue while
 * this thread feeds them to the scheduler (engine/scheduler.h: batched steps on the GPU, one image
 * at a time on the CPU) and appends one record per image, in the order they finish.
 * SIGINT/SIGTERM set a flag: the images in the model are finished and recorded, the rest stays
 * for the next run (a second signal kills at once, which is safe too: every record is one
 * write(2)).
 * Exit status: 0 the run completed (per-image errors are records, not failures) or the merge was
 * complete; 1 it could not run (model, GPU, output, I/O) or the merge found missing/duplicate records;
 * 2 usage error (options, labels, inputs, shard settings); 128+signal when interrupted.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "batch/idset.h"
#include "batch/inputs.h"
#include "batch/merge.h"
#include "batch/output.h"
#include "batch/prefetch.h"
#include "batch/progress.h"
#include "batch/shard.h"
#include "cli/device.h"
#include "engine/classify.h"
#include "engine/scheduler.h"
#include "formats/tokenizer.h"
#include "model/gpu.h"
#include "model/llava.h"
#include "util/mem.h"

int cmd_classify(int argc, char **argv);

/* The one piece of global state: a signal handler can only talk through a sig_atomic_t. */
static volatile sig_atomic_t g_signal;

static void on_signal(int sig) { g_signal = sig; }

static void classify_usage(FILE *f) {
    fputs("usage: llava classify -m MODEL_DIR --labels labels.txt|a,b,c INPUTS... -o results.jsonl [options]\n"
          "       llava classify --merge -o results.jsonl [--shards N] [INPUTS...] [--overwrite]\n"
          "\n"
          "Scores every label for every input image and writes one record per image:\n"
          "  {\"id\",\"image\",\"label\",\"probability\",\"top_k\":[{\"label\",\"probability\"}],\"low_confidence\"}\n"
          "or {\"id\",\"image\",\"error\"} for an image that cannot be read (the run goes on).\n"
          "INPUTS: image files, directories (recursive: .jpg .jpeg .png .webp), manifests .txt (one path a\n"
          "line), .csv (id,path[,label]), .jsonl ({\"id\",\"image\"[,\"label\"]}); paths in a manifest are\n"
          "relative to its folder. Ids are the manifest's, else the path as given; they must be unique.\n"
          "\n"
          "  -m, --model DIR        Hugging Face LLaVA-NeXT checkpoint folder\n"
          "  --labels FILE|a,b,c    labels, one per line in FILE, or a comma list (default: the \"labels\" of\n"
          "                         MODEL_DIR/llava_classify.json, which may also set question and answer)\n"
          "  -o, --output FILE      results file (required)\n"
          "  --top-k K|all          labels listed in top_k (default 3)\n"
          "  --min-confidence P     low_confidence is true below P (default 0.5)\n"
          "  --question Q           prompt; {labels} becomes the labels joined by \",\" (default: the\n"
          "                         \"Fill in the blank: this is a photo of a {}...\" question)\n"
          "  --answer A             answer template with {label} (default \"this is a photo of {label}.\")\n"
          "  --format jsonl|csv     record format (default: csv when -o ends in .csv, else jsonl)\n"
          "  --resume               continue an existing output (also the default when it exists)\n"
          "  --overwrite            start over, truncating an existing output\n"
          "  --shard i/N            take shard i of N (ids hashed); output results.shard-000i-of-000N.jsonl\n"
          "  --shards N             shard count for JOB_COMPLETION_INDEX / AWS_BATCH_JOB_ARRAY_INDEX\n"
          "                         (SLURM_ARRAY_TASK_ID/_COUNT are read by themselves); --shard 0/1\n"
          "                         ignores an array environment\n"
          "  --merge                join the shard files of -o into -o and check them (missing and\n"
          "                         duplicate ids; give the INPUTS to check that every input has a record)\n"
          "  --device cpu|cuda|auto model on the CPU or the first CUDA device (default auto: CUDA if present)\n"
          CLI_GPU_FLAGS_HELP
          "  --threads N            image decode/preprocess threads (default: half the CPUs, 1..8)\n"
          "  --max-pixels N         refuse larger images with an error record (default 89478485, Pillow's)\n"
          "  --price-per-hour P     print the cost per 1000 images at P per hour of wall time\n"
          "  --log-every S          seconds between progress lines when stderr is not a terminal (default 10)\n"
          "Exit status: 0 done (even with per-image errors), 1 could not run or incomplete merge, 2 usage,\n"
          "128+signal when stopped by SIGINT/SIGTERM (re-run the same command to resume).\n"
          "See docs/batch.md for Slurm and Kubernetes examples.\n",
          f);
}

typedef struct classify_opts {
    const char *model, *labels, *out, *question, *answer, *shard, *format, *topk, *device;
    double min_conf, price;
    double log_every;
    int shards, threads, merge;
    llava_gpu_params gp;
    int64_t max_pixels;
    llava_open_mode mode;
    const char **inputs;
    int n_inputs;
} classify_opts;

static int bad_value(const char *opt, const char *v, const char *what) {
    fprintf(stderr, "llava classify: invalid value for %s: \"%s\" (%s)\n", opt, v, what);
    return -1;
}

static int parse_long(const char *opt, const char *v, long long min, long long max, long long *out) {
    char *end = NULL;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (end == v || *end || errno || x < min || x > max) {
        char what[96];
        snprintf(what, sizeof what, "an integer from %lld to %lld", min, max);
        return bad_value(opt, v, what);
    }
    *out = x;
    return 0;
}

static int parse_double(const char *opt, const char *v, double min, double max, double *out) {
    char *end = NULL;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || *end || errno || !(x >= min && x <= max)) {
        char what[96];
        snprintf(what, sizeof what, "a number from %g to %g", min, max);
        return bad_value(opt, v, what);
    }
    *out = x;
    return 0;
}

/* Returns 0, 1 when help was printed, -1 on a usage error (message printed). */
static int parse_args(classify_opts *o, int argc, char **argv) {
    memset(o, 0, sizeof *o);
    o->min_conf = 0.5;
    o->max_pixels = LLAVA_DEFAULT_MAX_PIXELS;
    o->log_every = 10;
    o->device = "auto";
    o->inputs = xcalloc((size_t)argc + 1, sizeof *o->inputs);
    int resume = 0, overwrite = 0, only_inputs = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_inputs || a[0] != '-' || !a[1]) {
            o->inputs[o->n_inputs++] = a;
            continue;
        }
        if (!strcmp(a, "--")) {
            only_inputs = 1;
            continue;
        }
        char name[64];
        const char *val = NULL;
        snprintf(name, sizeof name, "%s", a);
        char *eq = strchr(name, '=');
        if (!strncmp(a, "--", 2) && eq) {
            *eq = 0;
            val = a + (eq - name) + 1;
        }
        if (!strcmp(name, "-h") || !strcmp(name, "--help")) {
            classify_usage(stdout);
            return 1;
        }
        int flag = 1;
        if (!strcmp(name, "--resume")) resume = 1;
        else if (!strcmp(name, "--overwrite")) overwrite = 1;
        else if (!strcmp(name, "--merge")) o->merge = 1;
        else flag = 0;
        if (flag) {
            if (val) return bad_value(name, val, "this option takes no value");
            continue;
        }
        static const char *const takes[] = {"-m", "--model", "--labels", "-o", "--output", "--top-k",
                                            "--min-confidence", "--question", "--answer", "--format", "--shard",
                                            "--shards", "--threads", "--max-pixels", "--price-per-hour",
                                            "--log-every", "--device", "--gpu-mem-limit", "--step-tokens", "--quantization",
                                            NULL};
        int known = 0;
        for (int k = 0; takes[k]; k++) known |= !strcmp(name, takes[k]);
        if (!known) {
            fprintf(stderr, "llava classify: unknown option %s (see llava classify --help)\n", name);
            return -1;
        }
        if (!val) {
            if (i + 1 >= argc) {
                fprintf(stderr, "llava classify: %s needs a value\n", name);
                return -1;
            }
            val = argv[++i];
        }
        long long x;
        if (!strcmp(name, "-m") || !strcmp(name, "--model")) o->model = val;
        else if (!strcmp(name, "--labels")) o->labels = val;
        else if (!strcmp(name, "-o") || !strcmp(name, "--output")) o->out = val;
        else if (!strcmp(name, "--question")) o->question = val;
        else if (!strcmp(name, "--answer")) o->answer = val;
        else if (!strcmp(name, "--shard")) o->shard = val;
        else if (!strcmp(name, "--device")) {
            if (strcmp(val, "cpu") && strcmp(val, "cuda") && strcmp(val, "auto"))
                return bad_value(name, val, "cpu, cuda or auto");
            o->device = val;
        }
        else if (!strcmp(name, "--format")) {
            if (strcmp(val, "jsonl") && strcmp(val, "csv")) return bad_value(name, val, "jsonl or csv");
            o->format = val;
        } else if (!strcmp(name, "--top-k")) {
            if (strcmp(val, "all") && parse_long(name, val, 1, INT_MAX, &x)) return -1;
            o->topk = val;
        } else if (!strcmp(name, "--min-confidence")) {
            if (parse_double(name, val, 0, 1, &o->min_conf)) return -1;
        } else if (!strcmp(name, "--price-per-hour")) {
            if (parse_double(name, val, 0, 1e9, &o->price)) return -1;
        } else if (!strcmp(name, "--log-every")) {
            if (parse_double(name, val, 0, 1e6, &o->log_every)) return -1;
        } else if (!strcmp(name, "--shards")) {
            if (parse_long(name, val, 1, 1000000, &x)) return -1;
            o->shards = (int)x;
        } else if (!strcmp(name, "--threads")) {
            if (parse_long(name, val, 1, 256, &x)) return -1;
            o->threads = (int)x;
        } else if (!strcmp(name, "--max-pixels")) {
            if (parse_long(name, val, 1, (long long)1 << 40, &x)) return -1;
            o->max_pixels = x;
        } else if (!strcmp(name, "--gpu-mem-limit")) {
            if (parse_double(name, val, 1, 1e6, &o->gp.mem_limit_gib)) return -1;
        } else if (!strcmp(name, "--step-tokens")) {
            if (parse_long(name, val, 2048, 1 << 20, &x)) return -1;
            o->gp.step_tokens = (int)x;
        } else if (!strcmp(name, "--quantization")) {
            if (cli_quantization(val, &o->gp)) return bad_value(name, val, "fp8 or none");
        }
    }
    if (resume && overwrite) {
        fprintf(stderr, "llava classify: --resume and --overwrite exclude each other\n");
        return -1;
    }
    o->mode = overwrite ? LLAVA_OPEN_OVERWRITE : resume ? LLAVA_OPEN_RESUME : LLAVA_OPEN_DEFAULT;
    if (!o->out) {
        fprintf(stderr, "llava classify: -o results.jsonl is required (see llava classify --help)\n");
        return -1;
    }
    if (!o->merge) {
        /* --labels may come from the model's llava_classify.json instead (checked once it is read) */
        const char *miss = !o->model ? "-m MODEL_DIR" : !o->n_inputs ? "INPUTS" : NULL;
        if (miss) {
            fprintf(stderr, "llava classify: %s is required (see llava classify --help)\n", miss);
            return -1;
        }
    }
    return 0;
}

/* ---- labels ---------------------------------------------------------------------------------- */

typedef struct label_list {
    char **v;
    int n;
} label_list;

static void labels_free(label_list *l) {
    for (int i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static void labels_push(label_list *l, const char *s, size_t n) {
    while (n && (*s == ' ' || *s == '\t' || *s == '\r')) s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r')) n--;
    l->v = xrealloc(l->v, (size_t)(l->n + 1) * sizeof *l->v);
    l->v[l->n] = xmalloc(n + 1);
    memcpy(l->v[l->n], s, n);
    l->v[l->n][n] = 0;
    l->n++;
}

/* --labels: a file (one label a line, blank lines skipped) when such a file exists, else a
 * comma list. Empty labels, duplicates and an empty set are errors. */
static int load_labels(label_list *l, const char *arg, llava_err *err) {
    struct stat st;
    if (stat(arg, &st) == 0 && S_ISREG(st.st_mode)) {
        size_t len;
        char *buf = llava_read_file(arg, &len, (size_t)64 << 20, err);
        if (!buf) return -1;
        size_t pos = len >= 3 && !memcmp(buf, "\xEF\xBB\xBF", 3) ? 3 : 0;
        while (pos < len) {
            char *nl = memchr(buf + pos, '\n', len - pos);
            size_t n = nl ? (size_t)(nl - (buf + pos)) : len - pos;
            size_t k = 0;
            while (k < n && (buf[pos + k] == ' ' || buf[pos + k] == '\t' || buf[pos + k] == '\r')) k++;
            if (k < n) labels_push(l, buf + pos, n);
            pos += n + 1;
        }
        free(buf);
    } else {
        if (strchr(arg, '/') || llava_has_ext(arg, ".txt"))
            return llava_errf(err, "--labels %s: no such file (give a file with one label a line, or a comma list)",
                              arg);
        for (const char *s = arg;;) {
            const char *c = strchr(s, ',');
            size_t n = c ? (size_t)(c - s) : strlen(s);
            labels_push(l, s, n);
            if (!c) break;
            s = c + 1;
        }
    }
    if (l->n == 0) return llava_errf(err, "--labels %s: no labels", arg);
    llava_idset seen = {0};
    int rc = 0;
    for (int i = 0; i < l->n && rc == 0; i++) {
        if (!l->v[i][0]) rc = llava_errf(err, "--labels %s: label %d is empty", arg, i + 1);
        else if (llava_idset_put(&seen, l->v[i], i) >= 0)
            rc = llava_errf(err, "--labels %s: \"%s\" is listed twice", arg, l->v[i]);
    }
    llava_idset_free(&seen);
    return rc;
}

/* ---- resume checks ------------------------------------------------------------------------- */

typedef struct resume_ctx {
    llava_idset labels;
    const char *path;
} resume_ctx;

static int check_record_label(void *vctx, const llava_record_view *r, llava_err *err) {
    resume_ctx *c = vctx;
    if (r->label && llava_idset_get(&c->labels, r->label) < 0)
        return llava_errf(err, "%s:%d has label \"%s\", which is not among --labels: the file was made with other "
                          "labels (use another -o, or --overwrite to start over)", c->path, r->line, r->label);
    return 0;
}

/* ---- merge ----------------------------------------------------------------------------------- */

static int run_merge(const classify_opts *o, llava_out_format fmt) {
    llava_inputs in = {0};
    llava_err err = {{0}};
    for (int i = 0; i < o->n_inputs; i++) {
        if (llava_inputs_add(&in, o->inputs[i], &err)) {
            fprintf(stderr, "llava classify: %s\n", err.msg);
            llava_inputs_free(&in);
            return 2;
        }
    }
    if (in.n && llava_inputs_check_unique(&in, &err)) {
        fprintf(stderr, "llava classify: %s\n", err.msg);
        llava_inputs_free(&in);
        return 2;
    }
    llava_merge_report r;
    int rc = llava_merge(o->out, fmt, o->shards, o->n_inputs ? &in : NULL, o->mode == LLAVA_OPEN_OVERWRITE, stderr,
                         &r, &err);
    llava_inputs_free(&in);
    if (rc) {
        fprintf(stderr, "llava classify: merge: %s\n", err.msg);
        return 1;
    }
    fprintf(stderr,
            "llava: merged %d of %d shard files into %s: %lld records (%lld errors), %lld duplicate ids dropped, "
            "%d shard files missing, %d torn",
            r.shard_files, r.shards, o->out, (long long)r.records, (long long)r.errors, (long long)r.duplicates,
            r.missing_shards, r.torn_files);
    if (o->n_inputs)
        fprintf(stderr, ", %lld inputs without a record, %lld records not among the inputs", (long long)r.missing,
                (long long)r.unknown);
    fputs("\n", stderr);
    if (llava_merge_incomplete(&r)) {
        fprintf(stderr, "llava classify: merge: the merged output is incomplete or has duplicates (see above)\n");
        return 1;
    }
    return 0;
}

/* ---- the run ---------------------------------------------------------------------------------- */

static int default_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    int t = n > 1 ? (int)(n / 2) : 1;
    return t < 1 ? 1 : t > 8 ? 8 : t;
}

/* what the scheduler's callback needs to append a record */
typedef struct record_ctx {
    llava_output *out;
    llava_sbuf *rec;
    llava_out_format fmt;
    const llava_inputs *in;
    const label_list *labels;
    int top_k;
    double min_conf;
    llava_progress *prog;
    llava_err *err;
    int failed; /* a write failed: stop */
} record_ctx;

/* appends input's record: the error when set, else its label probabilities */
static void append_record(record_ctx *c, int input, const char *error, const double *probs) {
    const llava_input *x = &c->in->v[input];
    if (c->failed) return; /* the output is broken: the image stays for the next run */
    llava_sbuf_clear(c->rec);
    if (error)
        llava_record_error(c->rec, c->fmt, x, error);
    else
        llava_record_result(c->rec, c->fmt, x, (const char *const *)c->labels->v, probs, c->labels->n, c->top_k,
                            c->min_conf);
    if (llava_output_write(c->out, c->rec->p, c->rec->len, c->err)) {
        c->failed = 1;
        return;
    }
    llava_progress_add(c->prog, error != NULL);
}

static void on_result(void *user, const llava_sched_result *r) {
    append_record(user, (int)(intptr_t)r->tag, r->error, r->probs);
}

int cmd_classify(int argc, char **argv) {
    double t0 = llava_now();
    classify_opts o;
    int pr = parse_args(&o, argc, argv);
    if (pr) {
        free(o.inputs);
        return pr > 0 ? 0 : 2;
    }
    llava_out_format fmt = o.format ? (!strcmp(o.format, "csv") ? LLAVA_FMT_CSV : LLAVA_FMT_JSONL)
                                    : (llava_has_ext(o.out, ".csv") ? LLAVA_FMT_CSV : LLAVA_FMT_JSONL);
    if (o.merge) {
        int rc = run_merge(&o, fmt);
        free(o.inputs);
        return rc;
    }

    int rc = 2;
    llava_err err = {{0}};
    label_list labels = {0};
    llava_classify_config mcfg = {0};
    llava_inputs in = {0};
    llava_shard shard;
    char *out_path = NULL;
    int *todo = NULL, n_todo = 0, n_shard = 0, n_foreign = 0;
    llava_output out = {.fd = -1};
    llava_idset done = {0};
    resume_ctx rctx = {{0}, NULL};
    llava_model *m = NULL;
    llava_classifier *clf = NULL;
    llava_gpu *gpu = NULL;
    char gpu_name[256] = "";
    llava_prefetch *pool = NULL;
    llava_sched *sched = NULL;
    record_ctx rcb = {0};
    llava_sbuf rec = {0};
    struct sigaction old_int, old_term;
    int have_handlers = 0;

    /* defaults written next to a fine-tuned model (labels, question, answer); flags win */
    if (llava_classify_config_load(&mcfg, o.model, &err)) goto usage_err;
    if (!o.question) o.question = mcfg.question;
    if (!o.answer) o.answer = mcfg.answer;
    if (o.labels) {
        if (load_labels(&labels, o.labels, &err)) goto usage_err;
    } else if (mcfg.n_labels) {
        for (int i = 0; i < mcfg.n_labels; i++) labels_push(&labels, mcfg.labels[i], strlen(mcfg.labels[i]));
    } else {
        llava_errf(&err, "--labels is required (or a %s with \"labels\" next to the model)", LLAVA_CLASSIFY_CONFIG);
        goto usage_err;
    }
    for (int i = 0; i < o.n_inputs; i++)
        if (llava_inputs_add(&in, o.inputs[i], &err)) goto usage_err;
    if (in.n == 0) {
        llava_errf(&err, "no images among the inputs");
        goto usage_err;
    }
    if (llava_inputs_check_unique(&in, &err)) goto usage_err;
    if (llava_shard_resolve(&shard, o.shard, o.shards, NULL, &err)) goto usage_err;
    out_path = llava_shard_path(o.out, shard.index, shard.count);

    /* this shard's inputs, then what the output already holds */
    todo = xmalloc((size_t)in.n * sizeof *todo);
    for (int i = 0; i < in.n; i++)
        if (llava_shard_owns(&shard, in.v[i].id)) todo[n_shard++] = i;
    rctx.path = out_path;
    for (int i = 0; i < labels.n; i++) llava_idset_put(&rctx.labels, labels.v[i], i);
    rc = 1;
    if (llava_output_open(&out, out_path, fmt, o.mode, &done, check_record_label, &rctx, &err)) goto fail;
    if (out.torn_bytes)
        fprintf(stderr, "llava: %s: dropped a torn last line (%lld bytes) left by an interrupted run\n", out_path,
                (long long)out.torn_bytes);
    for (int k = 0; k < n_shard; k++)
        if (llava_idset_get(&done, in.v[todo[k]].id) < 0) todo[n_todo++] = todo[k];
    n_foreign = (int)((int64_t)done.n - (n_shard - n_todo));
    if (n_foreign > 0)
        fprintf(stderr, "llava: warning: %s holds %d records of ids that are not inputs of this run%s\n", out_path,
                n_foreign, shard.count > 1 ? " and shard" : "");
    if (shard.count > 1)
        fprintf(stderr, "llava: shard %d of %d (from %s): %d of %d inputs -> %s\n", shard.index, shard.count,
                shard.source, n_shard, in.n, out_path);
    if (out.n_existing)
        fprintf(stderr, "llava: resuming %s: %d of %d inputs already recorded, %d to go\n", out_path,
                n_shard - n_todo, n_shard, n_todo);

    llava_progress prog;
    llava_progress_init(&prog, stderr, isatty(STDERR_FILENO), n_shard, n_shard - n_todo, t0, o.price);
    prog.interval = o.log_every;
    if (n_todo == 0) {
        llava_progress_summary(&prog, 0);
        rc = llava_output_close(&out, &err) ? 1 : 0;
        if (rc) goto fail;
        goto done;
    }

    /* on the GPU the weights go straight from the checkpoint to the device (no fp32 host copies) */
    int want_gpu = cli_want_gpu(o.device, &o.gp, gpu_name, sizeof gpu_name, &err);
    if (want_gpu < 0) goto fail;
    if (llava_model_load_ex(&m, o.model, !want_gpu, &err)) {
        llava_err_prefix(&err, "cannot load the model %s", o.model);
        goto fail;
    }
    if (want_gpu && cli_device_open(&m, &gpu, o.device, &o.gp, "llava", &err)) goto fail;
    if (llava_classifier_new(&clf, m, (const char *const *)labels.v, labels.n, o.question, o.answer, &err))
        goto fail;
    rcb = (record_ctx){.out = &out, .rec = &rec, .fmt = fmt, .in = &in, .labels = &labels, .min_conf = o.min_conf,
                       .prog = &prog, .err = &err};
    if (llava_sched_new(&sched, m, gpu, on_result, &rcb, &err)) goto fail;
    fprintf(stderr, "llava: %d labels, model on %s, %d decode threads\n", llava_classifier_n_labels(clf),
            gpu ? gpu_name : "the CPU", o.threads ? o.threads : default_threads());
    int n_labels = llava_classifier_n_labels(clf);
    rcb.top_k = !o.topk ? 3 : !strcmp(o.topk, "all") ? n_labels : atoi(o.topk);

    /* a signal now finishes the image in the model, then stops */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESETHAND; /* a second signal acts as usual (kills) */
    sigemptyset(&sa.sa_mask);
    g_signal = 0;
    sigaction(SIGINT, NULL, &old_int);
    if (old_int.sa_handler != SIG_IGN) sigaction(SIGINT, &sa, NULL); /* ignored (nohup, background job): keep */
    sigaction(SIGTERM, &sa, &old_term);
    have_handlers = 1;

    int threads = o.threads ? o.threads : default_threads();
    llava_prefetch_params pp = {&in, todo, n_todo, &m->pp, o.max_pixels, threads, 2 * threads + 1};
    if (llava_prefetch_start(&pool, &pp, &err)) goto fail;
    llava_progress_start(&prog);
    rc = 0;
    while (!g_signal && !rcb.failed) {
        llava_prefetch_item it;
        /* while images are in the model, look for finished steps between short waits */
        int r = llava_prefetch_next(pool, &it, llava_sched_pending(sched) ? 0.002 : 0.2);
        if (r < 0) break;
        if (r == 0) {
            if (llava_sched_poll(sched, 0, &err) < 0) rc = 1;
            llava_progress_tick(&prog, 0);
            if (rc) break;
            continue;
        }
        if (it.error[0]) {
            append_record(&rcb, it.input, it.error, NULL);
        } else if (llava_sched_add(sched, clf, it.pixels, it.n_tiles, it.H, it.W, (void *)(intptr_t)it.input, &err)) {
            /* a device failure is not the image's fault: stop, record nothing more, resume later */
            llava_err_prefix(&err, "%s", in.v[it.input].path);
            rc = 1;
        }
        llava_prefetch_item_free(&it);
        if (rc) break;
    }
    /* what is in the model is finished and recorded, also after a signal */
    if (!rc && llava_sched_flush(sched, &err)) rc = 1;
    if (rcb.failed) rc = 1;
    llava_prefetch_stop(pool);
    pool = NULL;
    if (llava_output_close(&out, rc ? NULL : &err)) rc = 1;
    int sig = g_signal;
    llava_progress_summary(&prog, sig != 0 || rc != 0);
    if (rc) goto fail;
    if (sig) rc = 128 + sig;
    goto done;

usage_err:
    fprintf(stderr, "llava classify: %s\n", err.msg);
    rc = 2;
    goto done;
fail:
    fprintf(stderr, "llava classify: %s\n", err.msg);
    if (!rc) rc = 1;
done:
    if (pool) llava_prefetch_stop(pool);
    if (have_handlers) {
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
    }
    llava_output_close(&out, NULL);
    llava_sched_free(sched);
    llava_gpu_free(gpu);
    llava_classifier_free(clf);
    llava_model_free(m);
    llava_sbuf_free(&rec);
    llava_idset_free(&rctx.labels);
    llava_idset_free(&done);
    free(todo);
    free(out_path);
    llava_inputs_free(&in);
    labels_free(&labels);
    llava_classify_config_free(&mcfg);
    free(o.inputs);
    return rc;
}
