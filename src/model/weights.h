/* weights.h — looking up checkpoint tensors by their Hugging Face names.
 *
 * Names are written in the current transformers form ("model.language_model.layers.0...").
 * Published llava-hf checkpoints use the legacy form ("language_model.model.layers.0...",
 * "vision_tower.vision_model.*"; transformers v5 saves "vision_tower.*"),
 * "vision_tower.*", "multi_modal_projector.*", "image_newline", "language_model.lm_head.*");
 * llava_weight_find tries both, as transformers' checkpoint conversion mapping does.
 */
#ifndef LLAVA_WEIGHTS_H
#define LLAVA_WEIGHTS_H

#include <stdint.h>

#include "formats/safetensors.h"

const llava_tensor *llava_weight_find(const llava_safetensors *st, const char *name);

/* printf-style name; finds the tensor and checks its shape, given as up to 4 dims (unused = 0).
 * NULL with a message naming the tensor (and the file and both shapes) when missing or misshapen. */
const llava_tensor *llava_weight_getf(const llava_safetensors *st, llava_err *err, int64_t d0, int64_t d1, int64_t d2,
                                      int64_t d3, const char *fmt, ...) __attribute__((format(printf, 7, 8)));

/* Finds the tensor, checks its shape (ndim dims of shape), converts it to a new float32 buffer.
 * Error messages name the tensor, the file and both shapes. */
int llava_weight_f32(float **out, const llava_safetensors *st, const char *name, int ndim, const int64_t *shape,
                     llava_err *err);

/* printf-style name, then llava_weight_f32. Shapes given as up to 4 dims (unused = 0). */
int llava_weight_f32f(float **out, const llava_safetensors *st, llava_err *err, int64_t d0, int64_t d1, int64_t d2,
                      int64_t d3, const char *fmt, ...) __attribute__((format(printf, 8, 9)));

#endif
