/* config.c — reads config.json, preprocessor_config.json, processor_config.json and
 * generation_config.json into llava_config (see config.h for the defaults rule). */
#include "formats/config.h"

#include <math.h>
#include <string.h>

#include "formats/json.h"
#include "util/mem.h"

#define GETI(obj, key, def, dst)                                          \
    do {                                                                  \
        int64_t v_;                                                       \
        if (llava_json_int(obj, key, def, &v_, what, err)) goto fail;     \
        if (v_ < -2147483647LL || v_ > 2147483647LL) {                    \
            llava_errf(err, "%s: \"%s\" is out of range", what, key);     \
            goto fail;                                                    \
        }                                                                 \
        (dst) = (int)v_;                                                  \
    } while (0)
#define GETF(obj, key, def, dst)                                          \
    do {                                                                  \
        double v_;                                                        \
        if (llava_json_num(obj, key, def, &v_, what, err)) goto fail;     \
        (dst) = v_;                                                       \
    } while (0)

static int parse_act(const char *name, int *act, const char *what, const char *key, llava_err *err) {
    if (!strcmp(name, "gelu")) *act = LLAVA_ACT_GELU;
    else if (!strcmp(name, "quick_gelu")) *act = LLAVA_ACT_QUICK_GELU;
    else if (!strcmp(name, "silu") || !strcmp(name, "swish")) *act = LLAVA_ACT_SILU;
    else if (!strcmp(name, "gelu_pytorch_tanh") || !strcmp(name, "gelu_new")) *act = LLAVA_ACT_GELU_TANH;
    else return llava_errf(err, "%s: %s \"%s\" is not supported (gelu, quick_gelu, silu, gelu_pytorch_tanh)", what, key, name);
    return 0;
}

static int positive(int v, const char *what, const char *key, llava_err *err) {
    if (v <= 0) return llava_errf(err, "%s: \"%s\" must be a positive integer (got %d)", what, key, v);
    return 0;
}

static int load_vision(llava_vision_config *v, const cJSON *o, const char *what, llava_err *err) {
    const char *act = NULL, *mt = NULL;
    if (llava_json_str(o, "model_type", "clip_vision_model", &mt, what, err)) return -1;
    if (strcmp(mt, "clip_vision_model") && strcmp(mt, "clip"))
        return llava_errf(err, "%s: vision_config.model_type \"%s\" is not supported (only CLIP vision towers)", what, mt);
    GETI(o, "hidden_size", 768, v->hidden);
    GETI(o, "intermediate_size", 3072, v->intermediate);
    GETI(o, "num_hidden_layers", 12, v->layers);
    GETI(o, "num_attention_heads", 12, v->heads);
    GETI(o, "image_size", 224, v->image_size);
    GETI(o, "patch_size", 32, v->patch);
    GETI(o, "num_channels", 3, v->channels);
    double eps;
    GETF(o, "layer_norm_eps", 1e-5, eps);
    v->eps = (float)eps;
    if (llava_json_str(o, "hidden_act", "quick_gelu", &act, what, err)) return -1;
    if (parse_act(act, &v->act, what, "vision_config.hidden_act", err)) return -1;
    if (positive(v->hidden, what, "vision_config.hidden_size", err) ||
        positive(v->intermediate, what, "vision_config.intermediate_size", err) ||
        positive(v->layers, what, "vision_config.num_hidden_layers", err) ||
        positive(v->heads, what, "vision_config.num_attention_heads", err) ||
        positive(v->image_size, what, "vision_config.image_size", err) ||
        positive(v->patch, what, "vision_config.patch_size", err))
        return -1;
    if (v->channels != 3) return llava_errf(err, "%s: vision_config.num_channels must be 3", what);
    if (v->hidden % v->heads) return llava_errf(err, "%s: vision hidden_size %d is not a multiple of num_attention_heads %d", what, v->hidden, v->heads);
    if (v->image_size % v->patch) return llava_errf(err, "%s: vision image_size %d is not a multiple of patch_size %d", what, v->image_size, v->patch);
    v->head_dim = v->hidden / v->heads;
    return 0;
fail:
    return -1;
}

