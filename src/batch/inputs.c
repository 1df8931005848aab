/* inputs.c — input enumeration: files, directories, .txt/.csv/.jsonl manifests (see inputs.h). */
#include "batch/inputs.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "batch/idset.h"
#include "formats/json.h"
#include "util/mem.h"

/* Manifests larger than this are refused (a listing of ~10M paths). */
#define MANIFEST_MAX_BYTES ((size_t)4 << 30)

int llava_has_ext(const char *s, const char *ext) {
    size_t a = strlen(s), b = strlen(ext);
    return a >= b && strcasecmp(s + a - b, ext) == 0;
}

int llava_is_image_name(const char *name) {
    return llava_has_ext(name, ".jpg") || llava_has_ext(name, ".jpeg") || llava_has_ext(name, ".png") ||
           llava_has_ext(name, ".webp");
}

void llava_inputs_push(llava_inputs *in, const char *id, const char *path, const char *label) {
    if (in->n == in->cap) {
        in->cap = in->cap ? in->cap * 2 : 64;
        in->v = xrealloc(in->v, (size_t)in->cap * sizeof *in->v);
    }
    llava_input *x = &in->v[in->n++];
    x->id = xstrdup(id);
    x->path = xstrdup(path);
    x->label = label ? xstrdup(label) : NULL;
}

void llava_inputs_free(llava_inputs *in) {
    for (int i = 0; i < in->n; i++) {
        free(in->v[i].id);
        free(in->v[i].path);
        free(in->v[i].label);
    }
    free(in->v);
    memset(in, 0, sizeof *in);
}

int llava_inputs_check_unique(const llava_inputs *in, llava_err *err) {
    llava_idset s = {0};
    int ndup = 0;
    llava_sbuf msg = {0};
    for (int i = 0; i < in->n; i++) {
        int j = llava_idset_put(&s, in->v[i].id, i);
        if (j < 0) continue;
        if (ndup < 5) {
            llava_sbuf_puts(&msg, ndup ? ", " : "");
            llava_sbuf_json_str(&msg, in->v[i].id);
            if (strcmp(in->v[i].path, in->v[j].path) != 0)
                llava_sbuf_printf(&msg, " (%s and %s)", in->v[j].path, in->v[i].path);
        }
        ndup++;
    }
    llava_idset_free(&s);
    if (ndup)
        llava_errf(err, "%d duplicate input id%s: %s%s; every input needs its own id (remove the repeats, or give "
                   "ids in a .csv/.jsonl manifest)", ndup, ndup == 1 ? "" : "s", msg.p, ndup > 5 ? ", ..." : "");
    llava_sbuf_free(&msg);
    return ndup ? -1 : 0;
}

/* ---- directories -------------------------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int add_dir(llava_inputs *in, const char *dir, int depth, llava_err *err) {
    if (depth > 64) return llava_errf(err, "%s: directories nested deeper than 64 levels", dir);
    DIR *d = opendir(dir);
    if (!d) return llava_errf(err, "%s: cannot read directory: %s", dir, strerror(errno));
    char **names = NULL;
    int n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue; /* ., .., hidden files, macOS ._ forks */
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            names = xrealloc(names, (size_t)cap * sizeof *names);
        }
        names[n++] = xstrdup(e->d_name);
    }
    closedir(d);
    if (n > 1) qsort(names, (size_t)n, sizeof *names, cmp_str);
    int rc = 0;
    for (int i = 0; i < n; i++) {
        char *p = llava_path_join(dir, names[i]);
        struct stat lst, st;
        if (rc == 0 && lstat(p, &lst) == 0) {
            if (S_ISDIR(lst.st_mode)) {
                rc = add_dir(in, p, depth + 1, err);
            } else if (llava_is_image_name(names[i]) && stat(p, &st) == 0 && S_ISREG(st.st_mode)) {
                llava_inputs_push(in, p, p, NULL);
            } else if (llava_is_image_name(names[i]) && S_ISLNK(lst.st_mode)) {
                /* a dangling symlink is still an input: it gets an error record at run time */
                if (stat(p, &st) != 0) llava_inputs_push(in, p, p, NULL);
            }
        }
        free(p);
        free(names[i]);
    }
    free(names);
    return rc;
}

/* ---- manifests ------------------------------------------------------------------------------------ */

