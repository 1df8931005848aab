/* gpu.h — the model on a CUDA device: weights uploaded once as bf16 straight from the mmapped
 * checkpoint, the same blocks as the CPU path (CLIP tower, projector, packing, Mistral decoder)
 * composed from backend/cuda ops.
 *
 * Memory is reserved once at load and sized from the device's free memory (or a cap):
 *  - activations for a step of A packed tokens (the batched step below; the one-request prefill
 *    runs in chunks of A tokens);
 *  - a KV cache of C positions for generation (run, chat) — none for classification alone.
 * Nothing is allocated on the device after load. A llava_gpu is not thread safe: one thread
 * drives it (the scheduler's).
 * Built without CUDA, llava_gpu_load fails with a clear message and nothing else may be called.
 */
#ifndef LLAVA_GPU_H
#define LLAVA_GPU_H

#include <stddef.h>

#include "model/llava.h"

typedef struct llava_gpu llava_gpu;

typedef struct llava_gpu_params {
    int kv_tokens;        /* KV-cache positions: 0 none (classification only), -1 the model's context
                             (max_position_embeddings) or what fits, else exactly this many */
    int step_tokens;      /* tokens per packed step: 0 = what fits (at most 65536), else exactly */
    double mem_limit_gib; /* device memory the whole process may use (0: the free memory less a margin) */
} llava_gpu_params;

typedef struct llava_gpu_info {
    int kv_tokens, step_tokens, step_seqs, vision_tiles;
    double weights_gib, buffers_gib; /* what load reserved */
    char device[128];
} llava_gpu_info;

llava_gpu_params llava_gpu_params_default(void);

/* Number of CUDA devices (0 without CUDA or without a device); name receives device 0's name. */
int llava_gpu_available(char *name, size_t name_len);

int llava_gpu_load(llava_gpu **out, const llava_model *m, const llava_gpu_params *p, llava_err *err);
void llava_gpu_free(llava_gpu *g);
const llava_gpu_info *llava_gpu_get_info(const llava_gpu *g);
/* device memory in use on device 0 now, all processes, and its size (bytes; 0 and 0 without CUDA) */
void llava_gpu_mem(double *used_bytes, double *total_bytes);

/* ---- one request at a time (generation) ----------------------------------------------------- */

/* Vision tower + projector + packing on the device for one preprocessed image (pixels host
 * (n_tiles, 3, S, S)); the features stay on the device, appended after those of earlier images
 * of the same request (returned count = this image's tokens). llava_gpu_prefill consumes them. */
int llava_gpu_encode_image(llava_gpu *g, const float *pixels, int n_tiles, int H, int W, int *n_feats, llava_err *err);

/* Prefill: prompt ids (host, n_ids) with image_token_index where the encoded images' features go
 * (in order). Resets the KV cache and consumes the encoded features. logits (host, V) of the last
 * position. */
int llava_gpu_prefill(llava_gpu *g, const int *ids, int n_ids, float *logits, llava_err *err);
/* One decoding step: appends token id, logits (host, V) of it. */
int llava_gpu_decode(llava_gpu *g, int id, float *logits, llava_err *err);
/* Label trie after the prefilled prompt (see mistral_forward_tree); logprobs (host, n, V) are the
 * log-softmax of each trie token's logits. */
int llava_gpu_tree(llava_gpu *g, const int *tok, const int *parent, int n, float *logprobs, llava_err *err);

/* Debug/test access: the vision hidden state of the selected layer for the last encoded image
 * (host, (n_tiles, n_pos, Dv) as float). */
int llava_gpu_vision_hidden(llava_gpu *g, float *out, llava_err *err);

/* ---- batched label scoring (the scheduler's step) --------------------------------------------
 * A step holds sequences of one image each: the prompt (image token expanded to the image's
 * feature count) followed by a label trie. Launch runs every tile of the step through the vision
 * tower (in passes of vision_tiles), every prompt + trie through the decoder as one packed
 * variable-length batch (no padding; trie tokens attend to their prompt and their ancestors), and
 * the LM head only on the rows scoring needs; it returns at once (asynchronous). Wait gives, per
 * sequence and trie node j, log p(tok[j] | prompt, ancestors of j).
 * A step's host buffers are page-locked; two steps alternate so the host fills one while the
 * device runs the other. */
typedef struct llava_gpu_step llava_gpu_step;

int llava_gpu_step_new(llava_gpu_step **out, llava_gpu *g, llava_err *err);
void llava_gpu_step_free(llava_gpu_step *s);
/* Adds a sequence (inputs are copied). Returns 0 added, 1 the step is full (nothing added; launch
 * it first), -1 the sequence can never fit a step (message in err). tok/parent: the trie (parent
 * -1 = after the prompt; parents precede children), n_nodes >= 1. */
int llava_gpu_step_add(llava_gpu_step *s, const float *pixels, int n_tiles, int H, int W, const int *ids, int n_ids,
                       const int *tok, const int *parent, int n_nodes, llava_err *err);
int llava_gpu_step_launch(llava_gpu_step *s, llava_err *err);
int llava_gpu_step_done(llava_gpu_step *s); /* 1 when launched and finished (does not wait) */
void llava_gpu_step_wait(llava_gpu_step *s);
/* After wait: sequence i's n_nodes log-probabilities (valid until the step is cleared). */
const float *llava_gpu_step_result(const llava_gpu_step *s, int i);
void llava_gpu_step_clear(llava_gpu_step *s); /* empty again (after wait) */
/* After wait: device time (ms) of the vision passes, the decoder (prompts + tries) and the LM head
 * with the picks (timed events; the profile behind bench's stage split). */
void llava_gpu_step_times(const llava_gpu_step *s, double ms[3]);

#endif
