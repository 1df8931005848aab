/* queue.c — bounded FIFO + the engine worker (see queue.h). */
#include "server/queue.h"

#include <string.h>

#include "engine/scheduler.h"
#include "util/mem.h"

struct llava_engine {
    const llava_model *m;
    llava_gpu *gpu;
    llava_sched *sched;  /* classification jobs: batched steps (continuous batching) */
    int max_queue;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    llava_job *head, *tail;
    int n_waiting, running, stopping;
    pthread_t thread;
};

llava_job *llava_job_new(llava_job_kind kind) {
    llava_job *j = xcalloc(1, sizeof *j);
    j->kind = kind;
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    llava_gen_params_default(&j->gp);
    return j;
}

void llava_job_free(llava_job *j) {
    if (!j) return;
    for (int i = 0; i < j->n_images; i++) free(j->images[i].pixels);
    free(j->images);
    free(j->ids);
    for (int i = 0; i < j->n_stop; i++) free(j->stop[i]);
    llava_classifier_free(j->clf);
    free(j->toks);
    free(j->text);
    free(j->probs);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
}

void llava_job_wait(llava_job *j) {
    pthread_mutex_lock(&j->mu);
    while (!j->done) pthread_cond_wait(&j->cv, &j->mu);
    pthread_mutex_unlock(&j->mu);
}

void llava_job_cancel_wait(llava_job *j) {
    pthread_mutex_lock(&j->mu);
    j->cancelled = 1;
    while (!j->done) pthread_cond_wait(&j->cv, &j->mu);
    pthread_mutex_unlock(&j->mu);
}

/* Earliest occurrence of any stop string in text; -1 if none. */
static long find_stop(const llava_job *j, const char *text) {
    long best = -1;
    for (int i = 0; i < j->n_stop; i++) {
        const char *p = strstr(text, j->stop[i]);
        if (p && (best < 0 || p - text < best)) best = p - text;
    }
    return best;
}

/* Bytes of text that later tokens cannot change: hold back an incomplete UTF-8 sequence (decoded as
 * U+FFFD) and a tail that could be the start of a stop string. */
static size_t stable_len(const llava_job *j, const char *text) {
    size_t n = strlen(text);
    if (n >= 3 && !memcmp(text + n - 3, "\xEF\xBF\xBD", 3)) n -= 3;
    size_t hold = 0;
    for (int i = 0; i < j->n_stop; i++) {
        size_t sl = strlen(j->stop[i]);
        for (size_t k = sl > 1 ? sl - 1 : 0; k > hold && k > 0; k--)
            if (k <= n && !memcmp(text + n - k, j->stop[i], k)) {
                hold = k;
                break;
            }
    }
    return n - hold;
}

typedef struct {
    llava_job *job;
    const llava_model *m;
} token_ctx;

/* Decodes toks, cuts the text at a stop string, publishes text/stable. Called with j->mu NOT held
 * by the worker (the only writer of toks/text); takes it to publish. */