/* dirname of a manifest path with a trailing '/', "" for the current directory. */
static char *manifest_base(const char *manifest) {
    const char *slash = strrchr(manifest, '/');
    if (!slash) return xstrdup("");
    size_t n = (size_t)(slash - manifest) + 1;
    char *b = xmalloc(n + 1);
    memcpy(b, manifest, n);
    b[n] = 0;
    return b;
}

static char *resolve(const char *base, const char *path) {
    if (path[0] == '/' || !base[0]) return xstrdup(path);
    size_t a = strlen(base), b = strlen(path);
    char *p = xmalloc(a + b + 1);
    memcpy(p, base, a);
    memcpy(p + a, path, b + 1);
    return p;
}

static void push_entry(llava_inputs *in, const char *base, const char *id, const char *path, const char *label) {
    char *full = resolve(base, path);
    llava_inputs_push(in, id && *id ? id : path, full, label && *label ? label : NULL);
    free(full);
}

static size_t skip_bom(const char *buf, size_t len) {
    return len >= 3 && (unsigned char)buf[0] == 0xEF && (unsigned char)buf[1] == 0xBB && (unsigned char)buf[2] == 0xBF
               ? 3
               : 0;
}

/* Next line of buf without its "\n" or "\r\n"; returns 0 at the end. */
static int next_line(const char *buf, size_t len, size_t *pos, const char **line, size_t *n) {
    if (*pos >= len) return 0;
    const char *s = buf + *pos;
    const char *nl = memchr(s, '\n', len - *pos);
    size_t k = nl ? (size_t)(nl - s) : len - *pos;
    *pos += k + (nl ? 1 : 0);
    if (k && s[k - 1] == '\r') k--;
    *line = s;
    *n = k;
    return 1;
}

static char *trim_dup(const char *s, size_t n) {
    while (n && isspace((unsigned char)*s)) s++, n--;
    while (n && isspace((unsigned char)s[n - 1])) n--;
    char *r = xmalloc(n + 1);
    memcpy(r, s, n);
    r[n] = 0;
    return r;
}

static int add_txt(llava_inputs *in, const char *file, const char *buf, size_t len, llava_err *err) {
    char *base = manifest_base(file);
    size_t pos = skip_bom(buf, len);
    const char *line;
    size_t n;
    int lineno = 0, rc = 0;
    while (rc == 0 && next_line(buf, len, &pos, &line, &n)) {
        lineno++;
        if (memchr(line, 0, n)) {
            rc = llava_errf(err, "%s:%d: NUL byte in a path (is this a binary file?)", file, lineno);
            break;
        }
        char *p = trim_dup(line, n);
        if (*p) push_entry(in, base, NULL, p, NULL);
        free(p);
    }
    free(base);
    return rc;
}

static int add_jsonl(llava_inputs *in, const char *file, const char *buf, size_t len, llava_err *err) {
    char *base = manifest_base(file);
    size_t pos = skip_bom(buf, len);
    const char *line;
    size_t n;
    int lineno = 0, rc = 0;
    char what[512], idbuf[32];
    while (rc == 0 && next_line(buf, len, &pos, &line, &n)) {
        lineno++;
        size_t k = 0;
        while (k < n && isspace((unsigned char)line[k])) k++;
        if (k == n) continue;
        snprintf(what, sizeof what, "%s:%d", file, lineno);
        cJSON *o = llava_jsonl_parse(line, n, what, err);
        if (!o) {
            rc = -1;
            break;
        }
        const char *img = NULL, *label = NULL, *id = NULL;
        const cJSON *jid = cJSON_GetObjectItemCaseSensitive(o, "id");
        if (!cJSON_IsObject(o)) {
            rc = llava_errf(err, "%s: expected a JSON object with \"image\" (and \"id\")", what);
        } else if (llava_json_str(o, "image", NULL, &img, what, err) ||
                   (!img && llava_json_str(o, "path", NULL, &img, what, err)) ||
                   llava_json_str(o, "label", NULL, &label, what, err)) {
            rc = -1;
        } else if (!img || !*img) {
            rc = llava_errf(err, "%s: missing or empty \"image\" (the image path)", what);
        } else if (jid && !cJSON_IsNull(jid)) {
            if (cJSON_IsString(jid)) {
                id = jid->valuestring;
            } else if (cJSON_IsNumber(jid) && fabs(jid->valuedouble) < 9e15 &&
                       jid->valuedouble == (double)(long long)jid->valuedouble) {
                snprintf(idbuf, sizeof idbuf, "%lld", (long long)jid->valuedouble);
                id = idbuf;
            } else {
                rc = llava_errf(err, "%s: \"id\" must be a string or an integer", what);
            }
        }
        if (rc == 0) push_entry(in, base, id, img, label);
        cJSON_Delete(o);
    }
    free(base);
    return rc;
}

