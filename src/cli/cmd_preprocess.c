/* cmd_preprocess.c — `llava preprocess`: the pixel values the model would see, as safetensors
 * (pixel_values F32 [tiles, 3, S, S], image_size I64 [2] = (height, width), image_tokens I64 [1]). */
#include <stdio.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "formats/config.h"
#include "formats/safetensors.h"
#include "image/image.h"
#include "model/llava.h"
#include "model/pack.h"

int cmd_preprocess(int argc, char **argv) {
    const char *model_dir = NULL, *image = NULL, *out = NULL;
    long max_pixels = 89478485;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int r;
        if ((r = arg_match(argc, argv, &i, "-m|--model", 1, &v)) > 0) model_dir = v;
        else if (!r && (r = arg_match(argc, argv, &i, "-i|--image", 1, &v)) > 0) image = v;
        else if (!r && (r = arg_match(argc, argv, &i, "-o|--output", 1, &v)) > 0) out = v;
        else if (!r && (r = arg_match(argc, argv, &i, "--max-pixels", 1, &v)) > 0) {
            if (arg_int(v, 1, 0x7fffffffffffffffL, &max_pixels)) {
                fprintf(stderr, "llava preprocess: invalid --max-pixels %s\n", v);
                return 2;
            }
        } else if (!r && arg_match(argc, argv, &i, "-h|--help", 0, NULL)) {
            printf("usage: llava preprocess -m MODEL_DIR -i IMAGE -o FILE.safetensors [--max-pixels N]\n");
            return 0;
        } else {
            fprintf(stderr, "llava preprocess: %s %s\n", r < 0 ? "missing value for" : "unexpected argument", argv[i]);
            return 2;
        }
    }
    if (!model_dir || !image || !out) {
        fprintf(stderr, "usage: llava preprocess -m MODEL_DIR -i IMAGE -o FILE.safetensors\n");
        return 2;
    }
    llava_err err = {{0}};
    llava_config cfg;
    llava_preproc_params pp;
    llava_image img = {0};
    float *pixels = NULL;
    int n_tiles = 0, status = 1;
    if (llava_config_load(&cfg, model_dir, &err)) goto done;
    llava_preproc_from_config(&pp, &cfg);
    if (llava_image_load(&img, image, max_pixels, &err)) goto done;
    if (llava_preprocess(&pixels, &n_tiles, &img, &pp, &err)) goto done;
    int grid = cfg.vision.image_size / cfg.vision.patch;
    int64_t size[2] = {img.h, img.w}, ntok[1] = {llava_pack_count(&pp, grid, img.h, img.w)};
    llava_st_entry e[3] = {
        {.name = "pixel_values", .dtype = LLAVA_DT_F32, .ndim = 4, .shape = {n_tiles, 3, pp.crop, pp.crop}, .data = pixels},
        {.name = "image_size", .dtype = LLAVA_DT_I64, .ndim = 1, .shape = {2}, .data = size},
        {.name = "image_tokens", .dtype = LLAVA_DT_I64, .ndim = 1, .shape = {1}, .data = ntok},
    };
    if (llava_st_write(out, e, 3, NULL, 0, &err)) goto done;
    printf("%s: %dx%d (WxH), %d tiles of %dx%d, %lld image tokens -> %s\n", image, img.w, img.h, n_tiles, pp.crop,
           pp.crop, (long long)ntok[0], out);
    status = 0;
done:
    if (status) fprintf(stderr, "llava preprocess: %s\n", err.msg);
    free(pixels);
    llava_image_free(&img);
    return status;
}
