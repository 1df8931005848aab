/* prefetch.c — bounded decode + preprocess pool (see prefetch.h). */
#include "batch/prefetch.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "image/image.h"
#include "util/mem.h"

struct llava_prefetch {
    llava_prefetch_params prm;
    pthread_t *th;
    int n_th;
    pthread_mutex_t mu;
    pthread_cond_t can_work; /* a slot freed, or stop */
    pthread_cond_t can_take; /* an item queued, or the last worker finished */
    llava_prefetch_item *q;  /* ring of depth items */
    int q_head, q_len;
    int next;                /* next todo position to hand out */
    int busy;                /* items being decoded */
    int stop;
};

static void decode_one(llava_prefetch *p, int input, llava_prefetch_item *it) {
    memset(it, 0, sizeof *it);
    it->input = input;
    llava_err err = {{0}};
    llava_image img = {0};
    const llava_input *in = &p->prm.inputs->v[input];
    double t0 = llava_now();
    int bad = llava_image_load(&img, in->path, p->prm.max_pixels, &err) != 0;
    it->t_decode = llava_now() - t0;
    if (bad) {
        snprintf(it->error, sizeof it->error, "%s", err.msg[0] ? err.msg : "cannot decode the image");
        return;
    }
    it->H = img.h;
    it->W = img.w;
    t0 = llava_now();
    bad = llava_preprocess(&it->pixels, &it->n_tiles, &img, p->prm.pp, &err) != 0;
    it->t_preprocess = llava_now() - t0;
    if (bad) {
        snprintf(it->error, sizeof it->error, "%s: %s", in->path, err.msg[0] ? err.msg : "preprocessing failed");
        it->pixels = NULL;
    }
    llava_image_free(&img);
}

static void *worker(void *arg) {
    llava_prefetch *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (!p->stop && p->next < p->prm.n_todo && p->q_len + p->busy >= p->prm.depth)
            pthread_cond_wait(&p->can_work, &p->mu);
        if (p->stop || p->next >= p->prm.n_todo) {
            pthread_cond_broadcast(&p->can_take); /* the consumer may be waiting for the end */
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        int input = p->prm.todo[p->next++];
        p->busy++;
        pthread_mutex_unlock(&p->mu);

        llava_prefetch_item it;
        decode_one(p, input, &it);

        pthread_mutex_lock(&p->mu);
        p->busy--;
        CHECK(p->q_len < p->prm.depth);
        p->q[(p->q_head + p->q_len) % p->prm.depth] = it;
        p->q_len++;
        pthread_cond_signal(&p->can_take);
        pthread_mutex_unlock(&p->mu);
    }
}

int llava_prefetch_start(llava_prefetch **out, const llava_prefetch_params *params, llava_err *err) {
    *out = NULL;
    if (params->threads < 1 || params->depth < 1 || params->n_todo < 0)
        return llava_errf(err, "prefetch: threads and depth must be at least 1");
    llava_prefetch *p = xcalloc(1, sizeof *p);
    p->prm = *params;
    p->q = xcalloc((size_t)params->depth, sizeof *p->q);
    p->th = xcalloc((size_t)params->threads, sizeof *p->th);
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->can_work, &ca);
    pthread_cond_init(&p->can_take, &ca);
    pthread_condattr_destroy(&ca);
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    for (int i = 0; i < params->threads; i++) {
        int rc = pthread_create(&p->th[i], NULL, worker, p);
        if (rc != 0) {
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            llava_prefetch_stop(p);
            return llava_errf(err, "cannot start decode thread %d: %s", i, strerror(rc));
        }
        p->n_th++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    *out = p;
    return 0;
}

int llava_prefetch_next(llava_prefetch *p, llava_prefetch_item *item, double timeout_s) {
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    double t = (double)dl.tv_sec + 1e-9 * (double)dl.tv_nsec + (timeout_s > 0 ? timeout_s : 0);
    dl.tv_sec = (time_t)t;
    dl.tv_nsec = (long)((t - (double)dl.tv_sec) * 1e9);
    pthread_mutex_lock(&p->mu);
    int rc;
    for (;;) {
        if (p->q_len > 0) {
            *item = p->q[p->q_head];
            p->q_head = (p->q_head + 1) % p->prm.depth;
            p->q_len--;
            pthread_cond_signal(&p->can_work);
            rc = 1;
            break;
        }
        if ((p->next >= p->prm.n_todo || p->stop) && p->busy == 0) {
            rc = -1;
            break;
        }
        if (pthread_cond_timedwait(&p->can_take, &p->mu, &dl) == ETIMEDOUT && p->q_len == 0) {
            rc = 0;
            break;
        }
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

void llava_prefetch_item_free(llava_prefetch_item *item) {
    free(item->pixels);
    item->pixels = NULL;
}

void llava_prefetch_stop(llava_prefetch *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->can_work);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_th; i++) pthread_join(p->th[i], NULL);
    while (p->q_len > 0) {
        llava_prefetch_item_free(&p->q[p->q_head]);
        p->q_head = (p->q_head + 1) % p->prm.depth;
        p->q_len--;
    }
    pthread_cond_destroy(&p->can_work);
    pthread_cond_destroy(&p->can_take);
    pthread_mutex_destroy(&p->mu);
    free(p->q);
    free(p->th);
    free(p);
}
