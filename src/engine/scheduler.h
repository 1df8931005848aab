/* scheduler.h — the one scheduler `classify`, `bench` and `serve` share: preprocessed images in,
 * label probabilities out, the device kept full.
 *
 * On a GPU, images are packed into steps (llava_gpu_step: many prompts + label tries in one packed
 * batch, no padding, every tile of the step through the vision tower together). Two steps
 * alternate: while the device runs one, add() fills the other; a full step is launched behind the
 * running one (the stream orders them) before the running one's results are delivered, so the
 * device never waits for the host. poll() launches a partial step when the device is idle — new
 * requests join at the next step (continuous batching for label scoring).
 * On the CPU, add() classifies at once (llava_classify_pixels) and delivers before returning.
 *
 * Results arrive through the callback, on the thread that calls add/poll/flush, in step order
 * (within a step, in add order). Each image may use its own classifier (label set); a classifier
 * must outlive the results of the images that use it. Not thread safe: one thread drives it.
 */
#ifndef LLAVA_SCHEDULER_H
#define LLAVA_SCHEDULER_H

#include "engine/classify.h"

typedef struct llava_sched llava_sched;

typedef struct llava_sched_result {
    void *tag;                /* as given to add */
    const llava_classifier *clf;
    const double *probs;      /* n_labels of clf; NULL when error is set */
    const double *scores;     /* summed log-probabilities per label */
    const char *error;        /* NULL on success */
    int prompt_tokens;        /* the expanded prompt's length */
    int batch;                /* images in the step that computed it */
    double step_ms[3];        /* GPU: that step's device time in vision, decoder, LM head (0 on the CPU) */
    double model_ms;          /* the step's model time: device time on the GPU, wall time on the CPU */
} llava_sched_result;

typedef void (*llava_sched_cb)(void *user, const llava_sched_result *r);

/* gpu NULL: the CPU path. */
int llava_sched_new(llava_sched **out, const llava_model *m, llava_gpu *gpu, llava_sched_cb cb, void *user,
                    llava_err *err);
/* Waits for what is in flight (results are delivered) and frees. */
void llava_sched_free(llava_sched *s);

/* Queues one preprocessed image (pixels from llava_preprocess of an H x W image; copied, the
 * caller may free them on return). An image that cannot be scored (e.g. too large for a step) is
 * delivered with an error; -1 only for a device failure. May deliver earlier results. */
int llava_sched_add(llava_sched *s, const llava_classifier *c, const float *pixels, int n_tiles, int H, int W,
                    void *tag, llava_err *err);
/* Delivers finished steps and launches the filling step if the device is idle. wait: block until
 * at least one step has been delivered (when one is pending). Returns images not yet delivered. */
int llava_sched_poll(llava_sched *s, int wait, llava_err *err);
/* Launches everything queued and delivers every result. */
int llava_sched_flush(llava_sched *s, llava_err *err);
int llava_sched_pending(const llava_sched *s);
/* At most n images per step (0: as many as fit). */
void llava_sched_set_max_batch(llava_sched *s, int n);

#endif
