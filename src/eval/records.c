/* records.c — prediction and truth files for `llava eval` (see records.h for the formats).
 *
 * Both files are read whole (they are text, one short record per image) and parsed in place;
 * strings are copied into a chunked arena so a million records cost a handful of allocations.
 * Ids are indexed in open-addressing hash maps for the duplicate check and the join.
 */
#include "eval/records.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "formats/json.h"
#include "util/mem.h"

#define MAX_INPUT_BYTES ((size_t)1 << 36) /* 64 GiB: a sanity bound, not a design limit */

/* ---- arena and id maps ---------------------------------------------------------------------- */

typedef struct chunk {
    struct chunk *next;
    size_t used, cap;
    _Alignas(16) char data[];
} chunk;

typedef struct strmap {
    const char **keys; /* (cap) NULL = empty slot */
    int *vals;         /* (cap) */
    size_t cap, n;
} strmap;

struct llava_eval_arena {
    chunk *head;
    strmap pred_ids, truth_ids;
};

static void *arena_alloc(llava_eval_arena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (!a->head || a->head->cap - a->head->used < n) {
        size_t cap = n > ((size_t)1 << 20) ? n : ((size_t)1 << 20);
        chunk *c = xmalloc(sizeof(chunk) + cap);
        c->next = a->head;
        c->used = 0;
        c->cap = cap;
        a->head = c;
    }
    void *p = a->head->data + a->head->used;
    a->head->used += n;
    return p;
}

