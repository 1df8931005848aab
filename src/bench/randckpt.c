/* randckpt.c — random BF16 checkpoint writer (see randckpt.h). */
#include "bench/randckpt.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/config.h"
#include "formats/safetensors.h"
#include "util/mem.h"

enum { FILL_NORMAL, FILL_ONE, FILL_ZERO };

typedef struct {
    char name[160];
    int ndim;
    int64_t shape[4];
    int fill;
} spec;

typedef struct {
    spec *v;
    int n, cap;
} spec_list;

static void add(spec_list *l, int fill, int64_t d0, int64_t d1, int64_t d2, int64_t d3, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

static void add(spec_list *l, int fill, int64_t d0, int64_t d1, int64_t d2, int64_t d3, const char *fmt, ...) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->v = xrealloc(l->v, sizeof(spec) * (size_t)l->cap);
    }
    spec *s = &l->v[l->n++];
    memset(s, 0, sizeof *s);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->name, sizeof s->name, fmt, ap);
    va_end(ap);
    s->shape[0] = d0, s->shape[1] = d1, s->shape[2] = d2, s->shape[3] = d3;
    s->ndim = d3 ? 4 : d2 ? 3 : d1 ? 2 : 1;
    s->fill = fill;
}

static uint64_t mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t name_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static void fill(uint16_t *dst, int64_t n, const spec *s, uint64_t seed) {
    if (s->fill != FILL_NORMAL) {
        uint16_t v = s->fill == FILL_ONE ? llava_f32_to_bf16(1.0f) : 0;
        for (int64_t i = 0; i < n; i++) dst[i] = v;
        return;
    }
    const uint64_t key = mix64(seed ^ name_hash(s->name));
    /* Irwin–Hall: sum of 4 uniforms has mean 2, variance 1/3 */
    const float scale = 0.02f * sqrtf(3.0f) / 65536.0f;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        uint64_t r = mix64(key + (uint64_t)i);
        float sum = (float)(r & 0xFFFF) + (float)((r >> 16) & 0xFFFF) + (float)((r >> 32) & 0xFFFF) + (float)(r >> 48);
        dst[i] = llava_f32_to_bf16((sum - 131070.0f) * scale);
    }
}

static int64_t numel(const spec *s) {
    int64_t n = 1;
    for (int d = 0; d < s->ndim; d++) n *= s->shape[d];
    return n;
}

/* Writes the specs [a, b) as one shard file. */
static int write_shard(const char *path, const spec *specs, int a, int b, uint64_t seed, llava_err *err) {
    int n = b - a;
    llava_st_entry *e = xcalloc((size_t)n, sizeof *e);
    uint16_t **bufs = xcalloc((size_t)n, sizeof *bufs);
    int rc = -1;
    for (int i = 0; i < n; i++) {
        const spec *s = &specs[a + i];
        int64_t k = numel(s);
        bufs[i] = llava_try_malloc(sizeof(uint16_t) * (size_t)(k ? k : 1), s->name, err);
        if (!bufs[i]) goto done;
        fill(bufs[i], k, s, seed);
        e[i].name = s->name;
        e[i].dtype = LLAVA_DT_BF16;
        e[i].ndim = s->ndim;
        memcpy(e[i].shape, s->shape, sizeof(int64_t) * 4);
        e[i].data = bufs[i];
    }
    const char *meta[] = {"format", "pt"};
    rc = llava_st_write(path, e, n, meta, 1, err);
done:
    for (int i = 0; i < n; i++) free(bufs[i]);
    free(bufs);
    free(e);
    return rc;
}

static int copy_file(const char *src, const char *dst, llava_err *err) {
    size_t len;
    char *buf = llava_read_file(src, &len, (size_t)256 << 20, err);
    if (!buf) return -1;
    FILE *f = fopen(dst, "wb");
    if (!f) {
        free(buf);
        return llava_errf(err, "cannot write %s: %s", dst, strerror(errno));
    }
    size_t w = fwrite(buf, 1, len, f);
    free(buf);
    if (fclose(f) != 0 || w != len) return llava_errf(err, "cannot write %s: %s", dst, strerror(errno));
    return 0;
}

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

