/* classify.c — label scoring over a token trie (see classify.h). */
#include "engine/classify.h"

#include <math.h>
#include <string.h>

#include "backend/cpu/ops.h"
#include "engine/prompt.h"
#include "formats/json.h"
#include "util/mem.h"

struct llava_classifier {
    const llava_model *m;
    int n_labels;
    char **labels;
    char *prompt;          /* rendered prompt text (chat template, one <image>) */
    int *prompt_ids;       /* its token ids with the single image token unexpanded (n_prompt) */
    int n_prompt;
    int **cont;            /* continuation ids per label, EOS last */
    int *n_cont;
    /* trie over the continuations: node i has token tok[i] and parent par[i] (-1 = root) */
    int n_nodes;
    int *tok, *par;
    int **path;            /* per label: the node index of each continuation token */
    /* the nodes a forward runs: those that are a parent (a leaf's own output scores nothing);
     * inner[j] = node j's index among them or -1, itok/ipar their tokens and inner parents */
    int n_inner;
    int *inner, *itok, *ipar;
};

/* Replaces every occurrence of key in s by val; malloc'd. */
static char *replace_all(const char *s, const char *key, const char *val) {
    size_t kl = strlen(key), vl = strlen(val), n = 0;
    for (const char *p = strstr(s, key); p; p = strstr(p + kl, key)) n++;
    char *out = xmalloc(strlen(s) + n * vl + 1), *o = out;
    for (const char *p = s;;) {
        const char *q = strstr(p, key);
        if (!q) {
            strcpy(o, p);
            break;
        }
        memcpy(o, p, (size_t)(q - p));
        o += q - p;
        memcpy(o, val, vl);
        o += vl;
        p = q + kl;
    }
    return out;
}

void llava_classifier_free(llava_classifier *c) {
    if (!c) return;
    for (int i = 0; i < c->n_labels; i++) {
        free(c->labels[i]);
        if (c->cont) free(c->cont[i]);
        if (c->path) free(c->path[i]);
    }
    free(c->labels), free(c->cont), free(c->n_cont), free(c->path);
    free(c->tok), free(c->par), free(c->prompt), free(c->prompt_ids);
    free(c->inner), free(c->itok), free(c->ipar);
    free(c);
}

