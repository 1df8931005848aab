/* synth.c — synthetic benchmark photos and their JPEG encoding (see synth.h). */
#include "bench/synth.h"

#include <errno.h>
#include <jpeglib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "util/mem.h"

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double unit(uint64_t *s) { return (double)(splitmix64(s) >> 11) * (1.0 / 9007199254740992.0); }

static uint8_t clamp8(double v) { return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)(v + 0.5); }

void bench_synth_pixels(uint8_t *rgb, int w, int h, uint64_t seed) {
    uint64_t s = seed * 0x2545F4914F6CDD1Dull + 17;
    /* two-corner gradient per channel */
    double c0[3], c1[3], c2[3];
    for (int k = 0; k < 3; k++) c0[k] = 40 + 180 * unit(&s), c1[k] = 40 + 180 * unit(&s), c2[k] = 40 + 180 * unit(&s);
    for (int y = 0; y < h; y++) {
        double fy = h > 1 ? (double)y / (h - 1) : 0;
        for (int x = 0; x < w; x++) {
            double fx = w > 1 ? (double)x / (w - 1) : 0;
            uint8_t *p = rgb + ((size_t)y * w + x) * 3;
            for (int k = 0; k < 3; k++) p[k] = clamp8(c0[k] * (1 - fx) * (1 - fy) + c1[k] * fx + c2[k] * fy * (1 - fx));
        }
    }
    /* a few shapes: filled ellipses and rectangles with a soft shade */
    int n_shapes = 4 + (int)(unit(&s) * 5);
    for (int i = 0; i < n_shapes; i++) {
        double cx = unit(&s) * w, cy = unit(&s) * h, rx = (0.05 + 0.2 * unit(&s)) * w, ry = (0.05 + 0.2 * unit(&s)) * h;
        double col[3] = {255 * unit(&s), 255 * unit(&s), 255 * unit(&s)};
        int ellipse = unit(&s) < 0.5;
        int x0 = (int)(cx - rx), x1 = (int)(cx + rx), y0 = (int)(cy - ry), y1 = (int)(cy + ry);
        if (x0 < 0) x0 = 0;
        if (y0 < 0) y0 = 0;
        if (x1 > w - 1) x1 = w - 1;
        if (y1 > h - 1) y1 = h - 1;
        for (int y = y0; y <= y1; y++)
            for (int x = x0; x <= x1; x++) {
                double dx = (x - cx) / rx, dy = (y - cy) / ry;
                if (ellipse && dx * dx + dy * dy > 1) continue;
                double shade = 0.8 + 0.2 * (1 - fabs(dy));
                uint8_t *p = rgb + ((size_t)y * w + x) * 3;
                for (int k = 0; k < 3; k++) p[k] = clamp8(0.15 * p[k] + 0.85 * col[k] * shade);
            }
    }
    /* mild noise, +-6 levels */
    for (size_t i = 0; i < (size_t)w * h; i++) {
        uint64_t r = splitmix64(&s);
        for (int k = 0; k < 3; k++) {
            int d = (int)((r >> (k * 8)) & 0xFF) % 13 - 6;
            uint8_t *p = rgb + i * 3 + k;
            *p = clamp8((double)*p + d);
        }
    }
}

int bench_synth_write_jpeg(const char *path, int w, int h, uint64_t seed, int quality, llava_err *err) {
    if (w < 1 || h < 1) return llava_errf(err, "%s: image size %dx%d must be at least 1x1", path, w, h);
    uint8_t *rgb = llava_try_malloc((size_t)w * h * 3, "synthetic image", err);
    if (!rgb) return -1;
    bench_synth_pixels(rgb, w, h, seed);
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(rgb);
        return llava_errf(err, "cannot write %s: %s", path, strerror(errno));
    }
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr jerr;
    ci.err = jpeg_std_error(&jerr); /* libjpeg's default handler exits only on its own bugs for a memory image */
    jpeg_create_compress(&ci);
    jpeg_stdio_dest(&ci, f);
    ci.image_width = (JDIMENSION)w;
    ci.image_height = (JDIMENSION)h;
    ci.input_components = 3;
    ci.in_color_space = JCS_RGB;
    jpeg_set_defaults(&ci);
    jpeg_set_quality(&ci, quality, TRUE);
    jpeg_start_compress(&ci, TRUE);
    while (ci.next_scanline < ci.image_height) {
        JSAMPROW row = rgb + (size_t)ci.next_scanline * w * 3;
        jpeg_write_scanlines(&ci, &row, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    free(rgb);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) return llava_errf(err, "cannot write %s: %s", path, strerror(errno));
    return 0;
}

int bench_synth_write_set(const char *dir, int n, int w, int h, int quality, llava_err *err) {
    for (int i = 0; i < n; i++) {
        char name[64];
        snprintf(name, sizeof name, "bench-%05d.jpg", i);
        char *p = llava_path_join(dir, name);
        int rc = bench_synth_write_jpeg(p, w, h, (uint64_t)i + 1, quality, err);
        free(p);
        if (rc) return -1;
    }
    return 0;
}