static int is_path_col(const char *s) {
    return !strcasecmp(s, "path") || !strcasecmp(s, "image") || !strcasecmp(s, "file_name") ||
           !strcasecmp(s, "filename");
}

static int add_csv(llava_inputs *in, const char *file, const char *buf, size_t len, llava_err *err) {
    char *base = manifest_base(file);
    size_t pos = skip_bom(buf, len);
    llava_csv_row row = {0};
    int line = 1, rc = 0, first = 1;
    int c_id = 0, c_path = 1, c_label = 2, header = 0;
    for (;;) {
        int start = line, complete;
        int r = llava_csv_next(&row, buf, len, &pos, &complete, &line, err);
        if (r == 0) break;
        if (r < 0) {
            rc = llava_err_prefix(err, "%s:%d", file, start);
            break;
        }
        if (row.n == 1 && !row.f[0][0]) continue; /* blank line */
        if (first) {
            first = 0;
            int hi = -1, hp = -1, hl = -1;
            for (int i = 0; i < row.n; i++) {
                if (!strcasecmp(row.f[i], "id") && hi < 0) hi = i;
                else if (is_path_col(row.f[i]) && hp < 0) hp = i;
                else if ((!strcasecmp(row.f[i], "label") || !strcasecmp(row.f[i], "truth")) && hl < 0) hl = i;
            }
            if (hp >= 0 && (hi >= 0 || row.n == 1 || hl >= 0)) {
                header = 1;
                c_id = hi, c_path = hp, c_label = hl;
                continue;
            }
        }
        if (!header && (row.n < 2 || row.n > 3)) {
            rc = llava_errf(err, "%s:%d: expected id,path[,label] (%d field%s)", file, start, row.n,
                            row.n == 1 ? "" : "s");
            break;
        }
        const char *id = c_id >= 0 && c_id < row.n ? row.f[c_id] : NULL;
        const char *path = c_path < row.n ? row.f[c_path] : "";
        const char *label = c_label >= 0 && c_label < row.n ? row.f[c_label] : NULL;
        if (!*path) {
            rc = llava_errf(err, "%s:%d: empty path", file, start);
            break;
        }
        push_entry(in, base, id, path, label);
    }
    llava_csv_row_free(&row);
    free(base);
    return rc;
}

int llava_inputs_add(llava_inputs *in, const char *arg, llava_err *err) {
    struct stat st;
    if (!*arg) return llava_errf(err, "empty input path");
    if (stat(arg, &st) != 0) return llava_errf(err, "%s: %s", arg, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        int n0 = in->n;
        if (add_dir(in, arg, 0, err)) return -1;
        if (in->n == n0) fprintf(stderr, "llava: warning: %s holds no .jpg/.jpeg/.png/.webp files\n", arg);
        return 0;
    }
    int kind = llava_has_ext(arg, ".txt") ? 1 : llava_has_ext(arg, ".csv") ? 2 : llava_has_ext(arg, ".jsonl") ? 3 : 0;
    if (!kind) {
        llava_inputs_push(in, arg, arg, NULL);
        return 0;
    }
    size_t len;
    char *buf = llava_read_file(arg, &len, MANIFEST_MAX_BYTES, err);
    if (!buf) return -1;
    int rc = kind == 1 ? add_txt(in, arg, buf, len, err)
           : kind == 2 ? add_csv(in, arg, buf, len, err)
                       : add_jsonl(in, arg, buf, len, err);
    free(buf);
    return rc;
}

cJSON *llava_jsonl_parse(const char *line, size_t n, const char *what, llava_err *err) {
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithLengthOpts(line, n, &end, 0);
    size_t off = end && end >= line ? (size_t)(end - line) : 0;
    if (!o) {
        llava_errf(err, "%s: invalid JSON near byte %zu", what, off);
        return NULL;
    }
    while (off < n && isspace((unsigned char)line[off])) off++;
    if (off < n) {
        cJSON_Delete(o);
        llava_errf(err, "%s: text after the JSON value at byte %zu (one object per line)", what, off);
        return NULL;
    }
    return o;
}

