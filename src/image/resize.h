/* resize.h — Pillow-exact BICUBIC resampling of 8-bit RGB images.
 *
 * Owns: llava_resize_bicubic, a bit-for-bit reimplementation of the algorithm behind Pillow's
 * `Image.resize((w, h), Image.BICUBIC)` (reducing_gap=None) for mode "RGB": separable Keys cubic
 * (a = -0.5) whose support grows with the downscale factor (antialiasing), per-axis weights
 * normalised in double and quantised to 22 fractional bits, int32 accumulation, uint8 clamp after
 * each pass, horizontal pass first (vertical first for images more than 100x taller than wide that
 * shrink vertically, as Pillow does), and a pass skipped when its dimension is unchanged.
 * Same size in and out is an exact copy (Pillow's early return).
 * Never: changes the rounding (no FMA contraction, no SIMD precision reduction): results must stay
 * byte-identical to Pillow 12.3.
 */
#ifndef LLAVA_RESIZE_H
#define LLAVA_RESIZE_H

#include <stddef.h>
#include <stdint.h>

#include "util/status.h"

/* dst: (dh, dw, 3) with rows dst_stride bytes apart; src: (sh, sw, 3), rows src_stride apart.
 * dst and src must not overlap. Uses OpenMP over rows for large images.
 * Returns 0, or -1 (non-positive size, out of memory) with a message in err. */
int llava_resize_bicubic(uint8_t *dst, size_t dst_stride, int dw, int dh, const uint8_t *src,
                         size_t src_stride, int sw, int sh, llava_err *err);

#endif
