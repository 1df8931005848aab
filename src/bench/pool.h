/* pool.h — decode + preprocess threads for `llava bench`, with per-image timings.
 *
 * Like batch/prefetch (which `llava classify` uses) but it records, per image, when its decode
 * started and how long llava_image_load and llava_preprocess took, which the benchmark's stage
 * breakdown and latency figures need. Workers take paths in order; at most depth images are
 * decoded or waiting; the consumer receives them in the order they finish.
 * Thread use: one consumer calls next/stop; the pool owns its workers.
 */
#ifndef LLAVA_BENCH_POOL_H
#define LLAVA_BENCH_POOL_H

#include "image/anyres.h"
#include "util/status.h"

typedef struct bench_item {
    int index;          /* into paths */
    float *pixels;      /* (n_tiles, 3, crop, crop) malloc'd; NULL when error is set */
    int n_tiles, H, W;
    double t_start;     /* llava_now() when the worker picked it up */
    double t_decode, t_preprocess; /* seconds */
    char error[512];
} bench_item;

typedef struct bench_pool bench_pool;

/* paths and pp are borrowed until stop. */
int bench_pool_start(bench_pool **out, char *const *paths, int n, const llava_preproc_params *pp, int threads,
                     int depth, llava_err *err);
/* Blocks for the next item: 1 with *it filled (free it with bench_item_free), -1 when all were delivered. */
int bench_pool_next(bench_pool *p, bench_item *it);
void bench_item_free(bench_item *it);
void bench_pool_stop(bench_pool *p);

#endif
