/* weights.c — Hugging Face name lookup with the legacy llava-hf aliases (see weights.h). */
#include "model/weights.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "util/mem.h"

static const char *const ALIASES[][2] = {
    {"model.language_model.", "language_model.model."},
    {"model.vision_tower.", "vision_tower."},
    {"model.multi_modal_projector.", "multi_modal_projector."},
    {"model.image_newline", "image_newline"},
    {"lm_head.", "language_model.lm_head."},
};

const llava_tensor *llava_weight_find(const llava_safetensors *st, const char *name) {
    const llava_tensor *t = llava_st_find(st, name);
    if (t) return t;
    for (size_t i = 0; i < sizeof ALIASES / sizeof ALIASES[0]; i++) {
        size_t n = strlen(ALIASES[i][0]);
        if (strncmp(name, ALIASES[i][0], n)) continue;
        char alt[512];
        snprintf(alt, sizeof alt, "%s%s", ALIASES[i][1], name + n);
        return llava_st_find(st, alt);
    }
    return NULL;
}

int llava_weight_f32(float **out, const llava_safetensors *st, const char *name, int ndim, const int64_t *shape,
                     llava_err *err) {
    *out = NULL;
    const llava_tensor *t = llava_weight_find(st, name);
    if (!t) return llava_errf(err, "tensor %s is missing from the checkpoint (is this a LLaVA-NeXT model directory?)", name);
    if (llava_tensor_expect(t, ndim, shape, err)) return -1;
    float *buf = llava_try_malloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1), name, err);
    if (!buf) return -1;
    if (llava_tensor_to_f32(buf, t, err)) {
        free(buf);
        return -1;
    }
    *out = buf;
    return 0;
}

int llava_weight_f32f(float **out, const llava_safetensors *st, llava_err *err, int64_t d0, int64_t d1, int64_t d2,
                      int64_t d3, const char *fmt, ...) {
    char name[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    int64_t shape[4] = {d0, d1, d2, d3};
    int ndim = d3 ? 4 : d2 ? 3 : d1 ? 2 : 1;
    return llava_weight_f32(out, st, name, ndim, shape, err);
}
