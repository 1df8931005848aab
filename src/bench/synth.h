/* synth.h — synthetic "photos" for the benchmark: smooth gradients, a few filled shapes and mild
 * noise, written as baseline JPEGs with libjpeg(-turbo) at a given quality.
 *
 * Owns: nothing beyond the call (the pixel buffer lives for the call only).
 * Deterministic: the same (w, h, seed) gives the same pixels (a local splitmix64 state, no globals),
 * so two runs and tools/bench_hf.py can read identical files.
 * Never: exits; I/O failures are a -1 with a message naming the path.
 */
#ifndef LLAVA_BENCH_SYNTH_H
#define LLAVA_BENCH_SYNTH_H

#include <stdint.h>

#include "util/status.h"

/* rgb (h, w, 3) row-major, caller-provided. */
void bench_synth_pixels(uint8_t *rgb, int w, int h, uint64_t seed);

/* Writes the synthetic image for seed to path as a JPEG of the given quality (1..100). */
int bench_synth_write_jpeg(const char *path, int w, int h, uint64_t seed, int quality, llava_err *err);

/* Writes n images dir/bench-00000.jpg ... (seeds 1..n). */
int bench_synth_write_set(const char *dir, int n, int w, int h, int quality, llava_err *err);

#endif
