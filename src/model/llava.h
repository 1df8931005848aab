/* llava.h — a loaded LLaVA-NeXT model: config, tokenizer, chat template, vision tower, projector,
 * packing and decoder, composed from the blocks in this folder.
 *
 * Ownership: llava_model_load returns a model the caller frees with llava_model_free. The model
 * is read-only after load; requests keep their own state (KV cache, buffers), so one model can
 * serve several requests.
 */
#ifndef LLAVA_MODEL_H
#define LLAVA_MODEL_H

#include "formats/chat_template.h"
#include "formats/config.h"
#include "formats/safetensors.h"
#include "formats/tokenizer.h"
#include "image/anyres.h"
#include "model/clip.h"
#include "model/mistral.h"

typedef struct llava_model {
    char *dir;
    llava_config cfg;
    llava_preproc_params pp;       /* image processor parameters from the model's files */
    llava_tokenizer *tok;
    llava_chat_template *tmpl;     /* NULL when the model has none or it is unsupported */
    char tmpl_error[512];          /* why tmpl is NULL */
    clip_model clip;
    float *proj_w1, *proj_b1;      /* (Ht, Dv), (Ht) */
    float *proj_w2, *proj_b2;      /* (Ht, Ht), (Ht) */
    float *image_newline;          /* (Ht) */
    mistral_model lm;
    llava_safetensors *st;
    int cpu_weights;               /* 0: the fp32 weight copies above are absent (GPU-only load) */
} llava_model;

/* Image processor parameters from a loaded config (no weights needed). */
void llava_preproc_from_config(llava_preproc_params *p, const llava_config *c);

int llava_model_load(llava_model **out, const char *dir, llava_err *err);
/* cpu_weights = 0: config, tokenizer, template and the mmapped checkpoint only, no fp32 copies of the
 * weights (for the GPU path: llava_gpu_load uploads straight from the checkpoint; a 7B model then
 * needs no host RAM beyond the page cache). The CPU forward functions must not be called on it. */
int llava_model_load_ex(llava_model **out, const char *dir, int cpu_weights, llava_err *err);
void llava_model_free(llava_model *m);

/* Image-token count for an image of H x W pixels. */
int llava_model_image_tokens(const llava_model *m, int H, int W);

/* Runs vision tower, projector and packing for one preprocessed image (pixels (n_tiles,3,S,S)
 * from llava_preprocess). *feats (n, Ht) is malloc'd; n == llava_model_image_tokens(H, W). */
int llava_image_features(float **feats, int *n, const llava_model *m, const float *pixels, int n_tiles, int H, int W,
                         llava_err *err);

/* transformers' masked_scatter: the rows of x (n, hidden) at image_token_index positions of ids
 * take, in order, the rows of the images' features (feats[i]: n_feats[i] rows). The caller has
 * checked that the image tokens and the feature rows are equally many. */
void llava_scatter_image_features(float *x, const llava_model *m, const int *ids, int n, float *const *feats,
                                  const int *n_feats, int n_images);

/* The nodes of a token tree (par[j] < j: parents first, -1 = root) that are some node's parent —
 * the ones a label-scoring forward runs (a leaf's own output scores nothing): inner[j] = node j's
 * index among them, in node order, or -1 for a leaf. Returns how many there are. */
int llava_trie_inner(const int *par, int n, int *inner);

#endif
