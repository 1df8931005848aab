/* weights.c — Hugging Face name lookup with the legacy llava-hf aliases (see weights.h). */
#include "model/weights.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "util/mem.h"

/* Each row: the canonical prefix, then the other prefixes the same tensors carry on disk.
 * Vision: published llava-hf shards say "vision_tower.vision_model.", transformers v5 saves
 * "vision_tower." (its CLIP tower has no vision_model level). */
static const char *const ALIASES[][4] = {
    {"model.vision_tower.vision_model.", "vision_tower.vision_model.", "model.vision_tower.", "vision_tower."},
    {"model.language_model.", "language_model.model.", NULL, NULL},
    {"model.multi_modal_projector.", "multi_modal_projector.", NULL, NULL},
    {"model.image_newline", "image_newline", NULL, NULL},
    {"lm_head.", "language_model.lm_head.", NULL, NULL},
};

const llava_tensor *llava_weight_find(const llava_safetensors *st, const char *name) {
    const llava_tensor *t = llava_st_find(st, name);
    if (t) return t;
    for (size_t i = 0; i < sizeof ALIASES / sizeof ALIASES[0]; i++) {
        size_t n = strlen(ALIASES[i][0]);
        if (strncmp(name, ALIASES[i][0], n)) continue;
        for (int a = 1; a < 4 && ALIASES[i][a]; a++) {
            char alt[512];
            snprintf(alt, sizeof alt, "%s%s", ALIASES[i][a], name + n);
            if ((t = llava_st_find(st, alt))) return t;
        }
        return NULL;
    }
    return NULL;
}

static const llava_tensor *get_checked(const llava_safetensors *st, const char *name, int ndim, const int64_t *shape,
                                       llava_err *err) {
    const llava_tensor *t = llava_weight_find(st, name);
    if (!t) {
        llava_errf(err, "tensor %s is missing from the checkpoint (is this a LLaVA-NeXT model directory?)", name);
        return NULL;
    }
    return llava_tensor_expect(t, ndim, shape, err) ? NULL : t;
}

static const llava_tensor *get_checkedv(const llava_safetensors *st, llava_err *err, const int64_t dims[4],
                                        const char *fmt, va_list ap) {
    char name[512];
    vsnprintf(name, sizeof name, fmt, ap);
    int ndim = dims[3] ? 4 : dims[2] ? 3 : dims[1] ? 2 : 1;
    return get_checked(st, name, ndim, dims, err);
}

const llava_tensor *llava_weight_getf(const llava_safetensors *st, llava_err *err, int64_t d0, int64_t d1, int64_t d2,
                                      int64_t d3, const char *fmt, ...) {
    const int64_t dims[4] = {d0, d1, d2, d3};
    va_list ap;
    va_start(ap, fmt);
    const llava_tensor *t = get_checkedv(st, err, dims, fmt, ap);
    va_end(ap);
    return t;
}

static int to_f32(float **out, const llava_tensor *t, llava_err *err) {
    *out = NULL;
    float *buf = llava_try_malloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1), t->name, err);
    if (!buf) return -1;
    if (llava_tensor_to_f32(buf, t, err)) {
        free(buf);
        return -1;
    }
    *out = buf;
    return 0;
}

int llava_weight_f32(float **out, const llava_safetensors *st, const char *name, int ndim, const int64_t *shape,
                     llava_err *err) {
    *out = NULL;
    const llava_tensor *t = get_checked(st, name, ndim, shape, err);
    return t ? to_f32(out, t, err) : -1;
}

int llava_weight_f32f(float **out, const llava_safetensors *st, llava_err *err, int64_t d0, int64_t d1, int64_t d2,
                      int64_t d3, const char *fmt, ...) {
    *out = NULL;
    const int64_t dims[4] = {d0, d1, d2, d3};
    va_list ap;
    va_start(ap, fmt);
    const llava_tensor *t = get_checkedv(st, err, dims, fmt, ap);
    va_end(ap);
    return t ? to_f32(out, t, err) : -1;
}
