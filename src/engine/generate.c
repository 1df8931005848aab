/* generate.c — generation (see generate.h): sampling (greedy / temperature / top-p), and the
 * generator that runs many sequences in shared steps: admission into KV-cache ranges, prompt
 * chunks, one token per running sequence per step, ends. llava_generate is one sequence through it.
 */
#include "engine/generate.h"

#include <limits.h>
#include <math.h>
#include <string.h>

#include "backend/cpu/ops.h"
#include "util/mem.h"

void llava_gen_params_default(llava_gen_params *p) {
    p->max_tokens = 256;
    p->temperature = 0.0f;
    p->top_p = 1.0f;
    p->seed = 0;
    p->top_logprobs = 0;
}

static uint64_t rng_next(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static double rng_uniform(uint64_t *s) { return (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0); }

typedef struct {
    double p;
    int id;
} prob_id;

static int cmp_prob_desc(const void *a, const void *b) {
    const prob_id *x = a, *y = b;
    if (x->p != y->p) return x->p < y->p ? 1 : -1;
    return x->id - y->id;
}

static int pick(const float *logits, int V, const llava_gen_params *p, uint64_t *rng, prob_id *buf) {
    if (p->temperature <= 0) {
        int best = 0;
        for (int i = 1; i < V; i++)
            if (logits[i] > logits[best]) best = i;
        return best;
    }
    double mx = -INFINITY;
    for (int i = 0; i < V; i++)
        if (logits[i] > mx) mx = logits[i];
    double sum = 0;
    for (int i = 0; i < V; i++) {
        buf[i].p = exp(((double)logits[i] - mx) / p->temperature);
        buf[i].id = i;
        sum += buf[i].p;
    }
    int n = V;
    if (p->top_p < 1.0f) {
        qsort(buf, (size_t)V, sizeof *buf, cmp_prob_desc);
        double cum = 0;
        for (n = 0; n < V;) {
            cum += buf[n].p / sum;
            n++;
            if (cum >= p->top_p) break;
        }
        sum = 0;
        for (int i = 0; i < n; i++) sum += buf[i].p;
    }
    double r = rng_uniform(rng) * sum;
    for (int i = 0; i < n; i++) {
        r -= buf[i].p;
        if (r < 0) return buf[i].id;
    }
    return buf[n - 1].id;
}

static void fill_info(llava_token_info *t, int id, const float *logits, int V, int k, double *lsm, prob_id *buf) {
    cpu_log_softmax(lsm, logits, V);
    t->id = id;
    t->logprob = lsm[id];
    t->n_top = 0;
    if (k <= 0) return;
    for (int i = 0; i < V; i++) {
        buf[i].p = lsm[i];
        buf[i].id = i;
    }
    if (k > V) k = V;
    /* partial selection: k passes are fine for k <= 20 */
    for (int j = 0; j < k; j++) {
        int best = j;
        for (int i = j + 1; i < V; i++)
            if (buf[i].p > buf[best].p || (buf[i].p == buf[best].p && buf[i].id < buf[best].id)) best = i;
        prob_id tmp = buf[j];
        buf[j] = buf[best];
        buf[best] = tmp;
        t->top_ids[j] = buf[j].id;
        t->top_logprobs[j] = buf[j].p;
    }
    t->n_top = k;
}

static int is_eos(const llava_model *m, int id) {
    for (int i = 0; i < m->cfg.n_eos; i++)
        if (m->cfg.eos_ids[i] == id) return 1;
    return 0;
}

/* ================================ the generator ============================================= */

typedef struct gen_seq {
    llava_gen_request r;
    llava_gen_done_cb done;
    void *done_ud;
    llava_gen_result res;
    uint64_t rng;
    int max_new;          /* new tokens at most (max_tokens cut to the context) */
    int cap;              /* KV positions it may use: n_ids + max_new */
    int fed;              /* prompt tokens prefilled */
    int feat_done;        /* image features consumed (image tokens among the first fed) */
    int len;              /* tokens in its cache */
    int next;             /* sampled token to feed at the next step */
    int base;             /* GPU: first row of its KV-cache range */
    int *img_first;       /* (n_images + 1) feature index where image i starts; [n_images] = total */
    mistral_cache cache;  /* CPU */
    double t_admit, t_first;
    struct gen_seq *next_seq;
} gen_seq;

struct llava_generator {
    const llava_model *m;
    llava_gpu *gpu;
    int max_seqs, ctx;
    int max_rows;         /* GPU: new tokens per step (<= step_tokens) */
    gen_seq *wait_head, *wait_tail;
    gen_seq **run;        /* running, in admission order */
    int n_run, n_wait;
    float *logits;        /* (max_seqs, V) */
    double *lsm;          /* (V) */
    prob_id *buf;         /* (V) */
    /* GPU step scratch */
    int *base, *len, *n_new, *slot, *feat_end; /* per entry of the step (max_seqs) */
    int *ids, *img_rows;                        /* per row (step_tokens) */
    gen_seq **ent;
};

int llava_generator_new(llava_generator **out, const llava_model *m, llava_gpu *gpu, int max_seqs, llava_err *err) {
    *out = NULL;
    if (!gpu && !m->cpu_weights) return llava_errf(err, "the model was loaded for the GPU only (no CPU weights)");
    llava_generator *b = xcalloc(1, sizeof *b);
    b->m = m;
    b->gpu = gpu;
    if (max_seqs <= 0) max_seqs = gpu ? 64 : 4;
    if (max_seqs > LLAVA_GPU_MAX_SEQS) max_seqs = LLAVA_GPU_MAX_SEQS;
    b->max_seqs = max_seqs;
    b->ctx = m->cfg.text.max_pos > 0 ? m->cfg.text.max_pos : INT_MAX / 2;
    if (gpu) {
        const llava_gpu_info *gi = llava_gpu_get_info(gpu);
        if (gi->kv_tokens < b->ctx) b->ctx = gi->kv_tokens;
    }
    const int V = m->cfg.text.vocab;
    b->run = xcalloc((size_t)max_seqs, sizeof *b->run);
    b->ent = xcalloc((size_t)max_seqs, sizeof *b->ent);
    b->logits = llava_try_malloc(sizeof(float) * (size_t)max_seqs * V, "logits", err);
    b->lsm = b->logits ? llava_try_malloc(sizeof(double) * (size_t)V, "log-softmax", err) : NULL;
    b->buf = b->lsm ? llava_try_malloc(sizeof(prob_id) * (size_t)V, "sampling", err) : NULL;
    if (!b->buf) {
        llava_generator_free(b);
        return -1;
    }
    if (gpu) {
        int A = llava_gpu_get_info(gpu)->step_tokens;
        b->base = xmalloc(sizeof(int) * (size_t)max_seqs * 5);
        b->len = b->base + max_seqs, b->n_new = b->len + max_seqs, b->slot = b->n_new + max_seqs;
        b->feat_end = b->slot + max_seqs;
        b->ids = xmalloc(sizeof(int) * (size_t)A * 2);
        b->img_rows = b->ids + A;
        b->max_rows = A;
    }
    *out = b;
    return 0;
}

static void seq_free(gen_seq *q) {
    llava_gen_result_free(&q->res);
    mistral_cache_free(&q->cache);
    free(q->img_first);
    free(q);
}

/* Ends q (err NULL: success) and frees it; the caller has taken it out of its list. */
static void seq_end(gen_seq *q, const char *finish, const llava_err *err) {
    double now = llava_now();
    if (q->t_first > 0) q->res.t_decode = now - q->t_first;
    else if (q->t_admit > 0) q->res.t_prefill = now - q->t_admit;
    if (finish) q->res.finish_reason = finish;
    if (!q->res.finish_reason) q->res.finish_reason = "stop";
    q->done(q->done_ud, &q->res, err);
    seq_free(q);
}

int llava_generator_add(llava_generator *b, const llava_gen_request *r, llava_gen_done_cb done, void *done_ud,
                        llava_err *err) {
    const llava_model *m = b->m;
    const int V = m->cfg.text.vocab, img = m->cfg.image_token_index;
    if (r->n_ids <= 0) return llava_errf(err, "empty prompt");
    if (r->n_ids >= b->ctx)
        return llava_errf(err, "the prompt has %d tokens; the context holds %d", r->n_ids, b->ctx);
    int n_img_tok = 0;
    for (int i = 0; i < r->n_ids; i++) {
        if (r->ids[i] < 0 || r->ids[i] >= V)
            return llava_errf(err, "token id %d is outside the vocabulary (%d)", r->ids[i], V);
        n_img_tok += r->ids[i] == img;
    }
    gen_seq *q = xcalloc(1, sizeof *q);
    q->img_first = xmalloc(sizeof(int) * (size_t)(r->n_images + 1));
    int f = 0;
    for (int i = 0; i < r->n_images; i++) {
        q->img_first[i] = f;
        f += llava_model_image_tokens(m, r->images[i].H, r->images[i].W);
    }
    q->img_first[r->n_images] = f;
    if (f != n_img_tok) {
        seq_free(q);
        return llava_errf(err, "image features and image tokens do not match: tokens: %d, features: %d", n_img_tok, f);
    }
    q->r = *r;
    q->done = done, q->done_ud = done_ud;
    q->rng = r->params.seed;
    int max_new = r->params.max_tokens < 0 ? 0 : r->params.max_tokens;
    if (max_new > b->ctx - r->n_ids) max_new = b->ctx - r->n_ids;
    q->max_new = max_new;
    q->cap = r->n_ids + max_new;
    q->res.n_prompt = r->n_ids;
    q->res.vocab = V;
    q->res.finish_reason = "length";
    q->res.tokens = xcalloc((size_t)(max_new ? max_new : 1), sizeof(llava_token_info));
    q->res.prompt_logits = xmalloc(sizeof(float) * (size_t)V);
    if (b->wait_tail) b->wait_tail->next_seq = q;
    else b->wait_head = q;
    b->wait_tail = q;
    b->n_wait++;
    return 0;
}

void llava_generator_set_max_rows(llava_generator *b, int rows) {
    if (!b->gpu) return;
    int A = llava_gpu_get_info(b->gpu)->step_tokens;
    b->max_rows = rows <= 0 || rows > A ? A : rows < b->max_seqs ? b->max_seqs : rows;
}

int llava_generator_running(const llava_generator *b) { return b->n_run; }
int llava_generator_waiting(const llava_generator *b) { return b->n_wait; }

/* GPU: the lowest free range of cap rows of the KV cache (first fit), or -1. */
static int kv_find(const llava_generator *b, int cap) {
    const int C = llava_gpu_get_info(b->gpu)->kv_tokens;
    int at = 0;
    for (;;) {
        int moved = 0;
        for (int i = 0; i < b->n_run; i++) {
            const gen_seq *o = b->run[i];
            if (o->base < at + cap && at < o->base + o->cap) at = o->base + o->cap, moved = 1;
        }
        if (!moved) break;
    }
    return at + cap <= C ? at : -1;
}

/* Moves waiting sequences (FIFO) into the running set while a slot (and on the GPU a KV range) is
 * free. A sequence whose CPU cache cannot be allocated ends with that error. */
static void admit(llava_generator *b) {
    /* sequences whose client left end before they cost a prefill */
    for (gen_seq **pp = &b->wait_head, *prev = NULL; *pp;) {
        gen_seq *q = *pp;
        if (!(q->r.gone && q->r.gone(q->r.ud))) {
            prev = q, pp = &q->next_seq;
            continue;
        }
        *pp = q->next_seq;
        if (b->wait_tail == q) b->wait_tail = prev;
        b->n_wait--;
        seq_end(q, "stop", NULL);
    }
    while (b->wait_head && b->n_run < b->max_seqs) {
        gen_seq *q = b->wait_head;
        if (b->gpu) {
            int at = kv_find(b, q->cap);
            if (at < 0) break;
            q->base = at;
        }
        b->wait_head = q->next_seq;
        if (!b->wait_head) b->wait_tail = NULL;
        q->next_seq = NULL;
        b->n_wait--;
        q->t_admit = llava_now();
        llava_err e = {{0}};
        if (!b->gpu && mistral_cache_init(&q->cache, &b->m->cfg.text, q->cap + 1, &e)) {
            seq_end(q, "stop", &e);
            continue;
        }
        b->run[b->n_run++] = q;
    }
}

/* Takes the token sampled from logits (V) of q's last position; returns 1 when q has ended (and
 * was freed: the caller drops it from the running set). */
static int emit(llava_generator *b, gen_seq *q, const float *logits, int batch) {
    const int V = b->m->cfg.text.vocab;
    llava_gen_result *res = &q->res;
    if (batch > res->batch) res->batch = batch;
    if (q->t_first == 0) {
        memcpy(res->prompt_logits, logits, sizeof(float) * (size_t)V);
        q->t_first = llava_now();
        res->t_prefill = q->t_first - q->t_admit;
        if (q->max_new == 0) {
            seq_end(q, "length", NULL);
            return 1;
        }
    }
    int id = pick(logits, V, &q->r.params, &q->rng, b->buf);
    fill_info(&res->tokens[res->n_gen], id, logits, V, q->r.params.top_logprobs, b->lsm, b->buf);
    res->n_gen++;
    if ((q->r.on_token && q->r.on_token(q->r.ud, res)) || is_eos(b->m, id)) {
        seq_end(q, "stop", NULL);
        return 1;
    }
    if (res->n_gen == q->max_new) {
        seq_end(q, "length", NULL);
        return 1;
    }
    q->next = id;
    return 0;
}

/* drops the running sequences marked NULL, keeping the order of the others */
static void compact(llava_generator *b) {
    int k = 0;
    for (int i = 0; i < b->n_run; i++)
        if (b->run[i]) b->run[k++] = b->run[i];
    b->n_run = k;
}

/* CPU: every running sequence in turn, the whole prompt of a new one at once. */
static int step_cpu(llava_generator *b, llava_err *err) {
    const llava_model *m = b->m;
    const int H = m->cfg.text.hidden;
    const int batch = b->n_run;
    int failed = 0;
    for (int i = 0; i < b->n_run; i++) {
        gen_seq *q = b->run[i];
        llava_err e = {{0}};
        int n = q->fed < q->r.n_ids ? q->r.n_ids : 1;
        float *x = llava_try_malloc(sizeof(float) * (size_t)n * H, "prompt embeddings", &e);
        int rc = x ? 0 : -1;
        if (!rc && q->fed < q->r.n_ids) {
            const int ni = q->r.n_images;
            float **feats = xcalloc((size_t)(ni ? ni : 1), sizeof *feats);
            int *nf = xcalloc((size_t)(ni ? ni : 1), sizeof *nf);
            double t0 = llava_now();
            for (int k = 0; k < ni && !rc; k++) {
                const llava_gen_image *im = &q->r.images[k];
                rc = llava_image_features(&feats[k], &nf[k], m, im->pixels, im->n_tiles, im->H, im->W, &e);
            }
            q->res.t_vision = llava_now() - t0;
            if (!rc) {
                mistral_embed(x, &m->lm, q->r.ids, n);
                llava_scatter_image_features(x, m, q->r.ids, n, feats, nf, ni);
            }
            for (int k = 0; k < ni; k++) free(feats[k]);
            free(feats), free(nf);
        } else if (!rc) {
            mistral_embed(x, &m->lm, &q->next, 1);
        }
        if (!rc) rc = mistral_forward(b->logits, &m->lm, &q->cache, x, n, 0, &e);
        free(x);
        if (rc) {
            seq_end(q, NULL, &e);
            b->run[i] = NULL;
            *err = e;
            failed = 1;
            continue;
        }
        q->fed = q->r.n_ids;
        q->len += n;
        if (emit(b, q, b->logits, batch)) b->run[i] = NULL;
    }
    compact(b);
    return failed ? -1 : 0;
}

/* GPU: one llava_gpu_extend over the running sequences: one token for each decoding one, then
 * prompt chunks of new ones while the step has rows (and room for image features). Only the first
 * chunk of a step may start inside an image (its features are encoded whole, the call skips the
 * part already fed); a chunk cut by the step's end stops before an image that starts inside it. */
static int step_gpu(llava_generator *b, llava_err *err) {
    const llava_model *m = b->m;
    const int V = m->cfg.text.vocab, img = m->cfg.image_token_index;
    const int A = llava_gpu_get_info(b->gpu)->step_tokens, R = b->max_rows;
    int S = 0, rows = 0, n_img = 0, feat_skip = 0, enc = 0;
    for (int i = 0; i < b->n_run; i++) {
        gen_seq *q = b->run[i];
        if (q->fed < q->r.n_ids) continue;
        b->ent[S] = q, b->slot[S] = i, b->feat_end[S] = q->feat_done;
        b->base[S] = q->base, b->len[S] = q->len, b->n_new[S] = 1;
        b->ids[rows++] = q->next;
        S++;
    }
    llava_err e = {{0}};
    int failed = -1; /* run index of a sequence whose image could not be encoded */
    for (int i = 0; i < b->n_run && rows < R; i++) {
        gen_seq *q = b->run[i];
        const int n_ids = q->r.n_ids;
        if (q->fed >= n_ids) continue;
        int end = q->fed + (n_ids - q->fed < R - rows ? n_ids - q->fed : R - rows);
        if (end < n_ids && q->r.ids[end] == img && q->r.ids[end - 1] == img) {
            int st = end - 1;
            while (st > q->fed && q->r.ids[st - 1] == img) st--;
            if (st > q->fed) end = st;
        }
        const int fa = q->feat_done;
        int fb = fa;
        for (int p = q->fed; p < end; p++) fb += q->r.ids[p] == img;
        /* the images overlapping features [fa, fb), encoded whole */
        int need = 0, k0 = -1;
        for (int k = 0; k < q->r.n_images && fb > fa; k++) {
            if (q->img_first[k + 1] <= fa || q->img_first[k] >= fb) continue;
            if (k0 < 0) k0 = k;
            need += q->img_first[k + 1] - q->img_first[k];
        }
        if (k0 >= 0 && q->img_first[k0] < fa && enc > 0) break; /* a mid-image start must come first */
        if (enc + need > A) {
            if (enc == 0) { /* alone in the step and still too large */
                llava_errf(&e, "an image of %d tokens does not fit a step of %d tokens (--step-tokens)", need, A);
                failed = i;
            }
            break;
        }
        double t0 = llava_now();
        for (int k = k0; k >= 0 && k < q->r.n_images && q->img_first[k] < fb && failed < 0; k++) {
            const llava_gen_image *im = &q->r.images[k];
            int nf = 0;
            if (llava_gpu_encode_image(b->gpu, im->pixels, im->n_tiles, im->H, im->W, &nf, &e)) failed = i;
        }
        if (failed >= 0) break;
        q->res.t_vision += llava_now() - t0;
        if (k0 >= 0 && enc == 0) feat_skip = fa - q->img_first[k0];
        enc += need;
        for (int p = q->fed; p < end; p++) {
            if (q->r.ids[p] == img) b->img_rows[n_img++] = rows;
            b->ids[rows++] = q->r.ids[p];
        }
        b->ent[S] = q, b->slot[S] = i, b->feat_end[S] = fb;
        b->base[S] = q->base, b->len[S] = q->len, b->n_new[S] = end - q->fed;
        S++;
    }
    if (failed >= 0) { /* that sequence ends; the others run at the next step */
        llava_gpu_drop_images(b->gpu);
        seq_end(b->run[failed], NULL, &e);
        b->run[failed] = NULL;
        compact(b);
        *err = e;
        return -1;
    }
    if (S == 0) return 0;
    if (llava_gpu_extend(b->gpu, S, b->base, b->len, b->n_new, b->ids, b->img_rows, n_img, feat_skip, b->logits, &e)) {
        for (int s = 0; s < S; s++) {
            seq_end(b->ent[s], NULL, &e);
            b->run[b->slot[s]] = NULL;
        }
        compact(b);
        *err = e;
        return -1;
    }
    for (int s = 0; s < S; s++) {
        gen_seq *q = b->ent[s];
        q->len += b->n_new[s];
        if (q->fed < q->r.n_ids) q->fed += b->n_new[s];
        q->feat_done = b->feat_end[s];
        if (q->fed < q->r.n_ids) continue; /* more prompt chunks to come */
        if (emit(b, q, b->logits + (size_t)s * V, S)) b->run[b->slot[s]] = NULL;
    }
    compact(b);
    return 0;
}

int llava_generator_step(llava_generator *b, llava_err *err) {
    admit(b);
    if (!b->n_run) return 0;
    return b->gpu ? step_gpu(b, err) : step_cpu(b, err);
}

void llava_generator_free(llava_generator *b) {
    if (!b) return;
    llava_err e = {{0}};
    llava_errf(&e, "the generator was shut down");
    for (int i = 0; i < b->n_run; i++) seq_end(b->run[i], NULL, &e);
    while (b->wait_head) {
        gen_seq *q = b->wait_head;
        b->wait_head = q->next_seq;
        seq_end(q, NULL, &e);
    }
    free(b->run), free(b->ent), free(b->logits), free(b->lsm), free(b->buf), free(b->base), free(b->ids);
    free(b);
}

/* ================================ one request ================================================ */

typedef struct {
    llava_gen_result *out;
    llava_err *err;
    int ended, failed;
} one_ctx;

static void one_done(void *ud, llava_gen_result *res, const llava_err *err) {
    one_ctx *c = ud;
    c->ended = 1;
    if (err) {
        c->failed = 1;
        *c->err = *err;
        return;
    }
    *c->out = *res;
    memset(res, 0, sizeof *res);
}

int llava_generate(llava_gen_result *res, const llava_model *m, llava_gpu *gpu, const llava_gen_request *r,
                   llava_err *err) {
    memset(res, 0, sizeof *res);
    llava_generator *b = NULL;
    if (llava_generator_new(&b, m, gpu, 1, err)) return -1;
    one_ctx c = {res, err, 0, 0};
    int rc = llava_generator_add(b, r, one_done, &c, err);
    while (!rc && !c.ended) llava_generator_step(b, err);
    llava_generator_free(b);
    return rc || c.failed ? -1 : 0;
}

void llava_gen_result_free(llava_gen_result *r) {
    free(r->tokens);
    free(r->prompt_logits);
    memset(r, 0, sizeof *r);
}