static int load_text(llava_text_config *t, const cJSON *o, const char *what, llava_err *err) {
    const char *mt = NULL, *act = NULL;
    if (llava_json_str(o, "model_type", "llama", &mt, what, err)) return -1;
    int mistral = !strcmp(mt, "mistral");
    if (!mistral && strcmp(mt, "llama"))
        return llava_errf(err, "%s: text_config.model_type \"%s\" is not supported (mistral, llama)", what, mt);
    GETI(o, "vocab_size", 32000, t->vocab);
    GETI(o, "hidden_size", 4096, t->hidden);
    GETI(o, "intermediate_size", mistral ? 14336 : 11008, t->intermediate);
    GETI(o, "num_hidden_layers", 32, t->layers);
    GETI(o, "num_attention_heads", 32, t->heads);
    GETI(o, "num_key_value_heads", mistral ? 8 : t->heads, t->kv_heads);
    GETI(o, "max_position_embeddings", mistral ? 4096 * 32 : 2048, t->max_pos);
    if (positive(t->hidden, what, "text_config.hidden_size", err) ||
        positive(t->heads, what, "text_config.num_attention_heads", err) ||
        positive(t->kv_heads, what, "text_config.num_key_value_heads", err) ||
        positive(t->layers, what, "text_config.num_hidden_layers", err) ||
        positive(t->intermediate, what, "text_config.intermediate_size", err) ||
        positive(t->vocab, what, "text_config.vocab_size", err))
        return -1;
    GETI(o, "head_dim", t->hidden / t->heads, t->head_dim);
    if (t->head_dim <= 0 || t->head_dim % 2)
        return llava_errf(err, "%s: text_config.head_dim must be a positive even number (got %d)", what, t->head_dim);
    if (t->heads % t->kv_heads)
        return llava_errf(err, "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d", what, t->heads, t->kv_heads);
    /* explicit null (the published config) means no window; absent means MistralConfig's 4096 */
    const cJSON *sw = cJSON_GetObjectItemCaseSensitive(o, "sliding_window");
    GETI(o, "sliding_window", sw ? 0 : (mistral ? 4096 : 0), t->sliding_window);
    if (t->sliding_window < 0) t->sliding_window = 0;
    double eps;
    GETF(o, "rms_norm_eps", 1e-6, eps);
    t->eps = (float)eps;
    /* rope: v4 writes rope_theta (+ rope_scaling), v5 writes rope_parameters {rope_theta, rope_type} */
    GETF(o, "rope_theta", mistral ? 10000.0 : 10000.0, t->rope_theta);
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(o, "rope_parameters");
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(o, "rope_scaling");
    if (rp && cJSON_IsObject(rp)) {
        GETF(rp, "rope_theta", t->rope_theta, t->rope_theta);
        rs = rp;
    }
    if (rs && cJSON_IsObject(rs)) {
        const char *type = NULL;
        if (llava_json_str(rs, "rope_type", NULL, &type, what, err)) return -1;
        if (!type && llava_json_str(rs, "type", "default", &type, what, err)) return -1;
        if (!type) type = "default";
        if (strcmp(type, "default"))
            return llava_errf(err, "%s: rope scaling \"%s\" is not supported (only default RoPE)", what, type);
    }
    int bias = 0;
    if (llava_json_bool(o, "attention_bias", 0, &bias, what, err)) return -1;
    if (bias) return llava_errf(err, "%s: text_config.attention_bias=true is not supported", what);
    if (llava_json_bool(o, "mlp_bias", 0, &bias, what, err)) return -1;
    if (bias) return llava_errf(err, "%s: text_config.mlp_bias=true is not supported", what);
    if (llava_json_bool(o, "tie_word_embeddings", 0, &t->tie_embeddings, what, err)) return -1;
    if (llava_json_str(o, "hidden_act", "silu", &act, what, err)) return -1;
    if (parse_act(act, &t->act, what, "text_config.hidden_act", err)) return -1;
    if (t->act != LLAVA_ACT_SILU) return llava_errf(err, "%s: text_config.hidden_act must be silu", what);
    return 0;
fail:
    return -1;
}

