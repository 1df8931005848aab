/* gpu.h — the model on a CUDA device: weights uploaded once as bf16, the same blocks as the CPU
 * path (CLIP tower, projector, packing, Mistral decoder) composed from backend/cuda ops.
 *
 * A llava_gpu holds device weights and reserved buffers: activations for up to max_tokens prompt
 * tokens and a KV cache of max_tokens positions. It serves one request at a time (not thread safe).
 * Built without CUDA, llava_gpu_load fails with a clear message and nothing else may be called.
 */
#ifndef LLAVA_GPU_H
#define LLAVA_GPU_H

#include "model/llava.h"

typedef struct llava_gpu llava_gpu;

/* Number of CUDA devices (0 without CUDA or without a device); name receives device 0's name. */
int llava_gpu_available(char *name, size_t name_len);

int llava_gpu_load(llava_gpu **out, const llava_model *m, int max_tokens, llava_err *err);
void llava_gpu_free(llava_gpu *g);

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
 * log-softmax of each trie token's logits (computed on the device: only what scoring needs crosses
 * PCIe, and the host does no per-row exp work). */
int llava_gpu_tree(llava_gpu *g, const int *tok, const int *parent, int n, float *logprobs, llava_err *err);

/* Debug/test access: the vision hidden state of the selected layer for the last encoded image
 * (host, (n_tiles, n_pos, Dv) as float). */
int llava_gpu_vision_hidden(llava_gpu *g, float *out, llava_err *err);

#endif
