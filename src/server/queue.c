/* queue.c — bounded FIFO + the engine worker (see queue.h). */
#include "server/queue.h"

#include <string.h>

#include "engine/scheduler.h"
#include "util/mem.h"

struct llava_engine {
    const llava_model *m;
    llava_gpu *gpu;
    llava_sched *sched;  /* classification jobs: batched steps (continuous batching) */
    llava_generator *gen; /* chat jobs: generation steps shared by all running chats */
    int max_queue;
    int max_rows;        /* new tokens per generation step (0: the device's step) */
    int cls_tokens;      /* tokens of the last classification sequence (prompt + labels) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    llava_job *head, *tail;
    int n_waiting, running, stopping;
    int gen_waiting;     /* chat jobs the generator holds but has not started (count as queued) */
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
    llava_gen_image *images;
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

/* Per-token callback of the generator, on the worker thread: publishes the text so far and ends the
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

static void finish_job(llava_job *j, int failed, const llava_err *err);

/* the generator asks before it starts a chat: a client that went away while it waited costs nothing */
static int chat_gone(void *ud) {
    llava_job *j = ((token_ctx *)ud)->job;
    pthread_mutex_lock(&j->mu);
    int gone = j->cancelled;
    pthread_mutex_unlock(&j->mu);
    return gone;
}

/* the generator's end of a chat job */
static void on_chat_done(void *ud, llava_gen_result *res, const llava_err *err) {
    token_ctx *tc = ud;
    llava_job *j = tc->job;
    if (!err) {
        update_text(j, tc->m, 1);
        j->finish_reason = j->stopped ? "stop" : res->finish_reason;
    }
    free(tc->images);
    free(tc);
    finish_job(j, err != NULL, err);
}

/* Hands a chat job to the generator (it joins the running chats at the next step). */
static int add_chat(llava_engine *e, llava_job *j, llava_err *err) {
    token_ctx *tc = xcalloc(1, sizeof *tc);
    tc->job = j, tc->m = e->m;
    tc->images = xcalloc((size_t)(j->n_images ? j->n_images : 1), sizeof *tc->images);
    for (int i = 0; i < j->n_images; i++) {
        const llava_job_image *im = &j->images[i];
        tc->images[i] = (llava_gen_image){im->pixels, im->n_tiles, im->H, im->W};
    }
    j->toks = xcalloc((size_t)(j->gp.max_tokens > 0 ? j->gp.max_tokens : 1), sizeof *j->toks);
    llava_gen_request r = {j->ids, j->n_ids, tc->images, j->n_images, j->gp, on_token, tc, chat_gone};
    if (llava_generator_add(e->gen, &r, on_chat_done, tc, err)) {
        free(tc->images);
        free(tc);
        return -1;
    }
    return 0;
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
    llava_engine *e = user;
    llava_job *j = r->tag;
    if (!r->error) e->cls_tokens = r->prompt_tokens + llava_classifier_trie_size(r->clf);
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

/* publishes the gauges: running = images in the scheduler + chats generating; chats the generator
 * has not started count as waiting (the queue limit covers them) */
static void set_running(llava_engine *e) {
    pthread_mutex_lock(&e->mu);
    e->running = llava_sched_pending(e->sched) + llava_generator_running(e->gen);
    e->gen_waiting = llava_generator_waiting(e->gen);
    pthread_mutex_unlock(&e->mu);
}

/* the classification images one worker round may add while chats generate (0: no limit): about
 * --max-num-batched-tokens tokens, so that classification and generation steps alternate and the
 * chats' time per token stays bounded; with no chat running, classification steps are full */
static int cls_cap(const llava_engine *e) {
    if (!llava_generator_running(e->gen) && !llava_generator_waiting(e->gen)) return 0;
    if (e->max_rows <= 0) return 0;
    int cap = e->max_rows / (e->cls_tokens > 0 ? e->cls_tokens : 2600);
    return cap < 1 ? 1 : cap;
}

/* Puts jobs back at the head of the queue, in order (a round that reached its classification cap). */
static void requeue(llava_engine *e, llava_job *list) {
    if (!list) return;
    int n = 0;
    llava_job *last = list;
    for (llava_job *j = list; j; j = j->next) n++, last = j;
    pthread_mutex_lock(&e->mu);
    last->next = e->head;
    if (!e->head) e->tail = last;
    e->head = list;
    e->n_waiting += n;
    pthread_mutex_unlock(&e->mu);
}

/* One round: takes the queued jobs — classification jobs join the scheduler's next step (at most
 * cls_cap of them while chats generate; the rest wait for the next round), chat jobs the
 * generator's next step; then one generation step (every running chat gets a token, new ones are
 * prefilled), and the scheduler delivers its finished steps (waiting for one only when no chat is
 * running). The device's stream orders the two kinds of step. */
static void *worker(void *arg) {
    llava_engine *e = arg;
    for (;;) {
        int gen = llava_generator_running(e->gen) + llava_generator_waiting(e->gen);
        pthread_mutex_lock(&e->mu);
        while (!e->head && !e->stopping && !llava_sched_pending(e->sched) && !gen) pthread_cond_wait(&e->cv, &e->mu);
        llava_job *list = e->head;
        if (!list && !llava_sched_pending(e->sched) && !gen) { /* stopping and drained */
            pthread_mutex_unlock(&e->mu);
            break;
        }
        e->head = e->tail = NULL;
        e->n_waiting = 0;
        pthread_mutex_unlock(&e->mu);

        llava_err err = {{0}};
        const int cap = cls_cap(e);
        llava_sched_set_max_batch(e->sched, cap);
        for (int n_cls = 0; list;) {
            llava_job *j = list;
            if (cap && j->kind == LLAVA_JOB_CLASSIFY && n_cls == cap) break;
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
                n_cls++;
                if (llava_sched_add(e->sched, j->clf, im->pixels, im->n_tiles, im->H, im->W, j, &err))
                    finish_job(j, 1, &err); /* the device failed */
            } else if (add_chat(e, j, &err)) {
                finish_job(j, 1, &err);
            }
        }
        requeue(e, list);
        set_running(e);
        if (llava_generator_running(e->gen) + llava_generator_waiting(e->gen)) {
            llava_generator_step(e->gen, &err); /* a failure ended its sequences with the message */
            set_running(e);
        }
        if (llava_sched_pending(e->sched)) {
            llava_sched_poll(e->sched, !llava_generator_running(e->gen), &err);
            set_running(e);
        }
    }
    return NULL;
}

int llava_engine_start(llava_engine **out, const llava_model *m, llava_gpu *gpu, int max_queue, int max_seqs,
                       int max_rows, llava_err *err) {
    llava_engine *e = xcalloc(1, sizeof *e);
    e->m = m;
    e->gpu = gpu;
    e->max_queue = max_queue < 1 ? 1 : max_queue;
    if (llava_sched_new(&e->sched, m, gpu, on_scored, e, err)) {
        free(e);
        *out = NULL;
        return -1;
    }
    if (llava_generator_new(&e->gen, m, gpu, max_seqs, err)) {
        llava_sched_free(e->sched);
        free(e);
        *out = NULL;
        return -1;
    }
    llava_generator_set_max_rows(e->gen, max_rows);
    e->max_rows = max_rows;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    if (pthread_create(&e->thread, NULL, worker, e)) {
        pthread_mutex_destroy(&e->mu);
        pthread_cond_destroy(&e->cv);
        llava_sched_free(e->sched);
        llava_generator_free(e->gen);
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
    else if (e->n_waiting + e->gen_waiting >= e->max_queue) rc = -1;
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
    *waiting = e->n_waiting + e->gen_waiting;
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
    llava_generator_free(e->gen);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e);
}