/* ---- CSV -------------------------------------------------------------------------------------- */

static void row_push(llava_csv_row *row, llava_sbuf *f) {
    if (row->n == row->cap) {
        row->cap = row->cap ? row->cap * 2 : 8;
        row->f = xrealloc(row->f, (size_t)row->cap * sizeof *row->f);
    }
    row->f[row->n++] = xstrdup(f->p ? f->p : "");
    llava_sbuf_clear(f);
}

void llava_csv_row_free(llava_csv_row *row) {
    for (int i = 0; i < row->n; i++) free(row->f[i]);
    free(row->f);
    memset(row, 0, sizeof *row);
}

int llava_csv_next(llava_csv_row *row, const char *buf, size_t len, size_t *pos, int *complete, int *lines,
                   llava_err *err) {
    for (int i = 0; i < row->n; i++) free(row->f[i]);
    row->n = 0;
    size_t i = *pos;
    if (i >= len) return 0;
    llava_sbuf f = {0};
    int nl = 0;
    *complete = 0;
    for (;;) {
        /* one field: leading blanks, then quoted or plain text */
        while (i < len && (buf[i] == ' ' || buf[i] == '\t')) i++;
        if (i < len && buf[i] == '"') {
            i++;
            for (;;) {
                if (i >= len) {
                    llava_sbuf_free(&f);
                    if (lines) *lines += nl;
                    *pos = len;
                    return llava_errf(err, "a quoted field is never closed");
                }
                if (buf[i] == '"') {
                    if (i + 1 < len && buf[i + 1] == '"') {
                        llava_sbuf_put(&f, "\"", 1);
                        i += 2;
                        continue;
                    }
                    i++;
                    break;
                }
                if (buf[i] == '\n') nl++;
                llava_sbuf_put(&f, buf + i, 1);
                i++;
            }
            while (i < len && (buf[i] == ' ' || buf[i] == '\t')) i++;
            if (i < len && buf[i] == '\r' && i + 1 < len && buf[i + 1] == '\n') i++;
            if (i < len && buf[i] != ',' && buf[i] != '\n') {
                llava_sbuf_free(&f);
                if (lines) *lines += nl;
                *pos = i;
                return llava_errf(err, "unexpected character '%c' after a closing quote (write a quote inside a "
                                  "quoted field as \"\")", buf[i]);
            }
            if (!f.p) llava_sbuf_put(&f, "", 0);
        } else {
            size_t s = i;
            while (i < len && buf[i] != ',' && buf[i] != '\n') {
                if (buf[i] == '"') {
                    llava_sbuf_free(&f);
                    if (lines) *lines += nl;
                    *pos = i;
                    return llava_errf(err, "a quote inside an unquoted field (quote the whole field: \"a \"\"b\"\"\")");
                }
                i++;
            }
            size_t e = i;
            if (e > s && buf[e - 1] == '\r' && (i >= len || buf[i] == '\n')) e--;
            while (e > s && (buf[e - 1] == ' ' || buf[e - 1] == '\t')) e--;
            llava_sbuf_put(&f, buf + s, e - s);
        }
        row_push(row, &f);
        if (i >= len) break;
        if (buf[i] == '\n') {
            i++;
            nl++;
            *complete = 1;
            break;
        }
        i++; /* ',' */
    }
    llava_sbuf_free(&f);
    if (lines) *lines += nl;
    *pos = i;
    return 1;
}

void llava_csv_append_field(llava_sbuf *b, const char *s) {
    size_t n = strlen(s);
    int q = n && (s[0] == ' ' || s[0] == '\t' || s[n - 1] == ' ' || s[n - 1] == '\t');
    for (const char *p = s; *p && !q; p++) q = *p == ',' || *p == '"' || *p == '\n' || *p == '\r';
    if (!q) {
        llava_sbuf_put(b, s, n);
        return;
    }
    llava_sbuf_put(b, "\"", 1);
    for (const char *p = s; *p; p++) {
        if (*p == '"') llava_sbuf_put(b, "\"", 1);
        llava_sbuf_put(b, p, 1);
    }
    llava_sbuf_put(b, "\"", 1);
}
