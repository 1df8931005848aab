/* anyres.c — LLaVA-NeXT anyres preprocessing and token count (see anyres.h).
 *
 * Numerics follow transformers' Python exactly (REFERENCE §2, §4):
 *  - ratios are IEEE double divisions, then multiplied, then truncated (int()) or ceil'ed;
 *  - int(round(x, 7)) is done by printing x with 7 decimals (glibc prints the exact binary value,
 *    correctly rounded, ties to even — like CPython's round) and reading it back;
 *  - rescale is (float)((double)v * rescale); normalize is float32 (x - mean) / std. With uint8
 *    input there are only 256 values per channel, so both go through a 3x256 lookup table built
 *    with those exact operations.
 */
#include "image/anyres.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image/resize.h"
#include "util/mem.h"

void llava_preproc_params_default(llava_preproc_params *p) {
    static const int pins[5][2] = {{336, 672}, {672, 336}, {672, 672}, {1008, 336}, {336, 1008}};
    /* Python floats cast to float32 by numpy: double literal first, then (float). */
    static const double mean[3] = {0.48145466, 0.4578275, 0.40821073};
    static const double std[3] = {0.26862954, 0.26130258, 0.27577711};
    memset(p, 0, sizeof *p);
    p->crop = 336;
    p->patch = 14;
    p->n_pinpoints = 5;
    memcpy(p->pinpoints, pins, sizeof pins);
    for (int c = 0; c < 3; c++) {
        p->mean[c] = (float)mean[c];
        p->std[c] = (float)std[c];
    }
    p->rescale = 0.00392156862745098; /* repr(1/255) */
    p->num_additional_image_tokens = 1;
    p->select_default = 1;
}

static int params_check(const llava_preproc_params *p, llava_err *err) {
    if (!p) return llava_errf(err, "preprocess: no parameters given");
    if (p->crop <= 0 || p->patch <= 0 || p->crop % p->patch)
        return llava_errf(err,
                          "preprocess: crop size %d must be a positive multiple of the patch size "
                          "%d; fix the processor config",
                          p->crop, p->patch);
    if (p->n_pinpoints < 1 || p->n_pinpoints > 64)
        return llava_errf(err, "preprocess: %d grid pinpoints (need 1..64); fix the config",
                          p->n_pinpoints);
    for (int i = 0; i < p->n_pinpoints; i++) {
        int h = p->pinpoints[i][0], w = p->pinpoints[i][1];
        if (h <= 0 || w <= 0 || h % p->crop || w % p->crop)
            return llava_errf(err,
                              "preprocess: grid pinpoint %d is %dx%d, not a positive multiple of "
                              "the crop size %d; fix image_grid_pinpoints",
                              i, h, w, p->crop);
    }
    for (int c = 0; c < 3; c++)
        if (!(p->std[c] != 0.0f) || !isfinite(p->mean[c]))
            return llava_errf(err, "preprocess: image_std/mean channel %d is invalid", c);
    if (!isfinite(p->rescale) || p->num_additional_image_tokens < 0)
        return llava_errf(err, "preprocess: invalid rescale factor or num_additional_image_tokens");
    return 0;
}

void llava_select_best_resolution(int H, int W, const int (*pinpoints)[2], int n, int *h_best,
                                  int *w_best) {
    *h_best = *w_best = 0;
    if (H <= 0 || W <= 0 || n <= 0) return;
    int64_t best_eff = 0, best_waste = 0;
    int have = 0;
    const int64_t area = (int64_t)W * H;
    for (int i = 0; i < n; i++) {
        const int hc = pinpoints[i][0], wc = pinpoints[i][1];
        const double sw = (double)wc / W, sh = (double)hc / H;
        const double s = sh < sw ? sh : sw; /* Python min(): first argument on ties */
        const int64_t dw = (int64_t)(W * s), dh = (int64_t)(H * s);
        int64_t eff = dw * dh;
        if (eff > area) eff = area;
        const int64_t waste = (int64_t)hc * wc - eff;
        /* Python starts from (0, inf): the first candidate is always taken. */
        if (!have || eff > best_eff || (eff == best_eff && waste < best_waste)) {
            have = 1;
            best_eff = eff;
            best_waste = waste;
            *h_best = hc;
            *w_best = wc;
        }
    }
}