int llava_classifier_new(llava_classifier **out, const llava_model *m, const char *const *labels, int n_labels,
                         const char *question, const char *answer, llava_err *err) {
    *out = NULL;
    if (n_labels <= 0) return llava_errf(err, "the label set is empty: give at least two labels");
    if (!question) question = LLAVA_DEFAULT_QUESTION;
    if (!answer) answer = LLAVA_DEFAULT_ANSWER;
    if (!strstr(answer, "{label}")) return llava_errf(err, "the answer template \"%s\" has no {label}", answer);
    for (int i = 0; i < n_labels; i++) {
        if (!labels[i][0]) return llava_errf(err, "label %d is empty", i + 1);
        for (int j = 0; j < i; j++)
            if (!strcmp(labels[i], labels[j]))
                return llava_errf(err, "label \"%s\" appears twice (lines %d and %d)", labels[i], j + 1, i + 1);
    }
    if (!m->tmpl)
        return llava_errf(err, "%s; label scoring needs the chat template the model was fine-tuned with",
                          m->tmpl_error[0] ? m->tmpl_error : "the model has no chat template");
    llava_classifier *c = xcalloc(1, sizeof *c);
    c->m = m;
    c->n_labels = n_labels;
    c->labels = xcalloc((size_t)n_labels, sizeof(char *));
    for (int i = 0; i < n_labels; i++) c->labels[i] = xstrdup(labels[i]);
    c->cont = xcalloc((size_t)n_labels, sizeof(int *));
    c->n_cont = xcalloc((size_t)n_labels, sizeof(int));
    c->path = xcalloc((size_t)n_labels, sizeof(int *));
    /* "{labels}" → labels joined by "," */
    size_t jl = 1;
    for (int i = 0; i < n_labels; i++) jl += strlen(labels[i]) + 1;
    char *joined = xmalloc(jl);
    joined[0] = 0;
    for (int i = 0; i < n_labels; i++) {
        if (i) strcat(joined, ",");
        strcat(joined, labels[i]);
    }
    char *q = replace_all(question, "{labels}", joined);
    free(joined);
    int one = 1, rc = -1;
    int eos = m->cfg.eos_ids[0];
    /* prompt with one unexpanded image token (image expansion does not change text tokens) */
    if (llava_build_prompt(&c->prompt_ids, &c->n_prompt, &c->prompt, m, q, 0, 1, &one, err)) goto done;
    const int *pids = c->prompt_ids, n_p = c->n_prompt;
    size_t cap = 64;
    c->tok = xmalloc(sizeof(int) * cap);
    c->par = xmalloc(sizeof(int) * cap);
    for (int i = 0; i < n_labels; i++) {
        char *ans = replace_all(answer, "{label}", labels[i]);
        size_t pl = strlen(c->prompt), al = strlen(ans);
        char *full = xmalloc(pl + al + 2);
        memcpy(full, c->prompt, pl);
        full[pl] = ' ';
        memcpy(full + pl + 1, ans, al + 1);
        free(ans);
        int *ids = NULL, n = 0;
        int bad = llava_tokenize(m->tok, full, strlen(full), 1, &ids, &n, err);
        free(full);
        if (bad) goto done;
        /* the prompt's ids (with its single image token) must be a prefix */
        int ok = n > n_p;
        for (int k = 0; ok && k < n_p; k++) ok = ids[k] == pids[k];
        if (!ok) {
            free(ids);
            llava_errf(err, "label \"%s\": the answer does not start at a token boundary after the prompt", labels[i]);
            goto done;
        }
        c->n_cont[i] = n - n_p + 1;
        c->cont[i] = xmalloc(sizeof(int) * (size_t)c->n_cont[i]);
        memcpy(c->cont[i], ids + n_p, sizeof(int) * (size_t)(n - n_p));
        c->cont[i][n - n_p] = eos;
        free(ids);
        /* insert into the trie */
        c->path[i] = xmalloc(sizeof(int) * (size_t)c->n_cont[i]);
        int parent = -1;
        for (int k = 0; k < c->n_cont[i]; k++) {
            int t = c->cont[i][k], found = -1;
            for (int nd = 0; nd < c->n_nodes; nd++)
                if (c->par[nd] == parent && c->tok[nd] == t) {
                    found = nd;
                    break;
                }
            if (found < 0) {
                if ((size_t)c->n_nodes == cap) {
                    cap *= 2;
                    c->tok = xrealloc(c->tok, sizeof(int) * cap);
                    c->par = xrealloc(c->par, sizeof(int) * cap);
                }
                found = c->n_nodes++;
                c->tok[found] = t;
                c->par[found] = parent;
            }
            c->path[i][k] = found;
            parent = found;
        }
    }
    /* the inner nodes (in node order, so their parents precede them too) with their tokens and parents */
    c->inner = xmalloc(sizeof(int) * (size_t)c->n_nodes);
    c->itok = xmalloc(sizeof(int) * (size_t)c->n_nodes);
    c->ipar = xmalloc(sizeof(int) * (size_t)c->n_nodes);
    c->n_inner = llava_trie_inner(c->par, c->n_nodes, c->inner);
    for (int j = 0; j < c->n_nodes; j++)
        if (c->inner[j] >= 0) {
            c->itok[c->inner[j]] = c->tok[j];
            c->ipar[c->inner[j]] = c->par[j] < 0 ? -1 : c->inner[c->par[j]];
        }
    /* two labels with the same continuation would be indistinguishable */
    for (int i = 0; i < n_labels; i++)
        for (int j = 0; j < i; j++)
            if (c->path[i][c->n_cont[i] - 1] == c->path[j][c->n_cont[j] - 1]) {
                llava_errf(err, "labels \"%s\" and \"%s\" tokenize to the same answer", labels[j], labels[i]);
                goto done;
            }
    rc = 0;
done:
    free(q);
    if (rc) llava_classifier_free(c);
    else *out = c;
    return rc;
}

int llava_classifier_n_labels(const llava_classifier *c) { return c->n_labels; }
const char *llava_classifier_label(const llava_classifier *c, int i) { return c->labels[i]; }
const char *llava_classifier_prompt(const llava_classifier *c) { return c->prompt; }
int llava_classifier_trie_size(const llava_classifier *c) { return c->n_nodes; }
int llava_classifier_trie_inner(const llava_classifier *c) { return c->n_inner; }
const int *llava_classifier_continuation(const llava_classifier *c, int i, int *n) {
    *n = c->n_cont[i];
    return c->cont[i];
}