static void update_text(llava_job *j, const llava_model *m, int final) {
    int *ids = xmalloc(sizeof(int) * (size_t)(j->n_toks ? j->n_toks : 1));
    for (int i = 0; i < j->n_toks; i++) ids[i] = j->toks[i].id;
    char *text = llava_detokenize(m->tok, ids, j->n_toks, 1);
    free(ids);
    if (!text) text = xstrdup("");
    long cut = find_stop(j, text);
    if (cut >= 0) text[cut] = 0;
    size_t st = (cut >= 0 || final) ? strlen(text) : stable_len(j, text);
    pthread_mutex_lock(&j->mu);
    free(j->text);
    j->text = text;
    if (st > j->stable) j->stable = st;
    if (cut >= 0) j->stopped = 1;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

/* Per-token callback of llava_generate, on the worker thread: publishes the text so far and ends the
 * generation as soon as a stop string has been seen or the client has gone (cancelled). */
static int on_token(void *ud, const llava_gen_result *r) {
    token_ctx *tc = ud;
    llava_job *j = tc->job;
    if (j->stopped) return 1;
    pthread_mutex_lock(&j->mu);
    j->toks[j->n_toks] = r->tokens[r->n_gen - 1];
    j->n_toks++;
    int gone = j->cancelled;
    pthread_mutex_unlock(&j->mu);
    if (gone) return 1; /* nobody reads the rest: free the engine for the others */
    update_text(j, tc->m, 0);
    return j->stopped;
}

static int run_chat(llava_engine *e, llava_job *j, llava_err *err) {
    const llava_model *m = e->m;
    int n = j->n_images, rc = -1;
    float **feats = xcalloc((size_t)(n ? n : 1), sizeof *feats);
    int *n_feats = xcalloc((size_t)(n ? n : 1), sizeof *n_feats);
    llava_gen_result res = {0};
    for (int i = 0; i < n; i++) {
        const llava_job_image *im = &j->images[i];
        if (e->gpu) {
            if (llava_gpu_encode_image(e->gpu, im->pixels, im->n_tiles, im->H, im->W, &n_feats[i], err)) goto done;
        } else if (llava_image_features(&feats[i], &n_feats[i], m, im->pixels, im->n_tiles, im->H, im->W, err))
            goto done;
        if (n_feats[i] != im->n_tokens) {
            llava_errf(err, "image %d: %d features for %d image tokens", i + 1, n_feats[i], im->n_tokens);
            goto done;
        }
    }
    j->toks = xcalloc((size_t)(j->gp.max_tokens > 0 ? j->gp.max_tokens : 1), sizeof *j->toks);
    token_ctx tc = {j, m};
    if (llava_generate(&res, m, e->gpu, j->ids, j->n_ids, feats, n_feats, n, &j->gp, on_token, &tc, err)) goto done;
    update_text(j, m, 1);
    j->finish_reason = j->stopped ? "stop" : res.finish_reason;
    rc = 0;
done:
    llava_gen_result_free(&res);
    for (int i = 0; i < n; i++) free(feats[i]);
    free(feats);
    free(n_feats);
    return rc;
}

/* Publishes the end of a job; j is the submitter's once done is set. */
static void finish_job(llava_job *j, int failed, const llava_err *err) {
    pthread_mutex_lock(&j->mu);
    j->t_end = llava_now();
    j->failed = failed;
    if (failed) j->err = *err;
    if (!j->finish_reason) j->finish_reason = "stop";
    j->done = 1;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

/* the scheduler's callback: a classification job is scored */
static void on_scored(void *user, const llava_sched_result *r) {
    (void)user;
    llava_job *j = r->tag;
    llava_err err = {{0}};
    if (r->error) {
        llava_errf(&err, "%s", r->error);
    } else {
        int n = llava_classifier_n_labels(j->clf);
        j->probs = xmalloc(sizeof(double) * (size_t)n);
        memcpy(j->probs, r->probs, sizeof(double) * (size_t)n);
    }
    finish_job(j, r->error != NULL, &err);
}

static void set_running(llava_engine *e, int chat) {
    pthread_mutex_lock(&e->mu);
    e->running = llava_sched_pending(e->sched) + chat;
    pthread_mutex_unlock(&e->mu);
}

/* Takes every queued job at once: classification jobs join the scheduler's next step; a chat job
 * first lets the classifications before it finish (FIFO), then runs alone. With work in the
 * scheduler and nothing queued, waits for the running step (new jobs join the one after it). */
static void *worker(void *arg) {
    llava_engine *e = arg;
    for (;;) {
        pthread_mutex_lock(&e->mu);
        while (!e->head && !e->stopping && !llava_sched_pending(e->sched)) pthread_cond_wait(&e->cv, &e->mu);
        llava_job *list = e->head;
        if (!list && !llava_sched_pending(e->sched)) { /* stopping and drained */
            pthread_mutex_unlock(&e->mu);
            break;
        }
        e->head = e->tail = NULL;
        e->n_waiting = 0;
        pthread_mutex_unlock(&e->mu);

        llava_err err = {{0}};
        while (list) {
            llava_job *j = list;
            list = j->next;
            j->next = NULL;
            pthread_mutex_lock(&j->mu);
            int skip = j->cancelled;
            j->started = 1;
            pthread_mutex_unlock(&j->mu);
            j->t_start = llava_now();
            if (skip) {
                llava_errf(&err, "cancelled");
                finish_job(j, 1, &err);
                continue;
            }
            if (j->kind == LLAVA_JOB_CLASSIFY) {
                const llava_job_image *im = &j->images[0];
                if (llava_sched_add(e->sched, j->clf, im->pixels, im->n_tiles, im->H, im->W, j, &err))
                    finish_job(j, 1, &err); /* the device failed */
                set_running(e, 0);
                continue;
            }
            if (llava_sched_flush(e->sched, &err)) llava_errf(&err, "the device failed: %s", err.msg);
            set_running(e, 1);
            int failed = run_chat(e, j, &err) != 0;
            finish_job(j, failed, &err);
            set_running(e, 0);
        }
        if (llava_sched_pending(e->sched)) {
            llava_sched_poll(e->sched, 1, &err);
            set_running(e, 0);
        }
    }
    return NULL;
}

int llava_engine_start(llava_engine **out, const llava_model *m, llava_gpu *gpu, int max_queue, llava_err *err) {
    llava_engine *e = xcalloc(1, sizeof *e);
    e->m = m;
    e->gpu = gpu;
    e->max_queue = max_queue < 1 ? 1 : max_queue;
    if (llava_sched_new(&e->sched, m, gpu, on_scored, e, err)) {
        free(e);
        *out = NULL;
        return -1;
    }
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    if (pthread_create(&e->thread, NULL, worker, e)) {
        pthread_mutex_destroy(&e->mu);
        pthread_cond_destroy(&e->cv);
        llava_sched_free(e->sched);
        free(e);
        *out = NULL;
        return llava_errf(err, "cannot start the engine thread");
    }
    *out = e;
    return 0;
}

int llava_engine_submit(llava_engine *e, llava_job *j) {
    pthread_mutex_lock(&e->mu);
    int rc = 0;
    if (e->stopping) rc = -2;
    else if (e->n_waiting >= e->max_queue) rc = -1;
    else {
        j->t_submit = llava_now();
        j->next = NULL;
        if (e->tail) e->tail->next = j;
        else e->head = j;
        e->tail = j;
        e->n_waiting++;
        pthread_cond_signal(&e->cv);
    }
    pthread_mutex_unlock(&e->mu);
    return rc;
}

void llava_engine_load(llava_engine *e, int *waiting, int *running) {
    pthread_mutex_lock(&e->mu);
    *waiting = e->n_waiting;
    *running = e->running;
    pthread_mutex_unlock(&e->mu);
}

void llava_engine_stop(llava_engine *e) {
    if (!e) return;
    pthread_mutex_lock(&e->mu);
    e->stopping = 1;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->thread, NULL);
    llava_sched_free(e->sched);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e);
}
