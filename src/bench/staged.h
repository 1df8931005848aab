/* staged.h — one classification split into timed stages, for `llava bench`.
 *
 * The same computation as llava_classify_pixels / llava_classify_pixels_gpu (engine/classify.c),
 * composed here from the public model calls so each stage can be timed with llava_now():
 *   vision  = vision tower + projector + packing (llava_image_features / llava_gpu_encode_image)
 *   prefill = prompt embedding + decoder over the prompt (mistral_forward / llava_gpu_prefill)
 *   scoring = the label trie forward + log-softmax + per-label sums (mistral_forward_tree /
 *             llava_gpu_tree)
 * On the GPU, encode_image is asynchronous: without profile its time shows up in prefill (whose
 * logits download synchronizes). With profile the device is synchronized after encode_image, so
 * the split is exact and the total a little slower.
 * The trie is rebuilt from llava_classifier_continuation in the classifier's insertion order; bench
 * checks the probabilities against the library call on the warm-up image (bench_runner_check).
 * A runner is used by one thread; it owns only its trie and the tokenized prompt.
 */
#ifndef LLAVA_BENCH_STAGED_H
#define LLAVA_BENCH_STAGED_H

#include "engine/classify.h"
#include "model/gpu.h"
#include "model/llava.h"

typedef struct bench_times {
    double vision, prefill, scoring; /* seconds */
} bench_times;

typedef struct bench_runner bench_runner;

/* gpu NULL: the CPU path. */
int bench_runner_new(bench_runner **out, const llava_model *m, const llava_classifier *c, llava_gpu *gpu, int profile,
                     llava_err *err);
void bench_runner_free(bench_runner *r);

/* probs[n_labels]; *prompt_tokens = expanded prompt length; t gets the stage times. */
int bench_runner_classify(bench_runner *r, double *probs, const float *pixels, int n_tiles, int H, int W,
                          int *prompt_tokens, bench_times *t, llava_err *err);

/* Runs the library's llava_classify_pixels(_gpu) on the same pixels and returns the largest
 * |probability difference| against this runner's result in *max_diff. */
int bench_runner_check(bench_runner *r, const float *pixels, int n_tiles, int H, int W, double *max_diff,
                       llava_err *err);

/* Trie nodes (label-scoring tokens). */
int bench_runner_trie_size(const bench_runner *r);

#endif
