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
    int kv_tokens;        /* KV-cache positions, shared by the sequences being generated: 0 none
                             (classification only), -1 what fits beside the step, else exactly this many */
    int step_tokens;      /* tokens per packed step: 0 = what fits (at most 65536), else exactly */
    double mem_limit_gib; /* device memory the whole process may use (0: the free memory less a margin) */
    int fp8;              /* 1: the decoder's linear layers in FP8 (e4m3, a scale per weight row and per
                             token; needs compute capability 8.9+): faster, not bit-equal to bf16 */
} llava_gpu_params;

typedef struct llava_gpu_info {
    int kv_tokens, step_tokens, step_seqs, vision_tiles;
    double weights_gib, buffers_gib; /* what load reserved */
    int fp8;                         /* the decoder runs in FP8 */
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

/* ---- generation: sequences in ranges of the KV cache, extended together ------------------------
 * The kv_tokens positions of the KV cache are shared: each running sequence owns a range of them
 * [base, base + its capacity), handed out by the caller (engine/generate.c). One llava_gpu_extend
 * call appends new tokens to up to LLAVA_GPU_MAX_SEQS sequences in one packed pass: prompt chunks of
 * new sequences and the one sampled token of running ones share the step (continuous batching). */
#define LLAVA_GPU_MAX_SEQS 256

/* Vision tower + projector + packing on the device for one preprocessed image (pixels host
 * (n_tiles, 3, S, S)); the features stay on the device, appended after those of images encoded
 * before (returned count = this image's tokens), until the next llava_gpu_extend consumes them. */
int llava_gpu_encode_image(llava_gpu *g, const float *pixels, int n_tiles, int H, int W, int *n_feats, llava_err *err);

/* Sequence s (of n_seqs) gets n_new[s] tokens (its slice of ids, sequences in order) at positions
 * len[s].. ; their keys/values go to cache rows base[s] + len[s].. and they attend to cache rows
 * [base[s], base[s] + len[s] + n_new[s]). The new rows img_rows (n_img, ascending) take the encoded
 * image features in order, starting at feature row feat_skip (the others are token embeddings); the
 * call then drops all encoded features. logits (host, n_seqs, V): of each sequence's last new
 * token. sum n_new <= step_tokens. */
int llava_gpu_extend(llava_gpu *g, int n_seqs, const int *base, const int *len, const int *n_new, const int *ids,
                     const int *img_rows, int n_img, int feat_skip, float *logits, llava_err *err);
/* Drops encoded features that no extend will consume (after a failed encode). */
void llava_gpu_drop_images(llava_gpu *g);

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
/* With LLAVA_PROFILE=1 in the environment: prints to stderr the device time per op kind summed
 * since the last report (what: a title) and starts new sums; the rest is printed at free. A no-op
 * otherwise. */
void llava_gpu_profile_report(llava_gpu *g, const char *what);

#endif
