/* clip.h — the CLIP vision tower (CLIPVisionEmbeddings + pre_layrnorm + encoder layers).
 *
 * Only the layers up to the hidden state LLaVA reads (vision_feature_layer) are loaded and run;
 * post_layernorm and later layers never affect LLaVA (REFERENCE §3.5).
 */
#ifndef LLAVA_CLIP_H
#define LLAVA_CLIP_H

#include "formats/config.h"
#include "formats/safetensors.h"

typedef struct clip_layer {
    float *ln1_w, *ln1_b;            /* (D) */
    float *q_w, *k_w, *v_w, *o_w;    /* (D, D) */
    float *q_b, *k_b, *v_b, *o_b;    /* (D) */
    float *ln2_w, *ln2_b;            /* (D) */
    float *fc1_w, *fc1_b;            /* (I, D), (I) */
    float *fc2_w, *fc2_b;            /* (D, I), (D) */
} clip_layer;

typedef struct clip_model {
    llava_vision_config cfg;
    int n_run;          /* encoder layers to run = index of the selected hidden state */
    int grid;           /* patches per side (image_size / patch) */
    int n_pos;          /* grid*grid + 1 (CLS) */
    float *patch_w;     /* (D, 3, P, P), no bias */
    float *class_emb;   /* (D) */
    float *pos_emb;     /* (n_pos, D) */
    float *pre_ln_w, *pre_ln_b; /* (D) */
    clip_layer *layers; /* n_run */
} clip_model;

/* feature_layer as in config.json (negative counts from the end of the n_layers+1 hidden states). */
int clip_load(clip_model *m, const llava_safetensors *st, const llava_vision_config *cfg, int feature_layer,
              llava_err *err);
/* Dimensions only (n_run, grid, n_pos), no weights: for a model whose weights live on the GPU. */
void clip_init_shapes(clip_model *m, const llava_vision_config *cfg, int feature_layer);
void clip_free(clip_model *m);

/* out (n_tiles, n_pos, D) = hidden state feature_layer for pixels (n_tiles, 3, S, S). */
int clip_forward(float *out, const clip_model *m, const float *pixels, int n_tiles, llava_err *err);

#endif
