/* preprocess_bench.c — decode + LLaVA-NeXT anyres preprocessing throughput, per image file.
 *
 * Usage: preprocess_bench [-t seconds] image...   (run with OMP_NUM_THREADS=1 for per-core numbers)
 * For each file (read into memory once, so disk I/O is not timed) it repeats
 * decode -> llava_preprocess (float32 tiles) for about `seconds` and prints images/s and the split
 * between decoding, the uint8 stage (resizes, pad, tiles) and rescale/normalize.
 * Built by bench/preprocess_bench.sh against build/libllava.a.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image/anyres.h"
#include "image/image.h"
#include "util/mem.h"

int main(int argc, char **argv) {
    double seconds = 2.0;
    int first = 1;
    if (argc > 2 && !strcmp(argv[1], "-t")) {
        seconds = atof(argv[2]);
        first = 3;
    }
    if (first >= argc) {
        fprintf(stderr, "usage: %s [-t seconds] image...\n", argv[0]);
        return 2;
    }
    llava_preproc_params p;
    llava_preproc_params_default(&p);
    for (int a = first; a < argc; a++) {
        llava_err err = {{0}};
        size_t len = 0;
        char *bytes = llava_read_file(argv[a], &len, (size_t)1 << 30, &err);
        if (!bytes) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        double t_dec = 0, t_u8 = 0, t_norm = 0;
        int iters = 0, w = 0, h = 0, n = 0;
        const double start = llava_now();
        while (llava_now() - start < seconds || iters < 3) {
            llava_image img;
            double t0 = llava_now();
            if (llava_image_decode(&img, bytes, len, LLAVA_DEFAULT_MAX_PIXELS, argv[a], &err)) {
                fprintf(stderr, "%s\n", err.msg);
                return 1;
            }
            double t1 = llava_now();
            uint8_t *tiles;
            if (llava_preprocess_u8(&tiles, &n, &img, &p, &err)) {
                fprintf(stderr, "%s\n", err.msg);
                return 1;
            }
            double t2 = llava_now();
            float *px = xmalloc(sizeof(float) * (size_t)n * 3 * p.crop * p.crop);
            llava_normalize_tiles(px, tiles, n, &p);
            double t3 = llava_now();
            t_dec += t1 - t0;
            t_u8 += t2 - t1;
            t_norm += t3 - t2;
            w = img.w;
            h = img.h;
            free(px);
            free(tiles);
            llava_image_free(&img);
            iters++;
        }
        const double total = t_dec + t_u8 + t_norm;
        printf("%-28s %5dx%-5d %d tiles  %8.2f images/s  (%.2f ms: decode %.2f, resize+tiles %.2f, "
               "normalize %.2f; %d runs)\n",
               strrchr(argv[a], '/') ? strrchr(argv[a], '/') + 1 : argv[a], w, h, n, iters / total,
               1e3 * total / iters, 1e3 * t_dec / iters, 1e3 * t_u8 / iters, 1e3 * t_norm / iters,
               iters);
        free(bytes);
    }
    return 0;
}
