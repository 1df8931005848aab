/* safetensors.c — safetensors reader (mmap, zero copy, validated header) and writer.
 * See safetensors.h for the contract. Every offset taken from a file is checked against the file
 * size before any pointer is formed from it; JSON numbers are accepted only when they are exact
 * non-negative integers no larger than 2^53 (what a double holds exactly).
 */
#include "formats/safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "formats/json.h"
#include "util/mem.h"

#define ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)
#define ST_MAX_JSON_INT 9007199254740992.0 /* 2^53 */

static const char *const dt_names[LLAVA_DT_COUNT] = {
    "F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL", "F8_E4M3", "F8_E5M2",
};
static const size_t dt_sizes[LLAVA_DT_COUNT] = {4, 2, 2, 8, 8, 4, 2, 1, 1, 1, 1, 1};

size_t llava_dtype_size(llava_dtype d) {
    return (unsigned)d < LLAVA_DT_COUNT ? dt_sizes[d] : 0;
}

const char *llava_dtype_name(llava_dtype d) {
    return (unsigned)d < LLAVA_DT_COUNT ? dt_names[d] : "?";
}

static int dtype_from_name(const char *s, llava_dtype *out) {
    for (int i = 0; i < LLAVA_DT_COUNT; i++)
        if (strcmp(s, dt_names[i]) == 0) {
            *out = (llava_dtype)i;
            return 0;
        }
    return -1;
}

/* ---------------------------------------------------------------------------------------------
 * Reader
 */

typedef struct {
    char *path;
    llava_mmap map;
} st_file;

struct llava_safetensors {
    llava_tensor *t; /* (n) sorted by name after open */
    int n, cap;
    st_file *files; /* (nfiles) */
    int nfiles;
    char **meta; /* (2 * nmeta) key, value, key, value ... of the first file */
    int nmeta;
};

static void st_free_contents(llava_safetensors *st) {
    for (int i = 0; i < st->n; i++) free((char *)st->t[i].name);
    free(st->t);
    for (int i = 0; i < st->nfiles; i++) {
        llava_mmap_close(&st->files[i].map);
        free(st->files[i].path);
    }
    free(st->files);
    for (int i = 0; i < 2 * st->nmeta; i++) free(st->meta[i]);
    free(st->meta);
}

void llava_st_close(llava_safetensors *st) {
    if (!st) return;
    st_free_contents(st);
    free(st);
}

/* An exact integer in [0, 2^53] from a JSON number. */
static int json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= 0) || d > ST_MAX_JSON_INT || d != floor(d)) return -1;
    *out = (uint64_t)d;
    return 0;
}

static int mul_overflows(uint64_t a, uint64_t b, uint64_t *out) {
    if (a != 0 && b > UINT64_MAX / a) return 1;
    *out = a * b;
    return 0;
}

/* Parses one tensor entry into *t (name not set). base: start of the data section; data_len:
 * its size. */
