/* pack.c — anyres feature packing (REFERENCE §4). The grid shape and the unpad rule come from
 * image/anyres.c, the same code that counts image tokens for the prompt, so the two can't drift. */
#include "model/pack.h"

#include <string.h>

static void grid_shape(const llava_preproc_params *p, int H, int W, int *gh, int *gw) {
    int hb, wb;
    llava_select_best_resolution(H, W, (const int(*)[2])p->pinpoints, p->n_pinpoints, &hb, &wb);
    *gh = hb / p->crop;
    *gw = wb / p->crop;
}

int llava_pack_count(const llava_preproc_params *p, int grid, int H, int W) {
    int gh, gw, top, rows, left, cols;
    grid_shape(p, H, W, &gh, &gw);
    llava_unpad_region(H, W, grid * gh, grid * gw, &top, &rows, &left, &cols);
    return grid * grid + rows * (cols + 1);
}

int llava_pack_features(float *out, const float *feats, int n_tiles, int grid, int D, const float *newline,
                        const llava_preproc_params *p, int H, int W) {
    int gh, gw, top, rows, left, cols;
    grid_shape(p, H, W, &gh, &gw);
    const int per_tile = grid * grid;
    size_t o = 0;
    memcpy(out, feats, sizeof(float) * (size_t)per_tile * D); /* base image, row-major */
    o += (size_t)per_tile;
    (void)n_tiles; /* always gh*gw + 1 >= 2 here: the single-tile branch of HF never applies */
    llava_unpad_region(H, W, grid * gh, grid * gw, &top, &rows, &left, &cols);
    for (int r = top; r < top + rows; r++) {
        for (int c = left; c < left + cols; c++) {
            int tile = 1 + (r / grid) * gw + (c / grid);
            int idx = (r % grid) * grid + (c % grid);
            memcpy(out + o * D, feats + ((size_t)tile * per_tile + idx) * D, sizeof(float) * D);
            o++;
        }
        memcpy(out + o * D, newline, sizeof(float) * D);
        o++;
    }
    return (int)o;
}
