/* generate.c — prefill + decode loop with greedy / temperature / top-p sampling (see generate.h). */
#include "engine/generate.h"

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

int llava_generate(llava_gen_result *res, const llava_model *m, llava_gpu *gpu, const int *ids, int n_ids,
                   float *const *feats,
                   const int *n_feats, int n_images, const llava_gen_params *p, llava_token_cb cb, void *ud,
                   llava_err *err) {
    memset(res, 0, sizeof *res);
    const int H = m->cfg.text.hidden, V = m->cfg.text.vocab, img = m->cfg.image_token_index;
    if (n_ids <= 0) return llava_errf(err, "empty prompt");
    if (!gpu && !m->cpu_weights) return llava_errf(err, "the model was loaded for the GPU only (no CPU weights)");
    for (int i = 0; i < n_ids; i++)
        if (ids[i] < 0 || ids[i] >= V) return llava_errf(err, "token id %d is outside the vocabulary (%d)", ids[i], V);
    int max_new = p->max_tokens < 0 ? 0 : p->max_tokens;
    mistral_cache cache = {0};
    if (!gpu && mistral_cache_init(&cache, &m->cfg.text, n_ids + max_new + 1, err)) return -1;
    float *x = llava_try_malloc(sizeof(float) * (size_t)(gpu ? 1 : n_ids) * H, "prompt embeddings", err);
    float *logits = x ? llava_try_malloc(sizeof(float) * (size_t)V, "logits", err) : NULL;
    double *lsm = logits ? llava_try_malloc(sizeof(double) * (size_t)V, "log-softmax", err) : NULL;
    prob_id *buf = lsm ? llava_try_malloc(sizeof(prob_id) * (size_t)V, "sampling", err) : NULL;
    int rc = -1;
    if (!buf) goto done;
    if (!gpu) mistral_embed(x, &m->lm, ids, n_ids);
    /* masked_scatter: image positions, in order, take the concatenated image features */
    {
        int im = 0, f = 0, n_img_pos = 0, n_feat_total = 0;
        for (int i = 0; i < n_images; i++) n_feat_total += n_feats[i];
        for (int i = 0; i < n_ids; i++) n_img_pos += ids[i] == img;
        if (!gpu && n_img_pos != n_feat_total) {
            llava_errf(err, "image features and image tokens do not match: tokens: %d, features: %d", n_img_pos,
                       n_feat_total);
            goto done;
        }
        for (int i = 0; i < n_ids && !gpu; i++) {
            if (ids[i] != img) continue;
            while (im < n_images && f >= n_feats[im]) im++, f = 0;
            memcpy(x + (size_t)i * H, feats[im] + (size_t)f * H, sizeof(float) * H);
            f++;
        }
    }
    res->n_prompt = n_ids;
    res->vocab = V;
    res->tokens = xcalloc((size_t)(max_new ? max_new : 1), sizeof(llava_token_info));
    res->prompt_logits = xmalloc(sizeof(float) * (size_t)V);
    double t0 = llava_now();
    if (gpu ? llava_gpu_prefill(gpu, ids, n_ids, logits, err) : mistral_forward(logits, &m->lm, &cache, x, n_ids, 0, err))
        goto done;
    memcpy(res->prompt_logits, logits, sizeof(float) * (size_t)V);
    res->t_prefill = llava_now() - t0;
    t0 = llava_now();
    uint64_t rng = p->seed;
    res->finish_reason = "length";
    for (int step = 0; step < max_new; step++) {
        int id = pick(logits, V, p, &rng, buf);
        fill_info(&res->tokens[res->n_gen], id, logits, V, p->top_logprobs, lsm, buf);
        res->n_gen++;
        if (cb && cb(ud, res)) {
            res->finish_reason = "stop";
            break;
        }
        if (is_eos(m, id)) {
            res->finish_reason = "stop";
            break;
        }
        if (step + 1 == max_new) break;
        if (gpu) {
            if (llava_gpu_decode(gpu, id, logits, err)) goto done;
        } else {
            mistral_embed(x, &m->lm, &id, 1);
            if (mistral_forward(logits, &m->lm, &cache, x, 1, 0, err)) goto done;
        }
    }
    res->t_decode = llava_now() - t0;
    rc = 0;
done:
    if (rc) llava_gen_result_free(res);
    mistral_cache_free(&cache);
    free(x), free(logits), free(lsm), free(buf);
    return rc;
}

void llava_gen_result_free(llava_gen_result *r) {
    free(r->tokens);
    free(r->prompt_logits);
    memset(r, 0, sizeof *r);
}
