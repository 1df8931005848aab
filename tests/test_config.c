/* test_config.c — config.json & co: the published llava-v1.6-mistral-7b files (defaults resolved as
 * transformers does, values from REFERENCE §1), the v5 form of the tiny fixtures, and errors. */
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/config.h"
#include "model/llava.h"
#include "model/pack.h"
#include "test.h"

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static int load_text(llava_config *c, const char *json, llava_err *err) {
    char dir[] = "/tmp/llava-cfg-XXXXXX";
    if (!mkdtemp(dir)) return -1;
    char p[256];
    snprintf(p, sizeof p, "%s/config.json", dir);
    write_file(p, json);
    int rc = llava_config_load(c, dir, err);
    remove(p);
    rmdir(dir);
    return rc;
}

int main(void) {
    llava_config c;
    llava_err err = {{0}};
    int rc = llava_config_load(&c, "tests/fixtures/configs/llava-v1.6-mistral-7b", &err);
    EXPECT(rc == 0, "7b config: %s", err.msg);
    /* REFERENCE §1: Mistral-7B backbone (defaults) and CLIP ViT-L/14-336 */
    EXPECT(c.text.hidden == 4096 && c.text.layers == 32 && c.text.heads == 32 && c.text.head_dim == 128,
           "text dims %d %d %d %d", c.text.hidden, c.text.layers, c.text.heads, c.text.head_dim);
    EXPECT(c.text.kv_heads == 8 && c.text.intermediate == 14336 && c.text.vocab == 32064, "text kv/inter/vocab");
    EXPECT(c.text.eps == 1e-5f && c.text.rope_theta == 1e6 && c.text.sliding_window == 0, "eps %g theta %g window %d",
           c.text.eps, c.text.rope_theta, c.text.sliding_window);
    EXPECT(!c.text.tie_embeddings, "untied lm_head");
    EXPECT(c.vision.hidden == 1024 && c.vision.layers == 24 && c.vision.heads == 16 && c.vision.head_dim == 64,
           "vision dims");
    EXPECT(c.vision.patch == 14 && c.vision.image_size == 336 && c.vision.eps == 1e-5f, "vision patch/size/eps");
    EXPECT(c.vision.act == LLAVA_ACT_QUICK_GELU && c.proj_act == LLAVA_ACT_GELU && c.proj_bias, "activations");
    EXPECT(c.vision_feature_layer == -2 && c.select_default && c.image_token_index == 32000, "feature layer/strategy");
    EXPECT(c.n_pinpoints == 5 && c.pinpoints[3][0] == 1008 && c.pinpoints[3][1] == 336, "pinpoints");
    EXPECT(c.crop_size == 336 && c.num_additional_image_tokens == 1, "crop/additional tokens");
    EXPECT(fabsf(c.image_std[2] - 0.27577711f) < 1e-9f && fabs(c.rescale_factor - 1.0 / 255) < 1e-15, "normalization");
    EXPECT(c.n_eos == 1 && c.eos_ids[0] == 2 && c.bos_id == 1, "bos/eos");
    /* REFERENCE §4 worked examples: (W x H) 550x412 -> 2340, 1000x750 -> 2340, 412x550 -> 2352 */
    llava_preproc_params pp;
    llava_preproc_from_config(&pp, &c);
    EXPECT(llava_pack_count(&pp, 24, 412, 550) == 2340, "550x412: %d", llava_pack_count(&pp, 24, 412, 550));
    EXPECT(llava_pack_count(&pp, 24, 750, 1000) == 2340, "1000x750: %d", llava_pack_count(&pp, 24, 750, 1000));
    EXPECT(llava_pack_count(&pp, 24, 550, 412) == 2352, "412x550: %d", llava_pack_count(&pp, 24, 550, 412));
    EXPECT(llava_image_token_count(&pp, 412, 550) == 2340, "processor count 550x412");
    /* 1280x853 (3:2) -> 2144 (PERFORMANCE-ANCHORS §2: the AWS prompt's 2168 = 2144 image tokens + 24 text) */
    EXPECT(llava_pack_count(&pp, 24, 853, 1280) == 2144, "1280x853: %d", llava_pack_count(&pp, 24, 853, 1280));

    /* the v5 form (rope_parameters, explicit head_dim) of the tiny fixtures */
    rc = llava_config_load(&c, "tests/fixtures/tiny-b", &err);
    EXPECT(rc == 0, "tiny-b: %s", err.msg);
    EXPECT(c.text.head_dim == 8 && c.text.heads == 3 && c.text.kv_heads == 1 && c.text.rope_theta == 1e6,
           "tiny-b text %d %d %d %g", c.text.head_dim, c.text.heads, c.text.kv_heads, c.text.rope_theta);
    EXPECT(c.vision_feature_layer == -1, "tiny-b feature layer");

    /* errors name the key */
    rc = load_text(&c, "{\"model_type\": \"llava_next\", \"vision_config\": {}}", &err);
    EXPECT(rc != 0 && strstr(err.msg, "text_config"), "missing text_config: %s", err.msg);
    rc = load_text(&c, "{\"model_type\": \"llava\", \"vision_config\": {}, \"text_config\": {}}", &err);
    EXPECT(rc != 0 && strstr(err.msg, "llava_next"), "wrong model_type: %s", err.msg);
    rc = load_text(&c, "{\"model_type\": \"llava_next\", \"vision_config\": {}, \"text_config\": {\"model_type\": \"mistral\", "
                       "\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2}}}", &err);
    EXPECT(rc != 0 && strstr(err.msg, "rope scaling"), "rope scaling: %s", err.msg);
    rc = load_text(&c, "{\"model_type\": \"llava_next\", \"vision_config\": {\"num_attention_heads\": 5}, \"text_config\": {}}",
                   &err);
    EXPECT(rc != 0 && strstr(err.msg, "num_attention_heads"), "heads: %s", err.msg);
    rc = load_text(&c, "{\"model_type\": \"llava_next\", \"vision_config\": {}, \"text_config\": {\"num_hidden_layers\": -1}}",
                   &err);
    EXPECT(rc != 0 && strstr(err.msg, "num_hidden_layers"), "negative layers: %s", err.msg);
    rc = load_text(&c, "{\"model_type\": \"llava_next\", \"vision_config\": {}, \"text_config\": {}, "
                       "\"vision_feature_layer\": [-2, -5]}", &err);
    EXPECT(rc != 0 && strstr(err.msg, "vision_feature_layer"), "layer list: %s", err.msg);
    rc = load_text(&c, "[1, 2]", &err);
    EXPECT(rc != 0, "array config");
    rc = load_text(&c, "{\"model_type\": \"llava_next\", \"vision_config\": {\"image_size\": 336, \"patch_size\": 14}, "
                       "\"text_config\": {}, \"image_grid_pinpoints\": [[336, 672], [7, 9]]}", &err);
    EXPECT(rc != 0 && strstr(err.msg, "pinpoint"), "pinpoint not multiple: %s", err.msg);
    TEST_END();
}
