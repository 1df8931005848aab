/* pack.h — LLaVA-NeXT feature packing: base tile, then the tile grid unpadded to the image's
 * aspect ratio with image_newline after every row (REFERENCE §4, MLN pack_image_features).
 */
#ifndef LLAVA_PACK_H
#define LLAVA_PACK_H

#include "image/anyres.h"

/* Number of packed features for an image of H x W pixels (= the processor's image-token count). */
int llava_pack_count(const llava_preproc_params *p, int grid, int H, int W);

/* out (count, D) from feats (n_tiles, grid*grid, D) (CLS already dropped) and newline (D).
 * n_tiles must be llava_num_tiles(p, H, W). Returns the count written. */
int llava_pack_features(float *out, const float *feats, int n_tiles, int grid, int D, const float *newline,
                        const llava_preproc_params *p, int H, int W);

#endif