static int parse_entry(llava_tensor *t, const cJSON *e, const char *path, const char *name,
                       const uint8_t *base, uint64_t data_len, llava_err *err) {
    if (!cJSON_IsObject(e))
        return llava_errf(err, "%s: tensor \"%s\": header entry must be an object", path, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!dt) return llava_errf(err, "%s: tensor \"%s\": missing \"dtype\"", path, name);
    if (!sh) return llava_errf(err, "%s: tensor \"%s\": missing \"shape\"", path, name);
    if (!off) return llava_errf(err, "%s: tensor \"%s\": missing \"data_offsets\"", path, name);
    if (!cJSON_IsString(dt))
        return llava_errf(err, "%s: tensor \"%s\": \"dtype\" must be a string", path, name);
    if (dtype_from_name(dt->valuestring, &t->dtype) != 0)
        return llava_errf(err,
                          "%s: tensor \"%s\": unknown dtype \"%.40s\" (known: F32 F16 BF16 F64 I64 "
                          "I32 I16 I8 U8 BOOL F8_E4M3 F8_E5M2)",
                          path, name, dt->valuestring);
    if (!cJSON_IsArray(sh))
        return llava_errf(err, "%s: tensor \"%s\": \"shape\" must be an array", path, name);
    int nd = cJSON_GetArraySize(sh);
    if (nd > 8) return llava_errf(err, "%s: tensor \"%s\": %d dims, at most 8 supported", path, name, nd);
    t->ndim = nd;
    memset(t->shape, 0, sizeof t->shape);
    uint64_t numel = 1;
    int i = 0;
    for (const cJSON *d = sh->child; d; d = d->next, i++) {
        uint64_t v;
        if (json_uint(d, &v) != 0)
            return llava_errf(err, "%s: tensor \"%s\": shape[%d] is not a non-negative integer", path,
                              name, i);
        if (mul_overflows(numel, v, &numel) || numel > (uint64_t)INT64_MAX)
            return llava_errf(err, "%s: tensor \"%s\": element count overflows", path, name);
        t->shape[i] = (int64_t)v;
    }
    uint64_t nbytes;
    if (mul_overflows(numel, dt_sizes[t->dtype], &nbytes) || nbytes > (uint64_t)SIZE_MAX)
        return llava_errf(err, "%s: tensor \"%s\": byte size overflows", path, name);
    t->numel = (int64_t)numel;
    t->nbytes = (size_t)nbytes;
    uint64_t b, en;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || json_uint(off->child, &b) != 0 ||
        json_uint(off->child->next, &en) != 0)
        return llava_errf(err,
                          "%s: tensor \"%s\": \"data_offsets\" must be [begin, end] of non-negative "
                          "integers",
                          path, name);
    if (b > en)
        return llava_errf(err, "%s: tensor \"%s\": data_offsets [%llu, %llu] has begin > end", path,
                          name, (unsigned long long)b, (unsigned long long)en);
    if (en > data_len)
        return llava_errf(err,
                          "%s: tensor \"%s\": data_offsets end %llu is past the data section (%llu "
                          "bytes); the file is truncated or corrupt",
                          path, name, (unsigned long long)en, (unsigned long long)data_len);
    if (en - b != nbytes)
        return llava_errf(err,
                          "%s: tensor \"%s\": data_offsets span %llu bytes but %s shape needs %llu",
                          path, name, (unsigned long long)(en - b), dt_names[t->dtype],
                          (unsigned long long)nbytes);
    t->data = base + b;
    return 0;
}

