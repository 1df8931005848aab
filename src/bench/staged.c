/* staged.c — timed stages of one classification (see staged.h). */
#include "bench/staged.h"

#include <math.h>
#include <string.h>

#include "backend/cpu/ops.h"
#include "bench/cuda_util.h"
#include "formats/tokenizer.h"
#include "util/mem.h"

struct bench_runner {
    const llava_model *m;
    const llava_classifier *c;
    llava_gpu *gpu;
    int profile;
    int *prompt, n_prompt;   /* tokenized prompt with its single (unexpanded) image token */
    int n_labels;
    int n_nodes, *tok, *par; /* trie */
    int **path, *n_path;     /* per label: node of each continuation token */
};

void bench_runner_free(bench_runner *r) {
    if (!r) return;
    for (int i = 0; i < r->n_labels; i++) free(r->path[i]);
    free(r->path), free(r->n_path), free(r->tok), free(r->par), free(r->prompt);
    free(r);
}

int bench_runner_new(bench_runner **out, const llava_model *m, const llava_classifier *c, llava_gpu *gpu, int profile,
                     llava_err *err) {
    *out = NULL;
    bench_runner *r = xcalloc(1, sizeof *r);
    r->m = m, r->c = c, r->gpu = gpu, r->profile = profile;
    const char *prompt = llava_classifier_prompt(c);
    if (llava_tokenize(m->tok, prompt, strlen(prompt), 1, &r->prompt, &r->n_prompt, err)) {
        free(r);
        return -1;
    }
    r->n_labels = llava_classifier_n_labels(c);
    r->path = xcalloc((size_t)r->n_labels, sizeof(int *));
    r->n_path = xcalloc((size_t)r->n_labels, sizeof(int));
    int cap = llava_classifier_trie_size(c) + 1;
    r->tok = xmalloc(sizeof(int) * (size_t)cap);
    r->par = xmalloc(sizeof(int) * (size_t)cap);
    for (int i = 0; i < r->n_labels; i++) {
        int n;
        const int *cont = llava_classifier_continuation(c, i, &n);
        r->n_path[i] = n;
        r->path[i] = xmalloc(sizeof(int) * (size_t)(n ? n : 1));
        int parent = -1;
        for (int k = 0; k < n; k++) {
            int found = -1;
            for (int nd = 0; nd < r->n_nodes; nd++)
                if (r->par[nd] == parent && r->tok[nd] == cont[k]) {
                    found = nd;
                    break;
                }
            if (found < 0) {
                CHECK(r->n_nodes < cap);
                found = r->n_nodes++;
                r->tok[found] = cont[k];
                r->par[found] = parent;
            }
            r->path[i][k] = parent = found;
        }
    }
    CHECK(r->n_nodes == llava_classifier_trie_size(c));
    *out = r;
    return 0;
}

int bench_runner_trie_size(const bench_runner *r) { return r->n_nodes; }

static int *expand_prompt(const bench_runner *r, int n_feats, int *n_out) {
    const int img = r->m->cfg.image_token_index;
    int *o = xmalloc(sizeof(int) * (size_t)(r->n_prompt + n_feats));
    int k = 0;
    for (int i = 0; i < r->n_prompt; i++) {
        if (r->prompt[i] == img)
            for (int j = 0; j < n_feats; j++) o[k++] = img;
        else
            o[k++] = r->prompt[i];
    }
    *n_out = k;
    return o;
}

/* softmax over labels of the summed continuation log-probabilities; lsm0 (V) after the prompt,
 * tree_lp (n_nodes, V) after every trie node (already log-softmaxed) */
static void score(double *probs, const bench_runner *r, const double *lsm0, const float *tree_lp) {
    const int V = r->m->cfg.text.vocab;
    double mx = -INFINITY;
    for (int i = 0; i < r->n_labels; i++) {
        double s = 0;
        for (int k = 0; k < r->n_path[i]; k++) {
            int nd = r->path[i][k], p = r->par[nd];
            s += p < 0 ? lsm0[r->tok[nd]] : (double)tree_lp[(size_t)p * V + r->tok[nd]];
        }
        probs[i] = s;
        if (s > mx) mx = s;
    }
    double z = 0;
    for (int i = 0; i < r->n_labels; i++) z += exp(probs[i] - mx);
    for (int i = 0; i < r->n_labels; i++) probs[i] = exp(probs[i] - mx) / z;
}