int bench_random_checkpoint(const char *config, const char *donor_dir, const char *out_dir, uint64_t seed,
                            int64_t *n_params, llava_err *err) {
    if (n_params) *n_params = 0;
    /* 1. the configuration and auxiliary files */
    char *cfg_dir, *cfg_file;
    if (is_dir(config)) {
        cfg_dir = xstrdup(config);
        cfg_file = llava_path_join(config, "config.json");
    } else {
        cfg_file = xstrdup(config);
        const char *slash = strrchr(config, '/');
        cfg_dir = slash ? strndup(config, (size_t)(slash - config)) : xstrdup(".");
        if (!cfg_dir) cfg_dir = xstrdup(".");
    }
    int rc = -1;
    char *dst = llava_path_join(out_dir, "config.json");
    if (!llava_file_exists(cfg_file)) {
        llava_errf(err, "--config %s: no config.json there (give a model folder or its config.json)", config);
        goto files_done;
    }
    if (copy_file(cfg_file, dst, err)) goto files_done;
    /* config-specific files: from the config's folder if there, else from the donor */
    static const char *const own[] = {"preprocessor_config.json", "processor_config.json", "generation_config.json"};
    /* the tokenizer and template always come from the donor unless the config folder has a tokenizer */
    static const char *const tok[] = {"tokenizer.json", "tokenizer_config.json", "chat_template.json"};
    for (size_t i = 0; i < 3; i++) {
        char *a = llava_path_join(cfg_dir, own[i]), *b = llava_path_join(donor_dir, own[i]);
        char *d = llava_path_join(out_dir, own[i]);
        int bad = 0;
        if (llava_file_exists(a)) bad = copy_file(a, d, err);
        else if (llava_file_exists(b)) bad = copy_file(b, d, err);
        free(a), free(b), free(d);
        if (bad) goto files_done;
    }
    char *has_tok = llava_path_join(cfg_dir, "tokenizer.json");
    const char *tok_src = llava_file_exists(has_tok) ? cfg_dir : donor_dir;
    free(has_tok);
    for (size_t i = 0; i < 3; i++) {
        char *a = llava_path_join(tok_src, tok[i]), *d = llava_path_join(out_dir, tok[i]);
        int bad = 0;
        if (!llava_file_exists(a))
            bad = llava_errf(err, "%s is missing (the tokenizer of a random-weight model comes from %s; "
                                  "pass --tokenizer-dir tests/fixtures/tiny-a)", a, tok_src);
        else
            bad = copy_file(a, d, err);
        free(a), free(d);
        if (bad) goto files_done;
    }
    rc = 0;
files_done:
    free(dst), free(cfg_dir), free(cfg_file);
    if (rc) return -1;

    llava_config c;
    if (llava_config_load(&c, out_dir, err)) return llava_err_prefix(err, "--config %s", config);

    /* 2. the tensor list */
    spec_list l = {0};
    const llava_vision_config *v = &c.vision;
    const llava_text_config *t = &c.text;
    const int64_t D = v->hidden, I = v->intermediate, P = v->patch, G = v->image_size / v->patch;
    const int64_t H = t->hidden, TI = t->intermediate, V = t->vocab;
    const int64_t QD = (int64_t)t->heads * t->head_dim, KD = (int64_t)t->kv_heads * t->head_dim;
#define VT "vision_tower.vision_model."
    add(&l, FILL_NORMAL, D, 3, P, P, VT "embeddings.patch_embedding.weight");
    add(&l, FILL_NORMAL, D, 0, 0, 0, VT "embeddings.class_embedding");
    add(&l, FILL_NORMAL, G * G + 1, D, 0, 0, VT "embeddings.position_embedding.weight");
    add(&l, FILL_ONE, D, 0, 0, 0, VT "pre_layrnorm.weight");
    add(&l, FILL_ZERO, D, 0, 0, 0, VT "pre_layrnorm.bias");
    for (int i = 0; i < v->layers; i++) {
        add(&l, FILL_ONE, D, 0, 0, 0, VT "encoder.layers.%d.layer_norm1.weight", i);
        add(&l, FILL_ZERO, D, 0, 0, 0, VT "encoder.layers.%d.layer_norm1.bias", i);
        static const char *const pr[] = {"q_proj", "k_proj", "v_proj", "out_proj"};
        for (int k = 0; k < 4; k++) {
            add(&l, FILL_NORMAL, D, D, 0, 0, VT "encoder.layers.%d.self_attn.%s.weight", i, pr[k]);
            add(&l, FILL_ZERO, D, 0, 0, 0, VT "encoder.layers.%d.self_attn.%s.bias", i, pr[k]);
        }
        add(&l, FILL_ONE, D, 0, 0, 0, VT "encoder.layers.%d.layer_norm2.weight", i);
        add(&l, FILL_ZERO, D, 0, 0, 0, VT "encoder.layers.%d.layer_norm2.bias", i);
        add(&l, FILL_NORMAL, I, D, 0, 0, VT "encoder.layers.%d.mlp.fc1.weight", i);
        add(&l, FILL_ZERO, I, 0, 0, 0, VT "encoder.layers.%d.mlp.fc1.bias", i);
        add(&l, FILL_NORMAL, D, I, 0, 0, VT "encoder.layers.%d.mlp.fc2.weight", i);
        add(&l, FILL_ZERO, D, 0, 0, 0, VT "encoder.layers.%d.mlp.fc2.bias", i);
    }
    add(&l, FILL_ONE, D, 0, 0, 0, VT "post_layernorm.weight");
    add(&l, FILL_ZERO, D, 0, 0, 0, VT "post_layernorm.bias");
#undef VT
    add(&l, FILL_NORMAL, H, D, 0, 0, "multi_modal_projector.linear_1.weight");
    if (c.proj_bias) add(&l, FILL_ZERO, H, 0, 0, 0, "multi_modal_projector.linear_1.bias");
    add(&l, FILL_NORMAL, H, H, 0, 0, "multi_modal_projector.linear_2.weight");
    if (c.proj_bias) add(&l, FILL_ZERO, H, 0, 0, 0, "multi_modal_projector.linear_2.bias");
    add(&l, FILL_NORMAL, H, 0, 0, 0, "image_newline");
    int shard_end[4096];
    int n_shards = 0;
    shard_end[n_shards++] = l.n; /* vision + projector */
    add(&l, FILL_NORMAL, V, H, 0, 0, "language_model.model.embed_tokens.weight");
    add(&l, FILL_ONE, H, 0, 0, 0, "language_model.model.norm.weight");
    if (!t->tie_embeddings) add(&l, FILL_NORMAL, V, H, 0, 0, "language_model.lm_head.weight");
    shard_end[n_shards++] = l.n;
    if (t->layers > 4000) {
        free(l.v);
        return llava_errf(err, "--config %s: %d decoder layers is more than this writer supports", config, t->layers);
    }
    for (int i = 0; i < t->layers; i++) {
#define LM "language_model.model.layers.%d."
        add(&l, FILL_ONE, H, 0, 0, 0, LM "input_layernorm.weight", i);
        add(&l, FILL_NORMAL, QD, H, 0, 0, LM "self_attn.q_proj.weight", i);
        add(&l, FILL_NORMAL, KD, H, 0, 0, LM "self_attn.k_proj.weight", i);
        add(&l, FILL_NORMAL, KD, H, 0, 0, LM "self_attn.v_proj.weight", i);
        add(&l, FILL_NORMAL, H, QD, 0, 0, LM "self_attn.o_proj.weight", i);
        add(&l, FILL_ONE, H, 0, 0, 0, LM "post_attention_layernorm.weight", i);
        add(&l, FILL_NORMAL, TI, H, 0, 0, LM "mlp.gate_proj.weight", i);
        add(&l, FILL_NORMAL, TI, H, 0, 0, LM "mlp.up_proj.weight", i);
        add(&l, FILL_NORMAL, H, TI, 0, 0, LM "mlp.down_proj.weight", i);
#undef LM
        shard_end[n_shards++] = l.n;
    }

    /* 3. the shards and the index */
    int64_t total_params = 0, total_bytes = 0;
    char **shard_name = xcalloc((size_t)n_shards, sizeof(char *));
    rc = 0;
    for (int s = 0, a = 0; s < n_shards && rc == 0; a = shard_end[s++]) {
        char nm[96];
        snprintf(nm, sizeof nm, "model-%05d-of-%05d.safetensors", s + 1, n_shards);
        shard_name[s] = xstrdup(nm);
        char *p = llava_path_join(out_dir, nm);
        rc = write_shard(p, l.v, a, shard_end[s], seed, err);
        free(p);
        for (int i = a; i < shard_end[s]; i++) total_params += numel(&l.v[i]);
    }
    total_bytes = 2 * total_params;
    if (rc == 0) {
        char *p = llava_path_join(out_dir, "model.safetensors.index.json");
        FILE *f = fopen(p, "w");
        if (!f) {
            rc = llava_errf(err, "cannot write %s: %s", p, strerror(errno));
        } else {
            fprintf(f, "{\n  \"metadata\": {\"total_size\": %lld},\n  \"weight_map\": {\n", (long long)total_bytes);
            for (int s = 0, a = 0; s < n_shards; a = shard_end[s++])
                for (int i = a; i < shard_end[s]; i++)
                    fprintf(f, "    \"%s\": \"%s\"%s\n", l.v[i].name, shard_name[s], i + 1 < l.n ? "," : "");
            fprintf(f, "  }\n}\n");
            if (fclose(f) != 0) rc = llava_errf(err, "cannot write %s: %s", p, strerror(errno));
        }
        free(p);
    }
    for (int s = 0; s < n_shards; s++) free(shard_name[s]);
    free(shard_name);
    free(l.v);
    if (rc == 0 && n_params) *n_params = total_params;
    return rc;
}

int bench_remove_flat_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *p = llava_path_join(dir, e->d_name);
        if (unlink(p) != 0) rc = -1;
        free(p);
    }
    closedir(d);
    if (rmdir(dir) != 0) rc = -1;
    return rc;
}