static int cmp_by_offset(const void *a, const void *b) {
    const llava_tensor *x = *(const llava_tensor *const *)a, *y = *(const llava_tensor *const *)b;
    if (x->data != y->data) return (const uint8_t *)x->data < (const uint8_t *)y->data ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

static int cmp_by_name(const void *a, const void *b) {
    return strcmp(((const llava_tensor *)a)->name, ((const llava_tensor *)b)->name);
}

/* Maps path, validates its header and appends its tensors (unsorted) to st. The first file's
 * __metadata__ is kept. On failure st keeps whatever was appended; the caller frees it. */
static int st_add_file(llava_safetensors *st, const char *path, llava_err *err) {
    st->files = xrealloc(st->files, (size_t)(st->nfiles + 1) * sizeof *st->files);
    st_file *f = &st->files[st->nfiles++];
    f->path = xstrdup(path);
    f->map.data = NULL;
    f->map.size = 0;
    if (llava_mmap_open(&f->map, path, err) != 0) return -1;
    const char *fpath = f->path;
    const uint8_t *p = f->map.data;
    uint64_t size = f->map.size;
    if (size == 0) return llava_errf(err, "%s: file is empty (0 bytes), not a safetensors file", path);
    if (size < 8)
        return llava_errf(err, "%s: file is %llu bytes, too short for the 8-byte safetensors header length",
                          path, (unsigned long long)size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | p[i];
    if (hlen > ST_MAX_HEADER)
        return llava_errf(err,
                          "%s: header length %llu is larger than 100 MB; not a safetensors file or "
                          "corrupt",
                          path, (unsigned long long)hlen);
    if (hlen > size - 8)
        return llava_errf(err,
                          "%s: header length %llu runs past the end of the file (%llu bytes); the "
                          "file is truncated or not safetensors",
                          path, (unsigned long long)hlen, (unsigned long long)size);
    const char *hdr = (const char *)p + 8;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(hdr, (size_t)hlen, &end, 0);
    if (!root) {
        size_t at = end && end >= hdr ? (size_t)(end - hdr) : 0;
        return llava_errf(err, "%s: header is not valid JSON (near header byte %zu)", path, at);
    }
    if (end) {
        for (const char *q = end; q < hdr + hlen; q++)
            if (*q != ' ' && *q != '\t' && *q != '\n' && *q != '\r' && *q != '\0') {
                cJSON_Delete(root);
                return llava_errf(err, "%s: header has trailing bytes after the JSON object (at header byte %zu)",
                                  path, (size_t)(q - hdr));
            }
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return llava_errf(err, "%s: header must be a JSON object", path);
    }
    const uint8_t *base = p + 8 + hlen;
    uint64_t data_len = size - 8 - hlen;
    int first_file = st->nfiles == 1;
    int first_tensor = st->n;
    int rc = 0;
    for (const cJSON *e = root->child; e; e = e->next) {
        const char *name = e->string ? e->string : "";
        if (strcmp(name, "__metadata__") == 0) {
            if (!cJSON_IsObject(e)) {
                rc = llava_errf(err, "%s: \"__metadata__\" must be an object of strings", path);
                break;
            }
            for (const cJSON *m = e->child; m; m = m->next)
                if (!cJSON_IsString(m)) {
                    rc = llava_errf(err, "%s: __metadata__ \"%s\" must be a string", path,
                                    m->string ? m->string : "");
                    break;
                }
            if (rc) break;
            if (first_file && st->nmeta == 0) {
                int nm = cJSON_GetArraySize(e);
                st->meta = xcalloc((size_t)(2 * nm + 1), sizeof *st->meta);
                for (const cJSON *m = e->child; m; m = m->next) {
                    st->meta[2 * st->nmeta] = xstrdup(m->string ? m->string : "");
                    st->meta[2 * st->nmeta + 1] = xstrdup(m->valuestring);
                    st->nmeta++;
                }
            }
            continue;
        }
        if (st->n == st->cap) {
            st->cap = st->cap ? 2 * st->cap : 64;
            st->t = xrealloc(st->t, (size_t)st->cap * sizeof *st->t);
        }
        llava_tensor *t = &st->t[st->n];
        memset(t, 0, sizeof *t);
        if (parse_entry(t, e, path, name, base, data_len, err) != 0) {
            rc = -1;
            break;
        }
        t->name = xstrdup(name);
        t->file = fpath;
        st->n++;
    }
    cJSON_Delete(root);
    if (rc) return rc;

    /* Overlap check within this file: sort views by offset; each non-empty range must start at or
     * after the furthest end seen so far. Duplicate names inside one header are caught by the
     * global name sort. */
    int nt = st->n - first_tensor;
    if (nt > 1) {
        const llava_tensor **v = xmalloc((size_t)nt * sizeof *v);
        for (int i = 0; i < nt; i++) v[i] = &st->t[first_tensor + i];
        qsort(v, (size_t)nt, sizeof *v, cmp_by_offset);
        const llava_tensor *prev = NULL;
        for (int i = 0; i < nt && rc == 0; i++) {
            if (v[i]->nbytes == 0) continue;
            if (prev && (const uint8_t *)v[i]->data < (const uint8_t *)prev->data + prev->nbytes)
                rc = llava_errf(err,
                                "%s: tensors \"%s\" and \"%s\" have overlapping data_offsets [%zu, %zu) "
                                "and [%zu, %zu)",
                                path, prev->name, v[i]->name, (size_t)((const uint8_t *)prev->data - base),
                                (size_t)((const uint8_t *)prev->data - base) + prev->nbytes,
                                (size_t)((const uint8_t *)v[i]->data - base),
                                (size_t)((const uint8_t *)v[i]->data - base) + v[i]->nbytes);
            if (!prev || (const uint8_t *)v[i]->data + v[i]->nbytes >
                             (const uint8_t *)prev->data + prev->nbytes)
                prev = v[i];
        }
        free(v);
    }
    return rc;
}

/* Sorts by name and rejects duplicates. */
static int st_finish(llava_safetensors *st, llava_err *err) {
    if (st->n > 1) qsort(st->t, (size_t)st->n, sizeof *st->t, cmp_by_name);
    for (int i = 1; i < st->n; i++)
        if (strcmp(st->t[i - 1].name, st->t[i].name) == 0) {
            if (st->t[i - 1].file == st->t[i].file)
                return llava_errf(err, "%s: tensor \"%s\" appears twice in the header", st->t[i].file,
                                  st->t[i].name);
            return llava_errf(err, "tensor \"%s\" appears in two files: %s and %s", st->t[i].name,
                              st->t[i - 1].file, st->t[i].file);
        }
    return 0;
}

int llava_st_open(llava_safetensors **out, const char *path, llava_err *err) {
    CHECK(out && path);
    *out = NULL;
    llava_safetensors *st = xcalloc(1, sizeof *st);
    if (st_add_file(st, path, err) != 0 || st_finish(st, err) != 0) {
        llava_st_close(st);
        return -1;
    }
    *out = st;
    return 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Error for a directory with neither model.safetensors nor its index: list what is there. */
static int missing_model_err(const char *dir, llava_err *err) {
    char found[512] = "";
    size_t len = 0;
    int nfound = 0;
    DIR *d = opendir(dir);
    if (!d) return llava_errf(err, "%s: cannot open directory: %s", dir, strerror(errno));
    for (struct dirent *de; (de = readdir(d)) != NULL;) {
        size_t nl = strlen(de->d_name);
        if (nl < 12 || strcmp(de->d_name + nl - 12, ".safetensors") != 0) continue;
        if (len + nl + 3 < sizeof found) {
            len += (size_t)snprintf(found + len, sizeof found - len, "%s%s", nfound ? ", " : "", de->d_name);
        }
        nfound++;
    }
    closedir(d);
    if (nfound)
        return llava_errf(err,
                          "%s: expected model.safetensors or model.safetensors.index.json; found only "
                          "%s (an index is needed to know which files make up the model)",
                          dir, found);
    return llava_errf(err,
                      "%s: expected model.safetensors or model.safetensors.index.json; no "
                      "*.safetensors files there",
                      dir);
}

/* A shard name from an index must stay inside the model directory. */
static int shard_name_ok(const char *s) {
    if (!*s || s[0] == '/') return 0;
    for (const char *c = s; *c;) {
        const char *slash = strchr(c, '/');
        size_t n = slash ? (size_t)(slash - c) : strlen(c);
        if (n == 2 && c[0] == '.' && c[1] == '.') return 0;
        if (!slash) break;
        c = slash + 1;
    }
    return 1;
}

static int open_index(llava_safetensors *st, const char *dir, const char *ipath, llava_err *err) {
    cJSON *root = llava_json_load(ipath, err);
    if (!root) return -1;
    int rc = 0;
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    int nw = cJSON_IsObject(wm) ? cJSON_GetArraySize(wm) : 0;
    const char **shards = xcalloc((size_t)nw + 1, sizeof *shards);
    int ns = 0;
    if (!cJSON_IsObject(root) || !cJSON_IsObject(wm))
        rc = llava_errf(err, "%s: missing \"weight_map\" object (tensor name -> shard file)", ipath);
    else if (nw == 0)
        rc = llava_errf(err, "%s: \"weight_map\" is empty", ipath);
    for (const cJSON *e = rc ? NULL : wm->child; e; e = e->next) {
        if (!cJSON_IsString(e)) {
            rc = llava_errf(err, "%s: weight_map[\"%s\"] must be a file name string", ipath, e->string);
            break;
        }
        if (!shard_name_ok(e->valuestring)) {
            rc = llava_errf(err, "%s: weight_map[\"%s\"] = \"%s\" points outside the model directory",
                            ipath, e->string, e->valuestring);
            break;
        }
        shards[ns++] = e->valuestring;
    }
    if (rc == 0) {
        qsort(shards, (size_t)ns, sizeof *shards, cmp_str);
        int u = 0;
        for (int i = 0; i < ns; i++)
            if (u == 0 || strcmp(shards[u - 1], shards[i]) != 0) shards[u++] = shards[i];
        ns = u;
        for (int i = 0; i < ns && rc == 0; i++) {
            char *sp = llava_path_join(dir, shards[i]);
            if (!llava_file_exists(sp))
                rc = llava_errf(err, "%s: shard \"%s\" listed in weight_map is missing (%s)", ipath,
                                shards[i], sp);
            else
                rc = st_add_file(st, sp, err);
            free(sp);
        }
    }
    if (rc == 0) rc = st_finish(st, err);
    for (const cJSON *e = rc ? NULL : wm->child; e; e = e->next) {
        const llava_tensor *t = llava_st_find(st, e->string);
        char *sp = llava_path_join(dir, e->valuestring);
        if (!t)
            rc = llava_errf(err, "%s: tensor \"%s\" is listed in weight_map but absent from its shard %s",
                            ipath, e->string, sp);
        else if (strcmp(t->file, sp) != 0)
            rc = llava_errf(err, "%s: tensor \"%s\" is listed under shard %s but lives in %s", ipath,
                            e->string, sp, t->file);
        free(sp);
        if (rc) break;
    }
    free(shards);
    cJSON_Delete(root);
    return rc;
}

int llava_st_open_dir(llava_safetensors **out, const char *dir, llava_err *err) {
    CHECK(out && dir);
    *out = NULL;
    char *single = llava_path_join(dir, "model.safetensors");
    if (llava_file_exists(single)) {
        int rc = llava_st_open(out, single, err);
        free(single);
        return rc;
    }
    free(single);
    char *ipath = llava_path_join(dir, "model.safetensors.index.json");
    if (!llava_file_exists(ipath)) {
        free(ipath);
        return missing_model_err(dir, err);
    }
    llava_safetensors *st = xcalloc(1, sizeof *st);
    int rc = open_index(st, dir, ipath, err);
    free(ipath);
    if (rc != 0) {
        llava_st_close(st);
        return -1;
    }
    *out = st;
    return 0;
}

const llava_tensor *llava_st_find(const llava_safetensors *st, const char *name) {
    CHECK(st && name);
    int lo = 0, hi = st->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(st->t[mid].name, name);
        if (c == 0) return &st->t[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return NULL;
}

int llava_st_count(const llava_safetensors *st) {
    CHECK(st);
    return st->n;
}

const llava_tensor *llava_st_at(const llava_safetensors *st, int i) {
    CHECK(st && i >= 0 && i < st->n);
    return &st->t[i];
}

const char *llava_st_metadata(const llava_safetensors *st, const char *key) {
    CHECK(st && key);
    for (int i = 0; i < st->nmeta; i++)
        if (strcmp(st->meta[2 * i], key) == 0) return st->meta[2 * i + 1];
    return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Conversions
 */

float llava_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t llava_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0; /* nan, as torch */
    u += 0x7fffu + ((u >> 16) & 1u);                     /* round to nearest, ties to even */
    return (uint16_t)(u >> 16);
}

float llava_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t u;
    if (exp == 0x1f) {
        u = sign | 0x7f800000u | (man << 13); /* inf / nan (payload kept) */
    } else if (exp != 0) {
        u = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man == 0) {
        u = sign;
    } else { /* subnormal: man * 2^-24, normal in f32 */
        int e = -1;
        do {
            man <<= 1;
            e++;
        } while (!(man & 0x400u));
        u = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

int llava_tensor_to_f32(float *dst, const llava_tensor *t, llava_err *err) {
    CHECK(t && (dst || t->numel == 0));
    const uint8_t *src = t->data;
    int64_t n = t->numel;
    if (n == 0) return 0;
    switch (t->dtype) {
    case LLAVA_DT_F32:
        memcpy(dst, src, (size_t)n * 4);
        return 0;
    case LLAVA_DT_BF16:
#pragma omp parallel for if (n > (1 << 18))
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            dst[i] = llava_bf16_to_f32(h);
        }
        return 0;
    case LLAVA_DT_F16:
#pragma omp parallel for if (n > (1 << 18))
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            dst[i] = llava_f16_to_f32(h);
        }
        return 0;
    case LLAVA_DT_F64:
#pragma omp parallel for if (n > (1 << 18))
        for (int64_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, src + 8 * i, 8);
            dst[i] = (float)d;
        }
        return 0;
    default:
        return llava_errf(err, "%s: tensor \"%s\" has dtype %s; only F32, F16, BF16 and F64 convert to float",
                          t->file ? t->file : "?", t->name ? t->name : "?", llava_dtype_name(t->dtype));
    }
}

static void fmt_shape(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
}

int llava_tensor_expect(const llava_tensor *t, int ndim, const int64_t *shape, llava_err *err) {
    CHECK(ndim >= 0 && ndim <= 8 && (shape || ndim == 0));
    char want[256], got[256];
    fmt_shape(want, sizeof want, ndim, shape);
    if (!t) return llava_errf(err, "missing tensor (expected shape %s)", want);
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
    if (ok) return 0;
    fmt_shape(got, sizeof got, t->ndim, t->shape);
    return llava_errf(err, "%s: tensor \"%s\": expected shape %s, got %s", t->file ? t->file : "?",
                      t->name ? t->name : "?", want, got);
}

/* ---------------------------------------------------------------------------------------------
 * Writer
 */

typedef struct {
    char *p;
    size_t n, cap;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->p = xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_str(sbuf *b, const char *s) {
    sb_put(b, s, strlen(s));
}

static void sb_fmt(sbuf *b, const char *fmt, long long v) {
    char tmp[32];
    int k = snprintf(tmp, sizeof tmp, fmt, v);
    sb_put(b, tmp, (size_t)k);
}

/* A JSON string literal; bytes >= 0x80 pass through (UTF-8 is the caller's business). */
static void sb_json_str(sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        char esc[8];
        if (*c == '"' || *c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*c;
            sb_put(b, esc, 2);
        } else if (*c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", *c);
            sb_put(b, esc, 6);
        } else {
            sb_put(b, (const char *)c, 1);
        }
    }
    sb_put(b, "\"", 1);
}

static int write_all(FILE *f, const void *p, size_t n) {
    return n == 0 || fwrite(p, 1, n, f) == n ? 0 : -1;
}

int llava_st_write(const char *path, const llava_st_entry *entries, int n, const char *const *meta_kv,
                   int n_meta, llava_err *err) {
    CHECK(path && n >= 0 && n_meta >= 0 && (entries || n == 0) && (meta_kv || n_meta == 0));
    /* Validate, and check names are unique (sorted copy of the pointers). */
    size_t *sizes = xcalloc((size_t)n + 1, sizeof *sizes);
    const char **names = xcalloc((size_t)n + 1, sizeof *names);
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        const llava_st_entry *e = &entries[i];
        const char *nm = e->name ? e->name : "";
        names[i] = nm;
        uint64_t numel = 1;
        if (!*nm)
            rc = llava_errf(err, "%s: entry %d has an empty name", path, i);
        else if (strcmp(nm, "__metadata__") == 0)
            rc = llava_errf(err, "%s: \"__metadata__\" is reserved and cannot name a tensor", path);
        else if ((unsigned)e->dtype >= LLAVA_DT_COUNT)
            rc = llava_errf(err, "%s: tensor \"%s\": invalid dtype %d", path, nm, (int)e->dtype);
        else if (e->ndim < 0 || e->ndim > 8)
            rc = llava_errf(err, "%s: tensor \"%s\": ndim %d outside 0..8", path, nm, e->ndim);
        for (int d = 0; rc == 0 && d < e->ndim; d++) {
            if (e->shape[d] < 0)
                rc = llava_errf(err, "%s: tensor \"%s\": negative dim %lld", path, nm, (long long)e->shape[d]);
            else if (mul_overflows(numel, (uint64_t)e->shape[d], &numel) || numel > (uint64_t)1 << 53)
                rc = llava_errf(err, "%s: tensor \"%s\": element count overflows", path, nm);
        }
        if (rc) break;
        uint64_t nb = 0;
        if (mul_overflows(numel, dt_sizes[e->dtype], &nb) || nb > (uint64_t)1 << 53)
            rc = llava_errf(err, "%s: tensor \"%s\": byte size overflows", path, nm);
        else if (nb && !e->data)
            rc = llava_errf(err, "%s: tensor \"%s\": data is NULL for %llu bytes", path, nm,
                            (unsigned long long)nb);
        sizes[i] = (size_t)nb;
    }
    if (rc == 0 && n > 1) {
        qsort(names, (size_t)n, sizeof *names, cmp_str);
        for (int i = 1; i < n && rc == 0; i++)
            if (strcmp(names[i - 1], names[i]) == 0)
                rc = llava_errf(err, "%s: tensor \"%s\" given twice", path, names[i]);
    }
    for (int i = 0; i < n_meta && rc == 0; i++)
        if (!meta_kv[2 * i] || !meta_kv[2 * i + 1])
            rc = llava_errf(err, "%s: metadata pair %d has a NULL key or value", path, i);
    free(names);
    if (rc) {
        free(sizes);
        return rc;
    }

    sbuf h = {0};
    sb_str(&h, "{");
    int first = 1;
    if (n_meta > 0) {
        sb_str(&h, "\"__metadata__\":{");
        for (int i = 0; i < n_meta; i++) {
            if (i) sb_str(&h, ",");
            sb_json_str(&h, meta_kv[2 * i]);
            sb_str(&h, ":");
            sb_json_str(&h, meta_kv[2 * i + 1]);
        }
        sb_str(&h, "}");
        first = 0;
    }
    /* Data layout: larger elements first (stable), so with the 8-byte aligned data section every
     * tensor starts at a multiple of its element size, as Python safetensors arranges it. The
     * header lists the tensors in the caller's order. */
    int *order = xcalloc((size_t)n + 1, sizeof *order);
    uint64_t *offs = xcalloc((size_t)n + 1, sizeof *offs);
    int k = 0;
    for (size_t es = 8; es >= 1; es /= 2)
        for (int i = 0; i < n; i++)
            if (dt_sizes[entries[i].dtype] == es) order[k++] = i;
    CHECK(k == n);
    uint64_t off = 0;
    for (int j = 0; j < n; j++) {
        offs[order[j]] = off;
        off += sizes[order[j]];
    }
    for (int i = 0; i < n; i++) {
        const llava_st_entry *e = &entries[i];
        if (!first) sb_str(&h, ",");
        first = 0;
        sb_json_str(&h, e->name);
        sb_str(&h, ":{\"dtype\":\"");
        sb_str(&h, dt_names[e->dtype]);
        sb_str(&h, "\",\"shape\":[");
        for (int d = 0; d < e->ndim; d++) sb_fmt(&h, d ? ",%lld" : "%lld", (long long)e->shape[d]);
        sb_fmt(&h, "],\"data_offsets\":[%lld,", (long long)offs[i]);
        sb_fmt(&h, "%lld]}", (long long)(offs[i] + sizes[i]));
    }
    sb_str(&h, "}");
    while (h.n % 8) sb_put(&h, " ", 1);

    size_t tl = strlen(path);
    char *tmp = xmalloc(tl + 5);
    memcpy(tmp, path, tl);
    memcpy(tmp + tl, ".tmp", 5);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        rc = llava_errf(err, "%s: cannot create: %s", tmp, strerror(errno));
    } else {
        uint8_t len8[8];
        for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)h.n >> (8 * i));
        rc = write_all(f, len8, 8);
        if (rc == 0) rc = write_all(f, h.p, h.n);
        for (int j = 0; j < n && rc == 0; j++) rc = write_all(f, entries[order[j]].data, sizes[order[j]]);
        if (fflush(f) != 0) rc = -1;
        if (rc == 0 && fsync(fileno(f)) != 0) rc = -1;
        int saved = errno;
        if (fclose(f) != 0 && rc == 0) {
            rc = -1;
            saved = errno;
        }
        if (rc) llava_errf(err, "%s: write failed: %s", tmp, strerror(saved));
        if (rc == 0 && rename(tmp, path) != 0)
            rc = llava_errf(err, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
        if (rc) unlink(tmp);
    }
    free(tmp);
    free(order);
    free(offs);
    free(h.p);
    free(sizes);
    return rc;
}