static int classify_cpu(bench_runner *r, double *probs, const float *pixels, int n_tiles, int H, int W,
                        int *prompt_tokens, bench_times *t, llava_err *err) {
    const llava_model *m = r->m;
    const int Ht = m->cfg.text.hidden, V = m->cfg.text.vocab, img = m->cfg.image_token_index, nn = r->n_nodes;
    float *feats = NULL, *x = NULL, *logits = NULL, *tree = NULL;
    double *lsm = NULL;
    int *ids = NULL, n_ids = 0, n_feats = 0, rc = -1;
    mistral_cache cache = {0};
    double t0 = llava_now();
    if (llava_image_features(&feats, &n_feats, m, pixels, n_tiles, H, W, err)) goto done;
    double t1 = llava_now();
    ids = expand_prompt(r, n_feats, &n_ids);
    *prompt_tokens = n_ids;
    if (mistral_cache_init(&cache, &m->cfg.text, n_ids + nn, err)) goto done;
    x = llava_try_malloc(sizeof(float) * (size_t)(n_ids > nn ? n_ids : nn) * Ht, "embeddings", err);
    logits = x ? llava_try_malloc(sizeof(float) * (size_t)V, "logits", err) : NULL;
    tree = logits ? llava_try_malloc(sizeof(float) * (size_t)nn * V, "label logits", err) : NULL;
    lsm = tree ? llava_try_malloc(sizeof(double) * (size_t)V * 2, "log-softmax", err) : NULL;
    if (!lsm) goto done;
    mistral_embed(x, &m->lm, ids, n_ids);
    for (int i = 0, f = 0; i < n_ids; i++)
        if (ids[i] == img) memcpy(x + (size_t)i * Ht, feats + (size_t)f++ * Ht, sizeof(float) * Ht);
    if (mistral_forward(logits, &m->lm, &cache, x, n_ids, 0, err)) goto done;
    double t2 = llava_now();
    mistral_embed(x, &m->lm, r->tok, nn);
    if (mistral_forward_tree(tree, &m->lm, &cache, x, nn, r->par, err)) goto done;
    cpu_log_softmax(lsm, logits, V);
    for (int k = 0; k < nn; k++) { /* each trie row becomes its log-softmax (in double, via lsm + V) */
        cpu_log_softmax(lsm + V, tree + (size_t)k * V, V);
        for (int i = 0; i < V; i++) tree[(size_t)k * V + i] = (float)lsm[V + i];
    }
    score(probs, r, lsm, tree);
    double t3 = llava_now();
    t->vision = t1 - t0, t->prefill = t2 - t1, t->scoring = t3 - t2;
    rc = 0;
done:
    mistral_cache_free(&cache);
    free(feats), free(x), free(logits), free(tree), free(lsm), free(ids);
    return rc;
}

static int classify_gpu(bench_runner *r, double *probs, const float *pixels, int n_tiles, int H, int W,
                        int *prompt_tokens, bench_times *t, llava_err *err) {
    const int V = r->m->cfg.text.vocab, nn = r->n_nodes;
    int *ids = NULL, n_ids = 0, n_feats = 0, rc = -1;
    float *logits = llava_try_malloc(sizeof(float) * (size_t)V, "logits", err);
    float *tree = logits ? llava_try_malloc(sizeof(float) * (size_t)nn * V, "label logits", err) : NULL;
    double *lsm = tree ? llava_try_malloc(sizeof(double) * (size_t)V, "log-softmax", err) : NULL;
    if (!lsm) goto done;
    double t0 = llava_now();
    if (llava_gpu_encode_image(r->gpu, pixels, n_tiles, H, W, &n_feats, err)) goto done;
#ifdef LLAVA_CUDA
    if (r->profile) bench_cuda_device_sync();
#endif
    double t1 = llava_now();
    ids = expand_prompt(r, n_feats, &n_ids);
    *prompt_tokens = n_ids;
    if (llava_gpu_prefill(r->gpu, ids, n_ids, logits, err)) goto done;
    double t2 = llava_now();
    if (llava_gpu_tree(r->gpu, r->tok, r->par, nn, tree, err)) goto done; /* rows come log-softmaxed */
    cpu_log_softmax(lsm, logits, V);
    score(probs, r, lsm, tree);
    double t3 = llava_now();
    t->vision = t1 - t0, t->prefill = t2 - t1, t->scoring = t3 - t2;
    rc = 0;
done:
    free(logits), free(tree), free(lsm), free(ids);
    return rc;
}

int bench_runner_classify(bench_runner *r, double *probs, const float *pixels, int n_tiles, int H, int W,
                          int *prompt_tokens, bench_times *t, llava_err *err) {
    memset(t, 0, sizeof *t);
    *prompt_tokens = 0;
    return r->gpu ? classify_gpu(r, probs, pixels, n_tiles, H, W, prompt_tokens, t, err)
                  : classify_cpu(r, probs, pixels, n_tiles, H, W, prompt_tokens, t, err);
}

int bench_runner_check(bench_runner *r, const float *pixels, int n_tiles, int H, int W, double *max_diff,
                       llava_err *err) {
    double *a = xmalloc(sizeof(double) * (size_t)r->n_labels), *b = xmalloc(sizeof(double) * (size_t)r->n_labels);
    int n;
    bench_times t;
    int rc = bench_runner_classify(r, a, pixels, n_tiles, H, W, &n, &t, err);
    if (!rc)
        rc = r->gpu ? llava_classify_pixels_gpu(b, NULL, r->c, r->gpu, pixels, n_tiles, H, W, err)
                    : llava_classify_pixels(b, NULL, r->c, pixels, n_tiles, H, W, err);
    *max_diff = 0;
    for (int i = 0; !rc && i < r->n_labels; i++)
        if (fabs(a[i] - b[i]) > *max_diff) *max_diff = fabs(a[i] - b[i]);
    free(a), free(b);
    return rc;
}