/* probs and scores (may be NULL) from the per-label sums of node log-probabilities: node_lp[j], or
 * from the log-softmax after the prompt (lsm0) and after each inner node (tree_lp rows). */
static void score_paths(double *probs, double *scores, const llava_classifier *c, const double *lsm0,
                        const float *tree_lp, const float *node_lp) {
    const int V = c->m->cfg.text.vocab;
    double *sc = scores ? scores : xmalloc(sizeof(double) * (size_t)c->n_labels);
    double mx = -INFINITY;
    for (int i = 0; i < c->n_labels; i++) {
        double s = 0;
        for (int k = 0; k < c->n_cont[i]; k++) {
            int nd = c->path[i][k];
            int p = c->par[nd];
            if (node_lp) s += (double)node_lp[nd];
            else s += p < 0 ? lsm0[c->tok[nd]] : (double)tree_lp[(size_t)c->inner[p] * V + c->tok[nd]];
        }
        sc[i] = s;
        if (s > mx) mx = s;
    }
    double z = 0;
    for (int i = 0; i < c->n_labels; i++) z += exp(sc[i] - mx);
    for (int i = 0; i < c->n_labels; i++) probs[i] = exp(sc[i] - mx) / z;
    if (sc != scores) free(sc);
}

/* from the log-softmax after the prompt (lsm0, V) and after every inner trie node (tree_lp, (n_inner, V)) */
static void score_labels(double *probs, double *scores, const llava_classifier *c, const double *lsm0,
                         const float *tree_lp) {
    score_paths(probs, scores, c, lsm0, tree_lp, NULL);
}

void llava_classifier_score_nodes(const llava_classifier *c, const float *node_lp, double *probs, double *scores) {
    score_paths(probs, scores, c, NULL, NULL, node_lp);
}

int llava_classifier_prompt_tokens(const llava_classifier *c, int n_feats) { return c->n_prompt - 1 + n_feats; }

int llava_classifier_trie(const llava_classifier *c, const int **tok, const int **par) {
    *tok = c->tok;
    *par = c->par;
    return c->n_nodes;
}

/* in place: each row of x (rows, V) becomes its log-softmax (computed in double) */
static void log_softmax_rows(float *x, int rows, int V, double *tmp) {
    for (int r = 0; r < rows; r++) {
        cpu_log_softmax(tmp, x + (size_t)r * V, V);
        for (int i = 0; i < V; i++) x[(size_t)r * V + i] = (float)tmp[i];
    }
}

int llava_classifier_prompt_ids(const llava_classifier *c, int n_feats, int **ids, int *n, llava_err *err) {
    return llava_expand_image_tokens(ids, n, c->prompt_ids, c->n_prompt, c->m->cfg.image_token_index, 1, &n_feats, err);
}

int llava_classify_pixels(double *probs, double *scores, const llava_classifier *c, const float *pixels, int n_tiles,
                          int H, int W, llava_err *err) {
    const llava_model *m = c->m;
    const int Ht = m->cfg.text.hidden, V = m->cfg.text.vocab;
    float *feats = NULL, *x = NULL, *logits = NULL, *tree_logits = NULL;
    double *lsm = NULL;
    int n_feats = 0, *ids = NULL, n_ids = 0, rc = -1;
    mistral_cache cache = {0};
    if (llava_image_features(&feats, &n_feats, m, pixels, n_tiles, H, W, err)) goto done;
    if (llava_classifier_prompt_ids(c, n_feats, &ids, &n_ids, err)) goto done;
    const int ni = c->n_inner;
    if (mistral_cache_init(&cache, &m->cfg.text, n_ids + ni, err)) goto done;
    x = llava_try_malloc(sizeof(float) * (size_t)(n_ids > ni ? n_ids : ni) * Ht, "embeddings", err);
    logits = x ? llava_try_malloc(sizeof(float) * (size_t)V, "logits", err) : NULL;
    tree_logits = logits ? llava_try_malloc(sizeof(float) * (size_t)ni * V, "label logits", err) : NULL;
    lsm = tree_logits ? llava_try_malloc(sizeof(double) * (size_t)V * 2, "log-softmax", err) : NULL;
    if (!lsm) goto done;
    mistral_embed(x, &m->lm, ids, n_ids);
    llava_scatter_image_features(x, m, ids, n_ids, &feats, &n_feats, 1);
    if (mistral_forward(logits, &m->lm, &cache, x, n_ids, 0, err)) goto done;
    mistral_embed(x, &m->lm, c->itok, ni); /* ni >= 1: every continuation has an answer token before EOS */
    if (mistral_forward_tree(tree_logits, &m->lm, &cache, x, ni, c->ipar, err)) goto done;
    cpu_log_softmax(lsm, logits, V);
    log_softmax_rows(tree_logits, ni, V, lsm + V);
    score_labels(probs, scores, c, lsm, tree_logits);
    rc = 0;
done:
    mistral_cache_free(&cache);
    free(feats), free(x), free(logits), free(tree_logits), free(lsm), free(ids);
    return rc;
}