void llava_patch_output_size(int H, int W, int h_best, int w_best, int *new_h, int *new_w) {
    const double sw = (double)w_best / W, sh = (double)h_best / H;
    if (sw < sh) {
        const double v = ceil(H * sw);
        *new_w = w_best;
        *new_h = v < h_best ? (int)v : h_best;
    } else {
        const double v = ceil(W * sh);
        *new_h = h_best;
        *new_w = v < w_best ? (int)v : w_best;
    }
}

/* Python int(round(x, 7)) for finite x of modest size. */
static int64_t py_int_round7(double x) {
    char buf[512];
    snprintf(buf, sizeof buf, "%.7f", x);
    return (int64_t)strtod(buf, NULL);
}

static int64_t floordiv2(int64_t v) { return v >= 0 ? v / 2 : -((-v + 1) / 2); }

void llava_unpad_region(int H, int W, int cur_h, int cur_w, int *top, int *rows, int *left,
                        int *cols) {
    *top = *left = 0;
    *rows = cur_h;
    *cols = cur_w;
    if (H <= 0 || W <= 0 || cur_h <= 0 || cur_w <= 0) return;
    const double orig_ar = (double)W / H, cur_ar = (double)cur_w / cur_h;
    if (orig_ar > cur_ar) {
        const int64_t new_h = py_int_round7(H * ((double)cur_w / W));
        const int64_t pad = floordiv2(cur_h - new_h);
        *top = (int)pad;
        *rows = (int)(cur_h - 2 * pad);
    } else {
        const int64_t new_w = py_int_round7(W * ((double)cur_h / H));
        const int64_t pad = floordiv2(cur_w - new_w);
        *left = (int)pad;
        *cols = (int)(cur_w - 2 * pad);
    }
}

int llava_num_tiles(const llava_preproc_params *p, int H, int W) {
    if (params_check(p, NULL) || H <= 0 || W <= 0) return -1;
    int hb, wb;
    llava_select_best_resolution(H, W, (const int(*)[2])p->pinpoints, p->n_pinpoints, &hb, &wb);
    return (hb / p->crop) * (wb / p->crop) + 1;
}

int llava_image_token_count(const llava_preproc_params *p, int H, int W) {
    if (params_check(p, NULL) || H <= 0 || W <= 0) return -1;
    int hb, wb;
    llava_select_best_resolution(H, W, (const int(*)[2])p->pinpoints, p->n_pinpoints, &hb, &wb);
    const int side = p->crop / p->patch; /* 24 patches per tile side */
    const int cur_h = side * (hb / p->crop), cur_w = side * (wb / p->crop);
    int top, rows, left, cols;
    llava_unpad_region(H, W, cur_h, cur_w, &top, &rows, &left, &cols);
    int n = rows * cols + rows + side * side + p->num_additional_image_tokens;
    if (p->select_default) n -= p->num_additional_image_tokens; /* CLS dropped */
    return n;
}

