/* json.c — cJSON wrappers with error messages (see json.h). */
#include "formats/json.h"

#include <stdlib.h>

#include "util/mem.h"

cJSON *llava_json_parse(const char *buf, size_t len, const char *what, llava_err *err) {
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
    if (!root) {
        size_t off = end && end >= buf ? (size_t)(end - buf) : 0;
        llava_errf(err, "%s: invalid JSON near byte %zu", what, off);
    }
    return root;
}

cJSON *llava_json_load(const char *path, llava_err *err) {
    size_t len = 0;
    char *buf = llava_read_file(path, &len, (size_t)1 << 30, err);
    if (!buf) return NULL;
    cJSON *root = llava_json_parse(buf, len, path, err);
    free(buf);
    return root;
}

static const cJSON *get(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

int llava_json_int(const cJSON *obj, const char *key, int64_t def, int64_t *out, const char *what, llava_err *err) {
    const cJSON *v = get(obj, key);
    if (!v) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int64_t)v->valuedouble)
        return llava_errf(err, "%s: \"%s\" must be an integer", what, key);
    *out = (int64_t)v->valuedouble;
    return 0;
}

int llava_json_num(const cJSON *obj, const char *key, double def, double *out, const char *what, llava_err *err) {
    const cJSON *v = get(obj, key);
    if (!v) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(v)) return llava_errf(err, "%s: \"%s\" must be a number", what, key);
    *out = v->valuedouble;
    return 0;
}

int llava_json_bool(const cJSON *obj, const char *key, int def, int *out, const char *what, llava_err *err) {
    const cJSON *v = get(obj, key);
    if (!v) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsBool(v)) return llava_errf(err, "%s: \"%s\" must be true or false", what, key);
    *out = cJSON_IsTrue(v);
    return 0;
}

int llava_json_str(const cJSON *obj, const char *key, const char *def, const char **out, const char *what, llava_err *err) {
    const cJSON *v = get(obj, key);
    if (!v) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsString(v)) return llava_errf(err, "%s: \"%s\" must be a string", what, key);
    *out = v->valuestring;
    return 0;
}
