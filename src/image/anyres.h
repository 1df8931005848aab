/* anyres.h — LLaVA-NeXT "anyres" image preprocessing and image-token count.
 *
 * Owns: the PIL-path preprocessing of transformers' LlavaNextImageProcessor(Pil) (REFERENCE §2):
 * select_best_resolution, aspect-preserving BICUBIC resize (ceil of the IEEE double product),
 * black padding with the odd pixel bottom/right, row-major crop x crop tiles after a base image
 * that is the ORIGINAL squashed to crop x crop, rescale in double -> float32, normalize in float32;
 * and the token count of the processor / unpad rule of the model (REFERENCE §4, Python's
 * int(round(x, 7))).
 * Assumes: pinpoints are (height, width) pairs that are positive multiples of crop, crop is a
 * multiple of patch (validated; bad params are an error, not a crash).
 * Never: aborts on any image size >= 1x1.
 */
#ifndef LLAVA_ANYRES_H
#define LLAVA_ANYRES_H

#include <stdint.h>

#include "image/image.h"
#include "util/status.h"

typedef struct llava_preproc_params {
    int crop;        /* tile size, 336 */
    int patch;       /* ViT patch size, 14 */
    int n_pinpoints; /* 1..64 */
    int pinpoints[64][2];   /* (height, width) */
    float mean[3], std[3];  /* per channel, float32 as numpy casts them */
    double rescale;         /* 1/255 as the Python float 0.00392156862745098 */
    int num_additional_image_tokens; /* 1 (the CLS token) */
    int select_default;     /* 1 = strategy "default" (CLS dropped), 0 = "full" */
} llava_preproc_params;

/* llava-hf/llava-v1.6-mistral-7b-hf values (REFERENCE §1). */
void llava_preproc_params_default(llava_preproc_params *p);

/* transformers select_best_resolution for an H x W image: maximise the effective resolution, then
 * minimise waste; earliest pinpoint wins ties. (0, 0) if n <= 0 or H, W <= 0. */
void llava_select_best_resolution(int H, int W, const int (*pinpoints)[2], int n, int *h_best,
                                  int *w_best);

/* Size of the aspect-preserving resize into (h_best, w_best) (transformers get_patch_output_size). */
void llava_patch_output_size(int H, int W, int h_best, int w_best, int *new_h, int *new_w);

/* §4 unpad rule on a (cur_h x cur_w) feature grid for an original H x W image:
 * rows kept [*top, *top + *rows), cols kept [*left, *left + *cols). */
void llava_unpad_region(int H, int W, int cur_h, int cur_w, int *top, int *rows, int *left,
                        int *cols);

/* Number of <image> tokens the processor emits (= features the model produces) for an H x W
 * image, e.g. 2340 for 550x412 (W x H). -1 for invalid sizes or params. */
int llava_image_token_count(const llava_preproc_params *p, int H, int W);

/* Tiles llava_preprocess produces: gh*gw + 1 (the base image first). -1 if invalid. */
int llava_num_tiles(const llava_preproc_params *p, int H, int W);

/* pixels: malloc'd float32 (n_tiles, 3, crop, crop), order [base, tiles row-major]; caller frees.
 * Returns 0, or -1 with a message (bad params, out of memory). */
int llava_preprocess(float **pixels, int *n_tiles, const llava_image *img,
                     const llava_preproc_params *p, llava_err *err);

/* The uint8 stage before rescale/normalize: malloc'd (n_tiles, crop, crop, 3); caller frees. */
int llava_preprocess_u8(uint8_t **tiles_hwc, int *n_tiles, const llava_image *img,
                        const llava_preproc_params *p, llava_err *err);

/* Rescale + normalize of the uint8 tiles into float32 CHW (what llava_preprocess applies). */
void llava_normalize_tiles(float *pixels, const uint8_t *tiles_hwc, int n_tiles,
                           const llava_preproc_params *p);

#endif