static int load_pinpoints(llava_config *c, const cJSON *arr, const char *what, llava_err *err) {
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) == 0 || cJSON_GetArraySize(arr) > LLAVA_MAX_PINPOINTS)
        return llava_errf(err, "%s: image_grid_pinpoints must be a non-empty list of [height, width] pairs", what);
    int n = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, arr) {
        if (!cJSON_IsArray(p) || cJSON_GetArraySize(p) != 2 || !cJSON_IsNumber(cJSON_GetArrayItem(p, 0)) ||
            !cJSON_IsNumber(cJSON_GetArrayItem(p, 1)))
            return llava_errf(err, "%s: image_grid_pinpoints entry %d is not a [height, width] pair", what, n);
        int h = cJSON_GetArrayItem(p, 0)->valueint, w = cJSON_GetArrayItem(p, 1)->valueint;
        if (h <= 0 || w <= 0 || h > 16384 || w > 16384)
            return llava_errf(err, "%s: image_grid_pinpoints entry %d (%d, %d) is out of range", what, n, h, w);
        c->pinpoints[n][0] = h;
        c->pinpoints[n][1] = w;
        n++;
    }
    c->n_pinpoints = n;
    return 0;
}

static int load_float3(float out[3], const cJSON *o, const char *key, const char *what, llava_err *err) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!a || cJSON_IsNull(a)) return 0;
    if (cJSON_IsNumber(a)) {
        out[0] = out[1] = out[2] = (float)a->valuedouble;
        return 0;
    }
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != 3)
        return llava_errf(err, "%s: \"%s\" must be a list of 3 numbers", what, key);
    for (int i = 0; i < 3; i++) {
        const cJSON *x = cJSON_GetArrayItem(a, i);
        if (!cJSON_IsNumber(x)) return llava_errf(err, "%s: \"%s\" must be a list of 3 numbers", what, key);
        out[i] = (float)x->valuedouble;
    }
    return 0;
}

/* size-like values: an int, or {"height": h, ...} / {"shortest_edge": s} */
static int size_edge(const cJSON *o, const char *key, int def, int *out, const char *what, llava_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    *out = def;
    if (!v || cJSON_IsNull(v)) return 0;
    if (cJSON_IsNumber(v)) *out = v->valueint;
    else if (cJSON_IsObject(v)) {
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(v, "height");
        const cJSON *w = cJSON_GetObjectItemCaseSensitive(v, "width");
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(v, "shortest_edge");
        if (cJSON_IsNumber(h) && cJSON_IsNumber(w)) {
            if (h->valueint != w->valueint)
                return llava_errf(err, "%s: non-square \"%s\" (%dx%d) is not supported", what, key, h->valueint, w->valueint);
            *out = h->valueint;
        } else if (cJSON_IsNumber(s)) *out = s->valueint;
        else return llava_errf(err, "%s: \"%s\" must hold height/width or shortest_edge", what, key);
    } else return llava_errf(err, "%s: \"%s\" must be a number or an object", what, key);
    if (*out <= 0) return llava_errf(err, "%s: \"%s\" must be positive", what, key);
    return 0;
}

static int load_eos(llava_config *c, const cJSON *v, const char *what, llava_err *err) {
    if (!v || cJSON_IsNull(v)) return 0;
    c->n_eos = 0;
    if (cJSON_IsNumber(v)) {
        c->eos_ids[c->n_eos++] = v->valueint;
        return 0;
    }
    if (!cJSON_IsArray(v)) return llava_errf(err, "%s: eos_token_id must be an integer or a list", what);
    const cJSON *x;
    cJSON_ArrayForEach(x, v) {
        if (!cJSON_IsNumber(x)) return llava_errf(err, "%s: eos_token_id list must hold integers", what);
        if (c->n_eos < LLAVA_MAX_EOS) c->eos_ids[c->n_eos++] = x->valueint;
    }
    return 0;
}