static const char *arena_strndup(llava_eval_arena *a, const char *s, size_t n) {
    char *p = arena_alloc(a, n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static void strmap_free(strmap *m) {
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

/* Slot of key: its own if present, else the empty slot where it would go. */
static size_t strmap_slot(const strmap *m, const char *key) {
    size_t i = (size_t)hash_str(key) & (m->cap - 1);
    while (m->keys[i] && strcmp(m->keys[i], key) != 0) i = (i + 1) & (m->cap - 1);
    return i;
}

static int strmap_get(const strmap *m, const char *key) {
    if (!m->cap) return -1;
    size_t i = strmap_slot(m, key);
    return m->keys[i] ? m->vals[i] : -1;
}

/* Inserts key -> val unless key is there; returns the value already stored, or -1. */
static int strmap_put(strmap *m, const char *key, int val) {
    if (2 * (m->n + 1) > m->cap) {
        strmap old = *m;
        m->cap = old.cap ? 2 * old.cap : 64;
        m->keys = xcalloc(m->cap, sizeof *m->keys);
        m->vals = xmalloc(m->cap * sizeof *m->vals);
        for (size_t i = 0; i < old.cap; i++)
            if (old.keys[i]) {
                size_t j = strmap_slot(m, old.keys[i]);
                m->keys[j] = old.keys[i];
                m->vals[j] = old.vals[i];
            }
        free(old.keys);
        free(old.vals);
    }
    size_t i = strmap_slot(m, key);
    if (m->keys[i]) return m->vals[i];
    m->keys[i] = key;
    m->vals[i] = val;
    m->n++;
    return -1;
}

void llava_eval_set_free(llava_eval_set *s) {
    if (!s) return;
    if (s->arena) {
        for (chunk *c = s->arena->head, *next; c; c = next) {
            next = c->next;
            free(c);
        }
        strmap_free(&s->arena->pred_ids);
        strmap_free(&s->arena->truth_ids);
        free(s->arena);
    }
    free(s->pred_path);
    free(s->truth_path);
    free(s->pred);
    free(s->truth);
    free(s->pair_truth);
    free(s->pair_pred);
    free(s->pair_truth_label);
    free(s->pair_pred_label);
    free(s->pair_prob);
    free(s->pair_top_k);
    free(s->pair_n_top_k);
    free(s->failed);
    free(s->missing);
    free(s->extra);
    memset(s, 0, sizeof *s);
}

static llava_eval_arena *arena_of(llava_eval_set *s) {
    if (!s->arena) s->arena = xcalloc(1, sizeof *s->arena);
    return s->arena;
}

/* ---- file kinds -------------------------------------------------------------------------------- */

enum { KIND_JSONL, KIND_CSV, KIND_TSV };

static int ends_with_ci(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcasecmp(s + a - b, suffix) == 0;
}

static const char *skip_bom(const char *p, const char *end) {
    if (end - p >= 3 && (unsigned char)p[0] == 0xEF && (unsigned char)p[1] == 0xBB && (unsigned char)p[2] == 0xBF)
        return p + 3;
    return p;
}

static int file_kind(const char *path, const char *buf, const char *end) {
    if (ends_with_ci(path, ".jsonl") || ends_with_ci(path, ".ndjson")) return KIND_JSONL;
    if (ends_with_ci(path, ".csv")) return KIND_CSV;
    if (ends_with_ci(path, ".tsv")) return KIND_TSV;
    for (const char *p = skip_bom(buf, end); p < end; p++)
        if (!isspace((unsigned char)*p)) return *p == '{' ? KIND_JSONL : KIND_CSV;
    return KIND_CSV;
}

/* ---- CSV ------------------------------------------------------------------------------------ */

typedef struct csv_reader {
    const char *p, *end, *path;
    char delim;
    int line;         /* line number at p */
    char *buf;        /* the current row's fields, each NUL-terminated */
    size_t len, cap;
    size_t *offs;     /* (n) field offsets into buf */
    const char **f;   /* (n) the fields, valid until the next row */
    int n, fcap;
    int first_quoted; /* field 0 was quoted (a row of one empty quoted field is not blank) */
} csv_reader;

static void csv_putc(csv_reader *r, char c) {
    if (r->len + 1 >= r->cap) {
        r->cap = r->cap ? 2 * r->cap : 256;
        r->buf = xrealloc(r->buf, r->cap);
    }
    r->buf[r->len++] = c;
}

static void csv_begin_field(csv_reader *r) {
    if (r->n == r->fcap) {
        r->fcap = r->fcap ? 2 * r->fcap : 8;
        r->offs = xrealloc(r->offs, sizeof *r->offs * (size_t)r->fcap);
        r->f = xrealloc(r->f, sizeof *r->f * (size_t)r->fcap);
    }
    r->offs[r->n++] = r->len;
}

static void csv_free(csv_reader *r) {
    free(r->buf);
    free(r->offs);
    free(r->f);
}

/* Reads one row into r->f / r->n. Returns 1 for a row (blank rows are skipped), 0 at the end of
 * the input, -1 on a quoting error. *row_line is the line the row starts on. */
static int csv_row(csv_reader *r, int *row_line, llava_err *err) {
    for (;;) {
        if (r->p >= r->end) return 0;
        r->len = 0;
        r->n = 0;
        r->first_quoted = 0;
        *row_line = r->line;
        for (;;) { /* one field */
            csv_begin_field(r);
            while (r->p < r->end && (*r->p == ' ' || (*r->p == '\t' && r->delim != '\t'))) r->p++;
            if (r->p < r->end && *r->p == '"') {
                int qline = r->line;
                if (r->n == 1) r->first_quoted = 1;
                r->p++;
                for (;;) {
                    if (r->p >= r->end)
                        return llava_errf(err, "%s:%d: unterminated quoted field (the quote opens on this line)",
                                          r->path, qline);
                    char c = *r->p++;
                    if (c == '"') {
                        if (r->p < r->end && *r->p == '"') {
                            csv_putc(r, '"');
                            r->p++;
                            continue;
                        }
                        break;
                    }
                    if (c == '\n') r->line++;
                    csv_putc(r, c);
                }
                while (r->p < r->end && (*r->p == ' ' || (*r->p == '\t' && r->delim != '\t'))) r->p++;
                if (r->p < r->end && *r->p != r->delim && *r->p != '\n' && *r->p != '\r')
                    return llava_errf(err, "%s:%d: unexpected text after a closing quote (write a quote inside a "
                                      "quoted field as \"\")", r->path, r->line);
            } else {
                size_t start = r->len;
                while (r->p < r->end && *r->p != r->delim && *r->p != '\n' && *r->p != '\r') csv_putc(r, *r->p++);
                while (r->len > start && (r->buf[r->len - 1] == ' ' || r->buf[r->len - 1] == '\t')) r->len--;
            }
            csv_putc(r, 0);
            if (r->p < r->end && *r->p == r->delim) {
                r->p++;
                continue;
            }
            if (r->p < r->end && *r->p == '\r') r->p++;
            if (r->p < r->end && *r->p == '\n') r->p++;
            r->line++;
            break;
        }
        for (int i = 0; i < r->n; i++) r->f[i] = r->buf + r->offs[i];
        if (r->n == 1 && !r->first_quoted && r->f[0][0] == 0) continue; /* blank line */
        return 1;
    }
}

static int find_col(const csv_reader *r, const char *name) {
    for (int i = 0; i < r->n; i++)
        if (strcasecmp(r->f[i], name) == 0) return i;
    return -1;
}

/* ---- field checks ------------------------------------------------------------------------------ */

static int parse_prob(const char *text, double *out, const char *path, int line, llava_err *err) {
    char *endp = NULL;
    errno = 0;
    double v = strtod(text, &endp);
    if (endp == text || *endp || errno == ERANGE || !(v >= 0.0 && v <= 1.0))
        return llava_errf(err, "%s:%d: probability \"%s\" is not a number in [0, 1]", path, line, text);
    *out = v;
    return 0;
}

/* rec->top_k from a JSON list of {"label", "probability"} objects (or of label strings). */
static int read_top_k(llava_eval_arena *a, llava_pred_rec *rec, const cJSON *tk, const char *path, int line,
                      llava_err *err) {
    if (!tk || cJSON_IsNull(tk)) return 0;
    if (!cJSON_IsArray(tk))
        return llava_errf(err, "%s:%d: \"top_k\" must be a list of {\"label\", \"probability\"}", path, line);
    int n = cJSON_GetArraySize(tk);
    rec->top_k = arena_alloc(a, sizeof(char *) * (size_t)(n ? n : 1));
    rec->n_top_k = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, tk) {
        const char *l = NULL;
        if (cJSON_IsString(e)) l = e->valuestring;
        else if (cJSON_IsObject(e)) {
            const cJSON *lv = cJSON_GetObjectItemCaseSensitive(e, "label");
            if (cJSON_IsString(lv)) l = lv->valuestring;
        }
        if (!l || !*l)
            return llava_errf(err, "%s:%d: top_k entry %d has no \"label\" string", path, line, rec->n_top_k + 1);
        rec->top_k[rec->n_top_k++] = arena_strndup(a, l, strlen(l));
    }
    return 0;
}

static int add_pred(llava_eval_set *s, llava_pred_rec *rec, const char *path, llava_err *err) {
    llava_eval_arena *a = arena_of(s);
    int prev = strmap_put(&a->pred_ids, rec->id, s->n_pred);
    if (prev >= 0)
        return llava_errf(err, "%s:%d: duplicate id \"%s\" (first on line %d); each input must have one prediction",
                          path, rec->line, rec->id, s->pred[prev].line);
    if ((s->n_pred & (s->n_pred - 1)) == 0) /* grow at powers of two */
        s->pred = xrealloc(s->pred, sizeof *s->pred * (size_t)(s->n_pred ? 2 * s->n_pred : 1));
    s->pred[s->n_pred++] = *rec;
    if (rec->error) s->n_pred_errors++;
    return 0;
}

static int add_truth(llava_eval_set *s, const char *id, const char *label, int line, const char *path,
                     llava_err *err) {
    llava_eval_arena *a = arena_of(s);
    int prev = strmap_put(&a->truth_ids, id, s->n_truth);
    if (prev >= 0)
        return llava_errf(err, "%s:%d: duplicate id \"%s\" (first on line %d); the truth must give one label per id",
                          path, line, id, s->truth[prev].line);
    if ((s->n_truth & (s->n_truth - 1)) == 0)
        s->truth = xrealloc(s->truth, sizeof *s->truth * (size_t)(s->n_truth ? 2 * s->n_truth : 1));
    s->truth[s->n_truth++] = (llava_truth_rec){id, label, line};
    return 0;
}

/* ---- CSV loaders ------------------------------------------------------------------------------- */

static int load_pred_csv(llava_eval_set *s, const char *path, const char *buf, const char *end, char delim,
                         llava_err *err) {
    llava_eval_arena *a = arena_of(s);
    csv_reader r = {.p = skip_bom(buf, end), .end = end, .path = path, .delim = delim, .line = 1};
    int line, rc, first = 1, ncols = 0;
    int c_id = 0, c_label = 1, c_prob = -1, c_err = -1, c_img = -1, c_topk = -1, c_truth = -1;
    while ((rc = csv_row(&r, &line, err)) == 1) {
        if (first) {
            first = 0;
            if (find_col(&r, "id") >= 0 && find_col(&r, "label") >= 0) {
                c_id = find_col(&r, "id");
                c_label = find_col(&r, "label");
                c_prob = find_col(&r, "probability");
                c_err = find_col(&r, "error");
                c_img = find_col(&r, "image");
                c_topk = find_col(&r, "top_k");
                c_truth = find_col(&r, "truth");
                ncols = r.n;
                continue;
            }
        }
        if (ncols) {
            if (r.n != ncols) {
                rc = llava_errf(err, "%s:%d: %d fields, but the header has %d", path, line, r.n, ncols);
                break;
            }
        } else if (r.n != 2 && r.n != 3) {
            rc = llava_errf(err, "%s:%d: expected id,label[,probability] (2 or 3 fields), found %d field%s", path,
                            line, r.n, r.n == 1 ? "" : "s");
            break;
        } else {
            c_prob = r.n == 3 ? 2 : -1;
        }
        llava_pred_rec rec = {.prob = NAN, .line = line};
        if (!r.f[c_id][0]) {
            rc = llava_errf(err, "%s:%d: empty id", path, line);
            break;
        }
        rec.id = arena_strndup(a, r.f[c_id], strlen(r.f[c_id]));
        if (c_img >= 0 && r.f[c_img][0]) rec.image = arena_strndup(a, r.f[c_img], strlen(r.f[c_img]));
        if (c_truth >= 0 && r.f[c_truth][0]) rec.truth = arena_strndup(a, r.f[c_truth], strlen(r.f[c_truth]));
        if (c_err >= 0 && r.f[c_err][0]) {
            rec.error = arena_strndup(a, r.f[c_err], strlen(r.f[c_err]));
        } else {
            if (!r.f[c_label][0]) {
                rc = llava_errf(err, "%s:%d: empty label (and no error) for id \"%s\"", path, line, rec.id);
                break;
            }
            rec.label = arena_strndup(a, r.f[c_label], strlen(r.f[c_label]));
            if (c_prob >= 0 && r.f[c_prob][0] && parse_prob(r.f[c_prob], &rec.prob, path, line, err)) {
                rc = -1;
                break;
            }
            if (c_topk >= 0 && r.f[c_topk][0]) { /* the JSON list classify writes into one quoted field */
                cJSON *tk = cJSON_Parse(r.f[c_topk]);
                int bad = !tk ? llava_errf(err, "%s:%d: the top_k field is not a JSON list", path, line)
                              : read_top_k(a, &rec, tk, path, line, err);
                cJSON_Delete(tk);
                if (bad) {
                    rc = -1;
                    break;
                }
            }
        }
        if (add_pred(s, &rec, path, err)) {
            rc = -1;
            break;
        }
    }
    csv_free(&r);
    return rc < 0 ? -1 : 0;
}

static int load_truth_csv(llava_eval_set *s, const char *path, const char *buf, const char *end, char delim,
                          llava_err *err) {
    llava_eval_arena *a = arena_of(s);
    csv_reader r = {.p = skip_bom(buf, end), .end = end, .path = path, .delim = delim, .line = 1};
    int line, rc, first = 1, ncols = 0, c_id = 0, c_label = 1;
    while ((rc = csv_row(&r, &line, err)) == 1) {
        if (first) {
            first = 0;
            if (find_col(&r, "id") >= 0 && find_col(&r, "label") >= 0) {
                c_id = find_col(&r, "id");
                c_label = find_col(&r, "label");
                ncols = r.n;
                continue;
            }
        }
        if (ncols) {
            if (r.n != ncols) {
                rc = llava_errf(err, "%s:%d: %d fields, but the header has %d", path, line, r.n, ncols);
                break;
            }
        } else if (r.n == 2 || r.n == 3) {
            c_label = r.n - 1; /* id,label or the classify manifest id,path,label */
        } else {
            rc = llava_errf(err, "%s:%d: expected id,label (or id,path,label), found %d field%s", path, line, r.n,
                            r.n == 1 ? "" : "s");
            break;
        }
        if (!r.f[c_id][0] || !r.f[c_label][0]) {
            rc = llava_errf(err, "%s:%d: empty %s", path, line, !r.f[c_id][0] ? "id" : "label");
            break;
        }
        const char *id = arena_strndup(a, r.f[c_id], strlen(r.f[c_id]));
        const char *label = arena_strndup(a, r.f[c_label], strlen(r.f[c_label]));
        if (add_truth(s, id, label, line, path, err)) {
            rc = -1;
            break;
        }
    }
    csv_free(&r);
    return rc < 0 ? -1 : 0;
}

/* ---- JSON lines ------------------------------------------------------------------------------- */

/* Calls fn on every non-blank line as a parsed object. */
typedef int (*jsonl_fn)(llava_eval_set *s, const cJSON *obj, const char *path, int line, llava_err *err);

static int each_jsonl(llava_eval_set *s, const char *path, const char *buf, const char *end, jsonl_fn fn,
                      llava_err *err) {
    const char *p = skip_bom(buf, end);
    for (int line = 1; p < end; line++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        const char *q = p;
        while (q < le && isspace((unsigned char)*q)) q++;
        if (q < le) {
            const char *stop = NULL;
            cJSON *obj = cJSON_ParseWithLengthOpts(p, (size_t)(le - p), &stop, 0);
            int trailing = 0;
            if (obj && stop)
                for (const char *t = stop; t < le; t++)
                    if (!isspace((unsigned char)*t)) trailing = 1;
            if (!obj || trailing) {
                size_t col = stop && stop >= p && stop <= le ? (size_t)(stop - p) + 1 : 1;
                cJSON_Delete(obj);
                return llava_errf(err, "%s:%d: invalid JSON near column %zu%s", path, line, col,
                                  nl ? "" : " (the last line has no newline: was the file cut off mid-write?)");
            }
            if (!cJSON_IsObject(obj)) {
                cJSON_Delete(obj);
                return llava_errf(err, "%s:%d: expected a JSON object", path, line);
            }
            int rc = fn(s, obj, path, line, err);
            cJSON_Delete(obj);
            if (rc) return -1;
        }
        p = nl ? nl + 1 : end;
    }
    return 0;
}

/* A string field, or an integer id written as a number. NULL when absent or null; -1 on a wrong
 * type. */
static int json_text(const cJSON *obj, const char *key, int allow_int, const char **out, char *numbuf, size_t nb,
                     const char *path, int line, llava_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    *out = NULL;
    if (!v || cJSON_IsNull(v)) return 0;
    if (cJSON_IsString(v)) {
        *out = v->valuestring;
        return 0;
    }
    if (allow_int && cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) && fabs(v->valuedouble) < 9e15) {
        snprintf(numbuf, nb, "%lld", (long long)v->valuedouble);
        *out = numbuf;
        return 0;
    }
    return llava_errf(err, "%s:%d: \"%s\" must be a string%s", path, line, key, allow_int ? " or an integer" : "");
}

static int pred_line(llava_eval_set *s, const cJSON *obj, const char *path, int line, llava_err *err) {
    llava_eval_arena *a = arena_of(s);
    char num[32];
    const char *id, *label, *image, *error, *truth;
    if (json_text(obj, "id", 1, &id, num, sizeof num, path, line, err)) return -1;
    if (!id || !*id) return llava_errf(err, "%s:%d: record without an \"id\"", path, line);
    if (json_text(obj, "label", 0, &label, NULL, 0, path, line, err)) return -1;
    if (json_text(obj, "image", 0, &image, NULL, 0, path, line, err)) return -1;
    if (json_text(obj, "error", 0, &error, NULL, 0, path, line, err)) return -1;
    if (json_text(obj, "truth", 0, &truth, NULL, 0, path, line, err)) return -1;
    llava_pred_rec rec = {.prob = NAN, .line = line};
    rec.id = arena_strndup(a, id, strlen(id));
    if (image) rec.image = arena_strndup(a, image, strlen(image));
    if (truth && *truth) rec.truth = arena_strndup(a, truth, strlen(truth));
    if (error) {
        rec.error = arena_strndup(a, error, strlen(error));
        return add_pred(s, &rec, path, err);
    }
    if (!label || !*label)
        return llava_errf(err, "%s:%d: record \"%s\" has neither a \"label\" nor an \"error\"", path, line, rec.id);
    rec.label = arena_strndup(a, label, strlen(label));
    const cJSON *pv = cJSON_GetObjectItemCaseSensitive(obj, "probability");
    if (pv && !cJSON_IsNull(pv)) {
        if (!cJSON_IsNumber(pv) || !(pv->valuedouble >= 0.0 && pv->valuedouble <= 1.0))
            return llava_errf(err, "%s:%d: \"probability\" must be a number in [0, 1]", path, line);
        rec.prob = pv->valuedouble;
    }
    if (read_top_k(a, &rec, cJSON_GetObjectItemCaseSensitive(obj, "top_k"), path, line, err)) return -1;
    return add_pred(s, &rec, path, err);
}

static int truth_line(llava_eval_set *s, const cJSON *obj, const char *path, int line, llava_err *err) {
    llava_eval_arena *a = arena_of(s);
    char num[32];
    const char *id, *label;
    if (json_text(obj, "id", 1, &id, num, sizeof num, path, line, err)) return -1;
    if (json_text(obj, "label", 0, &label, NULL, 0, path, line, err)) return -1;
    if (!id || !*id) return llava_errf(err, "%s:%d: record without an \"id\"", path, line);
    if (!label || !*label) return llava_errf(err, "%s:%d: record \"%s\" without a \"label\"", path, line, id);
    return add_truth(s, arena_strndup(a, id, strlen(id)), arena_strndup(a, label, strlen(label)), line, path, err);
}

/* ---- loaders ---------------------------------------------------------------------------------- */

typedef int (*csv_fn)(llava_eval_set *s, const char *path, const char *buf, const char *end, char delim,
                      llava_err *err);

/* Reads a predictions or truth file (what names it in messages), remembers its path in *saved_path,
 * and parses it as JSONL (line_fn per record) or CSV/TSV (csv). */
static int load_records(llava_eval_set *s, const char *path, const char *what, char **saved_path, jsonl_fn line_fn,
                        csv_fn csv, llava_err *err) {
    size_t len = 0;
    char *buf = llava_read_file(path, &len, MAX_INPUT_BYTES, err);
    if (!buf) return llava_err_prefix(err, "%s", what);
    free(*saved_path);
    *saved_path = xstrdup(path);
    int kind = file_kind(path, buf, buf + len), rc;
    if (kind == KIND_JSONL) rc = each_jsonl(s, path, buf, buf + len, line_fn, err);
    else rc = csv(s, path, buf, buf + len, kind == KIND_TSV ? '\t' : ',', err);
    free(buf);
    return rc;
}

int llava_eval_load_pred(llava_eval_set *s, const char *path, llava_err *err) {
    return load_records(s, path, "predictions", &s->pred_path, pred_line, load_pred_csv, err);
}

int llava_eval_load_truth(llava_eval_set *s, const char *path, llava_err *err) {
    int rc = load_records(s, path, "truth", &s->truth_path, truth_line, load_truth_csv, err);
    if (rc == 0 && s->n_truth == 0) return llava_errf(err, "%s: no records (expected id,label rows)", path);
    return rc;
}

int llava_eval_truth_from_pred(llava_eval_set *s, llava_err *err) {
    const char *pp = s->pred_path ? s->pred_path : "predictions";
    for (int i = 0; i < s->n_pred; i++)
        if (s->pred[i].truth && add_truth(s, s->pred[i].id, s->pred[i].truth, s->pred[i].line, pp, err)) return -1;
    if (s->n_truth == 0)
        return llava_errf(err, "%s: no --truth file given and no prediction carries a \"truth\" label (classify "
                          "writes one when its .csv/.jsonl manifest has labels)", pp);
    size_t n = strlen(pp) + 32;
    free(s->truth_path);
    s->truth_path = xmalloc(n);
    snprintf(s->truth_path, n, "%s (\"truth\" fields)", pp);
    return 0;
}

void llava_eval_join(llava_eval_set *s) {
    llava_eval_arena *a = arena_of(s);
    CHECK(!s->pair_truth); /* join once */
    size_t nt = (size_t)(s->n_truth ? s->n_truth : 1), np = (size_t)(s->n_pred ? s->n_pred : 1);
    s->pair_truth = xmalloc(nt * sizeof(int));
    s->pair_pred = xmalloc(nt * sizeof(int));
    s->pair_truth_label = xmalloc(nt * sizeof(char *));
    s->pair_pred_label = xmalloc(nt * sizeof(char *));
    s->pair_prob = xmalloc(nt * sizeof(double));
    s->pair_top_k = xmalloc(nt * sizeof(char **));
    s->pair_n_top_k = xmalloc(nt * sizeof(int));
    s->failed = xmalloc(nt * sizeof(int));
    s->missing = xmalloc(nt * sizeof(int));
    s->extra = xmalloc(np * sizeof(int));
    s->n_pairs = s->n_failed = s->n_missing = s->n_extra = 0;
    s->min_top_k = 0;
    for (int t = 0; t < s->n_truth; t++) {
        int p = strmap_get(&a->pred_ids, s->truth[t].id);
        if (p < 0) {
            s->missing[s->n_missing++] = t;
            continue;
        }
        const llava_pred_rec *r = &s->pred[p];
        if (r->error) {
            s->failed[s->n_failed++] = p;
            continue;
        }
        int i = s->n_pairs++;
        s->pair_truth[i] = t;
        s->pair_pred[i] = p;
        s->pair_truth_label[i] = s->truth[t].label;
        s->pair_pred_label[i] = r->label;
        s->pair_prob[i] = r->prob;
        s->pair_top_k[i] = r->top_k ? (const char *const *)r->top_k : (const char *const *)&r->label;
        s->pair_n_top_k[i] = r->top_k ? r->n_top_k : 1;
        if (i == 0 || s->pair_n_top_k[i] < s->min_top_k) s->min_top_k = s->pair_n_top_k[i];
    }
    for (int p = 0; p < s->n_pred; p++)
        if (strmap_get(&a->truth_ids, s->pred[p].id) < 0) s->extra[s->n_extra++] = p;
}

int llava_eval_set_load(llava_eval_set *s, const char *pred_path, const char *truth_path, llava_err *err) {
    memset(s, 0, sizeof *s);
    arena_of(s);
    if (llava_eval_load_pred(s, pred_path, err)) return -1;
    if (truth_path ? llava_eval_load_truth(s, truth_path, err) : llava_eval_truth_from_pred(s, err)) return -1;
    llava_eval_join(s);
    return 0;
}

llava_eval_pairs llava_eval_set_pairs(const llava_eval_set *s, int k) {
    return (llava_eval_pairs){
        .n = s->n_pairs,
        .truth = s->pair_truth_label,
        .pred = s->pair_pred_label,
        .prob = s->pair_prob,
        .top_k = s->pair_top_k,
        .n_top_k = s->pair_n_top_k,
        .k = k,
    };
}
