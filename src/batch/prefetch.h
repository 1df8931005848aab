/* prefetch.h — a pool of threads that decode and preprocess the next images while the model works.
 *
 * Workers take inputs in todo order, run llava_image_load + llava_preprocess, and queue the
 * results; the consumer takes them in the order they finish. At most `depth` images are decoded
 * or waiting at any time, so memory stays bounded (depth x the largest preprocessed image) however
 * long the input list is. A failed decode becomes an item with an error message (the run goes on).
 * Workers block SIGINT/SIGTERM so those reach the consumer's thread.
 * Thread use: one consumer thread calls next/stop; the pool owns its workers.
 */
#ifndef LLAVA_BATCH_PREFETCH_H
#define LLAVA_BATCH_PREFETCH_H

#include <stdint.h>

#include "batch/inputs.h"
#include "image/anyres.h"
#include "util/status.h"

typedef struct llava_prefetch_item {
    int input;         /* index into the inputs */
    float *pixels;     /* (n_tiles, 3, crop, crop) malloc'd; NULL when error is set */
    int n_tiles, H, W; /* tiles and the decoded image's size */
    double t_decode, t_preprocess; /* seconds spent in llava_image_load / llava_preprocess (benchmarks) */
    char error[1024];  /* empty on success */
} llava_prefetch_item;

typedef struct llava_prefetch_params {
    const llava_inputs *inputs;
    const int *todo;                /* (n_todo) indices into inputs, borrowed until stop */
    int n_todo;
    const llava_preproc_params *pp; /* borrowed until stop */
    int64_t max_pixels;             /* llava_image_load's limit (<= 0: none) */
    int threads;                    /* workers, >= 1 */
    int depth;                      /* images in flight, >= 1 (2 x threads is plenty) */
} llava_prefetch_params;

typedef struct llava_prefetch llava_prefetch;

int llava_prefetch_start(llava_prefetch **out, const llava_prefetch_params *params, llava_err *err);
/* Waits up to timeout_s for the next item. Returns 1 with *item filled (the caller frees it with
 * llava_prefetch_item_free), 0 on timeout, -1 when every input was delivered. */
int llava_prefetch_next(llava_prefetch *p, llava_prefetch_item *item, double timeout_s);
void llava_prefetch_item_free(llava_prefetch_item *item);
/* Stops the workers (each finishes the image in hand), joins them and frees what is queued. */
void llava_prefetch_stop(llava_prefetch *p);

#endif