int llava_preprocess_u8(uint8_t **tiles_hwc, int *n_tiles, const llava_image *img,
                        const llava_preproc_params *p, llava_err *err) {
    *tiles_hwc = NULL;
    *n_tiles = 0;
    if (params_check(p, err)) return -1;
    if (!img || !img->rgb || img->w <= 0 || img->h <= 0)
        return llava_errf(err, "preprocess: empty image (decode it first)");
    const int H = img->h, W = img->w, crop = p->crop;
    int hb, wb, nh, nw;
    llava_select_best_resolution(H, W, (const int(*)[2])p->pinpoints, p->n_pinpoints, &hb, &wb);
    llava_patch_output_size(H, W, hb, wb, &nh, &nw);
    const int gh = hb / crop, gw = wb / crop, n = gh * gw + 1;
    const size_t tile_bytes = (size_t)crop * crop * 3, canvas_stride = (size_t)wb * 3;

    uint8_t *tiles = llava_try_malloc(tile_bytes * (size_t)n, "preprocess tiles", err);
    uint8_t *canvas = tiles ? llava_try_malloc(canvas_stride * (size_t)hb, "preprocess canvas", err)
                            : NULL;
    if (!canvas) {
        free(tiles);
        return llava_err_prefix(err, "preprocess %dx%d image", W, H);
    }
    /* Base image: the original squashed to crop x crop. */
    if (llava_resize_bicubic(tiles, (size_t)crop * 3, crop, crop, img->rgb, (size_t)W * 3, W, H,
                             err))
        goto fail;
    /* Aspect-preserving resize into the black canvas; odd padding pixel goes bottom/right. */
    memset(canvas, 0, canvas_stride * (size_t)hb);
    const int top = (hb - nh) / 2, left = (wb - nw) / 2;
    if (llava_resize_bicubic(canvas + (size_t)top * canvas_stride + (size_t)left * 3,
                             canvas_stride, nw, nh, img->rgb, (size_t)W * 3, W, H, err))
        goto fail;
    for (int ty = 0; ty < gh; ty++)
        for (int tx = 0; tx < gw; tx++) {
            uint8_t *t = tiles + tile_bytes * (size_t)(1 + ty * gw + tx);
            for (int r = 0; r < crop; r++)
                memcpy(t + (size_t)r * crop * 3,
                       canvas + (size_t)(ty * crop + r) * canvas_stride + (size_t)tx * crop * 3,
                       (size_t)crop * 3);
        }
    free(canvas);
    *tiles_hwc = tiles;
    *n_tiles = n;
    return 0;
fail:
    free(canvas);
    free(tiles);
    return llava_err_prefix(err, "preprocess %dx%d image", W, H);
}

void llava_normalize_tiles(float *pixels, const uint8_t *tiles_hwc, int n_tiles,
                           const llava_preproc_params *p) {
    float lut[3][256];
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++) {
            const float x = (float)((double)v * p->rescale);
            lut[c][v] = (x - p->mean[c]) / p->std[c];
        }
    const size_t hw = (size_t)p->crop * p->crop;
#pragma omp parallel for schedule(static) if (n_tiles > 1 && hw * n_tiles > (1u << 20))
    for (int t = 0; t < n_tiles; t++) {
        const uint8_t *s = tiles_hwc + (size_t)t * hw * 3;
        float *r = pixels + (size_t)t * 3 * hw, *g = r + hw, *b = g + hw;
        for (size_t i = 0; i < hw; i++) {
            r[i] = lut[0][s[3 * i + 0]];
            g[i] = lut[1][s[3 * i + 1]];
            b[i] = lut[2][s[3 * i + 2]];
        }
    }
}

int llava_preprocess(float **pixels, int *n_tiles, const llava_image *img,
                     const llava_preproc_params *p, llava_err *err) {
    *pixels = NULL;
    *n_tiles = 0;
    uint8_t *tiles;
    int n;
    if (llava_preprocess_u8(&tiles, &n, img, p, err)) return -1;
    const size_t count = (size_t)n * 3 * p->crop * p->crop;
    float *px = llava_try_malloc(sizeof(float) * count, "preprocess pixel values", err);
    if (!px) {
        free(tiles);
        return llava_err_prefix(err, "preprocess %dx%d image", img->w, img->h);
    }
    llava_normalize_tiles(px, tiles, n, p);
    free(tiles);
    *pixels = px;
    *n_tiles = n;
    return 0;
}
