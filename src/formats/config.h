/* config.h — the model's configuration, read from a Hugging Face LLaVA-NeXT directory.
 *
 * Owns: llava_config, filled from config.json (vision_config / text_config), preprocessor_config.json,
 * processor_config.json and generation_config.json. Keys absent from a file take the defaults of the
 * transformers class that would read it (CLIPVisionConfig, MistralConfig / LlamaConfig,
 * LlavaNextConfig, LlavaNextProcessor), so the published 2024 config.json, which omits most text
 * keys, and the fully written v5 form both load. Nothing about any particular model size lives here.
 * Must never: guess a value the files contradict; unsupported features (rope scaling, multi-layer
 * feature selection, other text architectures) are errors that name the key.
 */
#ifndef LLAVA_CONFIG_H
#define LLAVA_CONFIG_H

#include "util/status.h"

enum { LLAVA_ACT_GELU = 0, LLAVA_ACT_QUICK_GELU = 1, LLAVA_ACT_SILU = 2, LLAVA_ACT_GELU_TANH = 3 };
#define LLAVA_MAX_PINPOINTS 64
#define LLAVA_MAX_EOS 8

typedef struct llava_vision_config {
    int hidden, intermediate, layers, heads, head_dim;
    int image_size, patch, channels;
    float eps;
    int act;
} llava_vision_config;

typedef struct llava_text_config {
    int hidden, intermediate, layers, heads, kv_heads, head_dim, vocab, max_pos;
    int sliding_window; /* 0 = none */
    float eps;
    double rope_theta;
    int tie_embeddings;
    int act;
} llava_text_config;

typedef struct llava_config {
    llava_vision_config vision;
    llava_text_config text;
    int image_token_index;
    int vision_feature_layer;   /* as in config.json, e.g. -2 (index into the hidden_states tuple) */
    int select_default;         /* 1: strategy "default" (drop CLS), 0: "full" */
    int proj_act, proj_bias;
    int n_pinpoints;
    int pinpoints[LLAVA_MAX_PINPOINTS][2]; /* (height, width) */
    /* image processor */
    int crop_size;              /* tile edge (crop_size.height) */
    int do_rescale, do_normalize;
    double rescale_factor;
    float image_mean[3], image_std[3];
    int num_additional_image_tokens;
    /* generation */
    int bos_id, pad_id;
    int n_eos;
    int eos_ids[LLAVA_MAX_EOS];
} llava_config;

int llava_config_load(llava_config *c, const char *model_dir, llava_err *err);

#endif
