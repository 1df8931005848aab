/* pool.c — timed decode + preprocess threads (see pool.h). */
#include "bench/pool.h"

#include <pthread.h>
#include <string.h>

#include "image/image.h"
#include "util/mem.h"

struct bench_pool {
    char *const *paths;
    int n;
    const llava_preproc_params *pp;
    int depth;
    pthread_t *th;
    int n_th;
    pthread_mutex_t mu;
    pthread_cond_t can_work, can_take;
    bench_item *q;
    int q_head, q_len, next, busy, stop;
};

static void work_one(const bench_pool *p, int i, bench_item *it) {
    memset(it, 0, sizeof *it);
    it->index = i;
    it->t_start = llava_now();
    llava_err err = {{0}};
    llava_image img = {0};
    if (llava_image_load(&img, p->paths[i], LLAVA_DEFAULT_MAX_PIXELS, &err)) {
        snprintf(it->error, sizeof it->error, "%s", err.msg);
        return;
    }
    double t1 = llava_now();
    it->t_decode = t1 - it->t_start;
    it->H = img.h, it->W = img.w;
    if (llava_preprocess(&it->pixels, &it->n_tiles, &img, p->pp, &err)) {
        snprintf(it->error, sizeof it->error, "%s: %s", p->paths[i], err.msg);
        it->pixels = NULL;
    }
    it->t_preprocess = llava_now() - t1;
    llava_image_free(&img);
}

static void *worker(void *arg) {
    bench_pool *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (!p->stop && p->next < p->n && p->q_len + p->busy >= p->depth) pthread_cond_wait(&p->can_work, &p->mu);
        if (p->stop || p->next >= p->n) {
            pthread_cond_broadcast(&p->can_take);
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        int i = p->next++;
        p->busy++;
        pthread_mutex_unlock(&p->mu);
        bench_item it;
        work_one(p, i, &it);
        pthread_mutex_lock(&p->mu);
        p->busy--;
        CHECK(p->q_len < p->depth);
        p->q[(p->q_head + p->q_len) % p->depth] = it;
        p->q_len++;
        pthread_cond_signal(&p->can_take);
        pthread_mutex_unlock(&p->mu);
    }
}

int bench_pool_start(bench_pool **out, char *const *paths, int n, const llava_preproc_params *pp, int threads,
                     int depth, llava_err *err) {
    *out = NULL;
    if (threads < 1 || depth < 1) return llava_errf(err, "decode pool: threads and depth must be at least 1");
    bench_pool *p = xcalloc(1, sizeof *p);
    p->paths = paths, p->n = n, p->pp = pp, p->depth = depth;
    p->q = xcalloc((size_t)depth, sizeof *p->q);
    p->th = xcalloc((size_t)threads, sizeof *p->th);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->can_work, NULL);
    pthread_cond_init(&p->can_take, NULL);
    for (int i = 0; i < threads; i++) {
        int rc = pthread_create(&p->th[i], NULL, worker, p);
        if (rc) {
            bench_pool_stop(p);
            return llava_errf(err, "cannot start decode thread %d: %s", i, strerror(rc));
        }
        p->n_th++;
    }
    *out = p;
    return 0;
}

int bench_pool_next(bench_pool *p, bench_item *it) {
    pthread_mutex_lock(&p->mu);
    int rc;
    for (;;) {
        if (p->q_len > 0) {
            *it = p->q[p->q_head];
            p->q_head = (p->q_head + 1) % p->depth;
            p->q_len--;
            pthread_cond_signal(&p->can_work);
            rc = 1;
            break;
        }
        if ((p->next >= p->n || p->stop) && p->busy == 0) {
            rc = -1;
            break;
        }
        pthread_cond_wait(&p->can_take, &p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

void bench_item_free(bench_item *it) {
    free(it->pixels);
    it->pixels = NULL;
}

void bench_pool_stop(bench_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->can_work);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_th; i++) pthread_join(p->th[i], NULL);
    while (p->q_len > 0) {
        bench_item_free(&p->q[p->q_head]);
        p->q_head = (p->q_head + 1) % p->depth;
        p->q_len--;
    }
    pthread_cond_destroy(&p->can_work);
    pthread_cond_destroy(&p->can_take);
    pthread_mutex_destroy(&p->mu);
    free(p->q);
    free(p->th);
    free(p);
}