int llava_config_load(llava_config *c, const char *model_dir, llava_err *err) {
    memset(c, 0, sizeof *c);
    cJSON *root = NULL, *pp = NULL, *proc = NULL, *gen = NULL;
    char *path = llava_path_join(model_dir, "config.json");
    const char *what = path;
    int rc = -1;
    root = llava_json_load(path, err);
    if (!root) goto fail;
    if (!cJSON_IsObject(root)) {
        llava_errf(err, "%s: expected a JSON object", path);
        goto fail;
    }
    const char *mt = NULL;
    if (llava_json_str(root, "model_type", "", &mt, what, err)) goto fail;
    if (strcmp(mt, "llava_next")) {
        llava_errf(err, "%s: model_type is \"%s\"; llava.c runs LLaVA-NeXT checkpoints (model_type \"llava_next\")", path, mt);
        goto fail;
    }
    const cJSON *vc = cJSON_GetObjectItemCaseSensitive(root, "vision_config");
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(root, "text_config");
    if (!cJSON_IsObject(vc) || !cJSON_IsObject(tc)) {
        llava_errf(err, "%s: vision_config and text_config objects are required", path);
        goto fail;
    }
    if (load_vision(&c->vision, vc, what, err) || load_text(&c->text, tc, what, err)) goto fail;
    const cJSON *itk = cJSON_GetObjectItemCaseSensitive(root, "image_token_index");
    GETI(root, itk ? "image_token_index" : "image_token_id", 32000, c->image_token_index);
    const cJSON *vfl = cJSON_GetObjectItemCaseSensitive(root, "vision_feature_layer");
    if (vfl && cJSON_IsArray(vfl)) {
        llava_errf(err, "%s: a list of vision_feature_layer values is not supported", path);
        goto fail;
    }
    GETI(root, "vision_feature_layer", -2, c->vision_feature_layer);
    {
        int nl = c->vision.layers, l = c->vision_feature_layer;
        if (l < -(nl + 1) || l > nl) {
            llava_errf(err, "%s: vision_feature_layer %d is outside the %d hidden states of the vision tower", path, l, nl + 1);
            goto fail;
        }
    }
    const char *strat = NULL, *pact = NULL;
    if (llava_json_str(root, "vision_feature_select_strategy", "default", &strat, what, err)) goto fail;
    if (!strcmp(strat, "default")) c->select_default = 1;
    else if (!strcmp(strat, "full")) c->select_default = 0;
    else {
        llava_errf(err, "%s: vision_feature_select_strategy \"%s\" is not supported (default, full)", path, strat);
        goto fail;
    }
    if (llava_json_str(root, "projector_hidden_act", "gelu", &pact, what, err)) goto fail;
    if (parse_act(pact, &c->proj_act, what, "projector_hidden_act", err)) goto fail;
    if (llava_json_bool(root, "multimodal_projector_bias", 1, &c->proj_bias, what, err)) goto fail;
    int tie_top = 0;
    if (llava_json_bool(root, "tie_word_embeddings", 0, &tie_top, what, err)) goto fail;
    c->text.tie_embeddings = c->text.tie_embeddings || tie_top;
    const cJSON *pins = cJSON_GetObjectItemCaseSensitive(root, "image_grid_pinpoints");
    if (pins && !cJSON_IsNull(pins)) {
        if (load_pinpoints(c, pins, what, err)) goto fail;
    } else {
        static const int def[5][2] = {{336, 672}, {672, 336}, {672, 672}, {1008, 336}, {336, 1008}};
        memcpy(c->pinpoints, def, sizeof def);
        c->n_pinpoints = 5;
    }
    GETI(tc, "bos_token_id", 1, c->bos_id);
    GETI(tc, "pad_token_id", -1, c->pad_id);
    c->n_eos = 1;
    c->eos_ids[0] = 2;
    if (load_eos(c, cJSON_GetObjectItemCaseSensitive(tc, "eos_token_id"), what, err)) goto fail;

    /* image processor: defaults as the published llava-v1.6 preprocessor_config.json */
    c->crop_size = c->vision.image_size;
    c->do_rescale = c->do_normalize = 1;
    c->rescale_factor = 1.0 / 255.0;
    const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f}, stdv[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    memcpy(c->image_mean, mean, sizeof mean);
    memcpy(c->image_std, stdv, sizeof stdv);
    c->num_additional_image_tokens = 1;
    free(path);
    path = llava_path_join(model_dir, "preprocessor_config.json");
    what = path;
    if (llava_file_exists(path)) {
        pp = llava_json_load(path, err);
        if (!pp) goto fail;
        if (size_edge(pp, "crop_size", c->crop_size, &c->crop_size, what, err)) goto fail;
        if (llava_json_bool(pp, "do_rescale", 1, &c->do_rescale, what, err)) goto fail;
        if (llava_json_bool(pp, "do_normalize", 1, &c->do_normalize, what, err)) goto fail;
        GETF(pp, "rescale_factor", c->rescale_factor, c->rescale_factor);
        if (load_float3(c->image_mean, pp, "image_mean", what, err) || load_float3(c->image_std, pp, "image_std", what, err))
            goto fail;
        const cJSON *pp_pins = cJSON_GetObjectItemCaseSensitive(pp, "image_grid_pinpoints");
        if (pp_pins && !cJSON_IsNull(pp_pins) && load_pinpoints(c, pp_pins, what, err)) goto fail;
        GETI(pp, "num_additional_image_tokens", c->num_additional_image_tokens, c->num_additional_image_tokens);
        for (int i = 0; i < 3; i++)
            if (!(c->image_std[i] != 0)) {
                llava_errf(err, "%s: image_std must be non-zero", path);
                goto fail;
            }
    }
    if (c->crop_size != c->vision.image_size) {
        llava_errf(err, "%s: crop_size %d differs from the vision tower's image_size %d", path, c->crop_size, c->vision.image_size);
        goto fail;
    }
    for (int i = 0; i < c->n_pinpoints; i++)
        if (c->pinpoints[i][0] % c->crop_size || c->pinpoints[i][1] % c->crop_size) {
            llava_errf(err, "%s: grid pinpoint (%d, %d) is not a multiple of the tile size %d", what, c->pinpoints[i][0],
                       c->pinpoints[i][1], c->crop_size);
            goto fail;
        }
    free(path);
    path = llava_path_join(model_dir, "processor_config.json");
    what = path;
    if (llava_file_exists(path)) {
        proc = llava_json_load(path, err);
        if (!proc) goto fail;
        GETI(proc, "num_additional_image_tokens", c->num_additional_image_tokens, c->num_additional_image_tokens);
        const char *ps = NULL;
        if (llava_json_str(proc, "vision_feature_select_strategy", strat, &ps, what, err)) goto fail;
        if (strcmp(ps, strat)) {
            llava_errf(err, "%s: vision_feature_select_strategy \"%s\" differs from config.json's \"%s\"", path, ps, strat);
            goto fail;
        }
    }
    free(path);
    path = llava_path_join(model_dir, "generation_config.json");
    what = path;
    if (llava_file_exists(path)) {
        gen = llava_json_load(path, err);
        if (!gen) goto fail;
        if (load_eos(c, cJSON_GetObjectItemCaseSensitive(gen, "eos_token_id"), what, err)) goto fail;
        GETI(gen, "bos_token_id", c->bos_id, c->bos_id);
        GETI(gen, "pad_token_id", c->pad_id, c->pad_id);
    }
    if (c->image_token_index < 0 || c->image_token_index >= c->text.vocab) {
        llava_errf(err, "%s/config.json: image_token_index %d is outside the vocabulary (%d)", model_dir, c->image_token_index,
                   c->text.vocab);
        goto fail;
    }
    rc = 0;
fail:
    free(path);
    cJSON_Delete(root);
    cJSON_Delete(pp);
    cJSON_Delete(proc);
    cJSON_Delete(gen);
    return rc;
}