int llava_classify_pixels_gpu(double *probs, double *scores, const llava_classifier *c, llava_gpu *gpu,
                              const float *pixels, int n_tiles, int H, int W, llava_err *err) {
    int *ids = NULL, n_ids = 0, rc = -1;
    llava_gpu_step *st = NULL;
    if (llava_classifier_prompt_ids(c, llava_model_image_tokens(c->m, H, W), &ids, &n_ids, err) ||
        llava_gpu_step_new(&st, gpu, err))
        goto done;
    int added = llava_gpu_step_add(st, pixels, n_tiles, H, W, ids, n_ids, c->tok, c->par, c->n_nodes, err);
    if (added == 1) llava_errf(err, "one image does not fit an empty step");
    if (added || llava_gpu_step_launch(st, err)) goto done;
    llava_gpu_step_wait(st);
    llava_classifier_score_nodes(c, llava_gpu_step_result(st, 0), probs, scores);
    rc = 0;
done:
    llava_gpu_step_free(st);
    free(ids);
    return rc;
}

int llava_classify(double *probs, double *scores, const llava_classifier *c, const llava_image *img, llava_err *err) {
    float *pixels = NULL;
    int n_tiles = 0;
    if (llava_preprocess(&pixels, &n_tiles, img, &c->m->pp, err)) return -1;
    int rc = llava_classify_pixels(probs, scores, c, pixels, n_tiles, img->h, img->w, err);
    free(pixels);
    return rc;
}

void llava_classify_config_free(llava_classify_config *c) {
    for (int i = 0; i < c->n_labels; i++) free(c->labels[i]);
    free(c->labels);
    free(c->question);
    free(c->answer);
    memset(c, 0, sizeof *c);
}

int llava_classify_config_load(llava_classify_config *c, const char *model_dir, llava_err *err) {
    memset(c, 0, sizeof *c);
    char *path = llava_path_join(model_dir, LLAVA_CLASSIFY_CONFIG);
    if (!llava_file_exists(path)) {
        free(path);
        return 0;
    }
    int rc = -1;
    cJSON *root = llava_json_load(path, err);
    if (!root) goto done;
    if (!cJSON_IsObject(root)) {
        llava_errf(err, "%s: expected a JSON object with labels / question / answer", path);
        goto done;
    }
    const char *q = NULL, *a = NULL;
    if (llava_json_str(root, "question", NULL, &q, path, err) || llava_json_str(root, "answer", NULL, &a, path, err))
        goto done;
    c->question = q ? xstrdup(q) : NULL;
    c->answer = a ? xstrdup(a) : NULL;
    const cJSON *labels = cJSON_GetObjectItemCaseSensitive(root, "labels");
    if (labels && !cJSON_IsNull(labels)) {
        if (!cJSON_IsArray(labels)) {
            llava_errf(err, "%s: \"labels\" must be a list of strings", path);
            goto done;
        }
        int n = cJSON_GetArraySize(labels);
        c->labels = xcalloc((size_t)(n ? n : 1), sizeof(char *));
        const cJSON *it;
        cJSON_ArrayForEach(it, labels) {
            if (!cJSON_IsString(it)) {
                llava_errf(err, "%s: \"labels\" must be a list of strings", path);
                goto done;
            }
            c->labels[c->n_labels++] = xstrdup(it->valuestring);
        }
    }
    rc = 0;
done:
    if (rc) llava_classify_config_free(c);
    cJSON_Delete(root);
    free(path);
    return rc;
}
