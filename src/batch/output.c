/* output.c — results file: record formatting, append with one write(2), resume (see output.h). */
#include "batch/output.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/mem.h"

/* ---- records -------------------------------------------------------------------------------- */

/* Indices of the k highest probabilities, ties broken by label order (deterministic). */
static void top_indices(int *idx, int k, const double *probs, int n) {
    for (int j = 0; j < k; j++) idx[j] = -1;
    for (int i = 0; i < n; i++) {
        int pos = k;
        while (pos > 0 && (idx[pos - 1] < 0 || probs[i] > probs[idx[pos - 1]])) pos--;
        if (pos >= k) continue;
        memmove(idx + pos + 1, idx + pos, (size_t)(k - pos - 1) * sizeof *idx);
        idx[pos] = i;
    }
}

static void topk_json(llava_sbuf *b, const int *idx, int k, const char *const *labels, const double *probs) {
    llava_sbuf_put(b, "[", 1);
    for (int j = 0; j < k; j++) {
        llava_sbuf_puts(b, j ? ",{\"label\":" : "{\"label\":");
        llava_sbuf_json_str(b, labels[idx[j]]);
        llava_sbuf_puts(b, ",\"probability\":");
        llava_sbuf_prob(b, probs[idx[j]]);
        llava_sbuf_put(b, "}", 1);
    }
    llava_sbuf_put(b, "]", 1);
}

void llava_record_result(llava_sbuf *b, llava_out_format fmt, const llava_input *in, const char *const *labels,
                         const double *probs, int n_labels, int top_k, double min_confidence) {
    CHECK(n_labels > 0);
    int k = top_k < 1 ? 1 : top_k > n_labels ? n_labels : top_k;
    int *idx = xmalloc((size_t)k * sizeof *idx);
    top_indices(idx, k, probs, n_labels);
    int best = idx[0];
    int low = !(probs[best] >= min_confidence);
    if (fmt == LLAVA_FMT_JSONL) {
        llava_sbuf_puts(b, "{\"id\":");
        llava_sbuf_json_str(b, in->id);
        llava_sbuf_puts(b, ",\"image\":");
        llava_sbuf_json_str(b, in->path);
        llava_sbuf_puts(b, ",\"label\":");
        llava_sbuf_json_str(b, labels[best]);
        llava_sbuf_puts(b, ",\"probability\":");
        llava_sbuf_prob(b, probs[best]);
        llava_sbuf_puts(b, ",\"top_k\":");
        topk_json(b, idx, k, labels, probs);
        llava_sbuf_puts(b, low ? ",\"low_confidence\":true" : ",\"low_confidence\":false");
        if (in->label) {
            llava_sbuf_puts(b, ",\"truth\":");
            llava_sbuf_json_str(b, in->label);
        }
        llava_sbuf_puts(b, "}\n");
    } else {
        llava_csv_append_field(b, in->id);
        llava_sbuf_put(b, ",", 1);
        llava_csv_append_field(b, in->path);
        llava_sbuf_put(b, ",", 1);
        llava_csv_append_field(b, labels[best]);
        llava_sbuf_put(b, ",", 1);
        llava_sbuf_prob(b, probs[best]);
        llava_sbuf_puts(b, low ? ",true," : ",false,");
        llava_sbuf tk = {0};
        topk_json(&tk, idx, k, labels, probs);
        llava_csv_append_field(b, tk.p);
        llava_sbuf_free(&tk);
        llava_sbuf_put(b, ",", 1);
        if (in->label) llava_csv_append_field(b, in->label);
        llava_sbuf_puts(b, ",\n");
    }
    free(idx);
}

void llava_record_error(llava_sbuf *b, llava_out_format fmt, const llava_input *in, const char *error) {
    if (fmt == LLAVA_FMT_JSONL) {
        llava_sbuf_puts(b, "{\"id\":");
        llava_sbuf_json_str(b, in->id);
        llava_sbuf_puts(b, ",\"image\":");
        llava_sbuf_json_str(b, in->path);
        llava_sbuf_puts(b, ",\"error\":");
        llava_sbuf_json_str(b, error && *error ? error : "unknown error");
        if (in->label) {
            llava_sbuf_puts(b, ",\"truth\":");
            llava_sbuf_json_str(b, in->label);
        }
        llava_sbuf_puts(b, "}\n");
    } else {
        llava_csv_append_field(b, in->id);
        llava_sbuf_put(b, ",", 1);
        llava_csv_append_field(b, in->path);
        llava_sbuf_puts(b, ",,,,,");
        if (in->label) llava_csv_append_field(b, in->label);
        llava_sbuf_put(b, ",", 1);
        llava_csv_append_field(b, error && *error ? error : "unknown error");
        llava_sbuf_put(b, "\n", 1);
    }
}

/* ---- reading -------------------------------------------------------------------------------- */

static int parse_jsonl(const char *buf, size_t len, const char *what, size_t *good_len, llava_record_fn fn,
                       void *ctx, llava_err *err) {
    size_t pos = 0;
    int line = 0;
    char where[600];
    *good_len = 0;
    while (pos < len) {
        const char *s = buf + pos;
        const char *nl = memchr(s, '\n', len - pos);
        if (!nl) break; /* torn last line */
        size_t n = (size_t)(nl - s);
        line++;
        size_t k = 0;
        while (k < n && (s[k] == ' ' || s[k] == '\t' || s[k] == '\r')) k++;
        if (k < n) {
            snprintf(where, sizeof where, "%s:%d", what, line);
            cJSON *o = llava_jsonl_parse(s, n, where, err);
            if (!o) return llava_err_prefix(err, "not a results record");
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
            const cJSON *lab = cJSON_GetObjectItemCaseSensitive(o, "label");
            const cJSON *er = cJSON_GetObjectItemCaseSensitive(o, "error");
            if (!cJSON_IsString(id) || !id->valuestring[0] || (!cJSON_IsString(lab) && !cJSON_IsString(er))) {
                cJSON_Delete(o);
                return llava_errf(err, "%s: not a results record (needs \"id\" and \"label\" or \"error\"); is this "
                                  "the output of llava classify?", where);
            }
            llava_record_view r = {id->valuestring, cJSON_IsString(lab) ? lab->valuestring : NULL,
                                   cJSON_IsString(er) ? er->valuestring : NULL, s, n + 1, line};
            int rc = fn ? fn(ctx, &r, err) : 0;
            cJSON_Delete(o);
            if (rc) return -1;
        }
        pos += n + 1;
        *good_len = pos;
    }
    return 0;
}

static int parse_csv(const char *buf, size_t len, const char *what, size_t *good_len, llava_record_fn fn, void *ctx,
                     llava_err *err) {
    size_t pos = 0;
    int line = 1, c_id = -1, c_label = -1, c_error = -1, ncol = 0;
    llava_csv_row row = {0};
    int rc = 0;
    *good_len = 0;
    for (int first = 1;; first = 0) {
        int start = line, complete;
        size_t at = pos;
        int r = llava_csv_next(&row, buf, len, &pos, &complete, &line, err);
        if (r == 0) break;
        if (r < 0) {
            if (pos >= len) break; /* a quote left open by a torn last record */
            rc = llava_err_prefix(err, "%s:%d: not a results record", what, start);
            break;
        }
        if (!complete) break; /* torn last record */
        if (first) {
            for (int i = 0; i < row.n; i++) {
                if (!strcmp(row.f[i], "id")) c_id = i;
                else if (!strcmp(row.f[i], "label")) c_label = i;
                else if (!strcmp(row.f[i], "error")) c_error = i;
            }
            ncol = row.n;
            if (c_id < 0 || c_label < 0 || c_error < 0) {
                rc = llava_errf(err, "%s:1: not a llava classify CSV (the header must name id, label and error "
                                "columns: %s)", what, LLAVA_CSV_HEADER);
                break;
            }
        } else if (!(row.n == 1 && !row.f[0][0])) {
            const char *id = row.n == ncol ? row.f[c_id] : "";
            const char *lab = row.n == ncol && row.f[c_label][0] ? row.f[c_label] : NULL;
            const char *er = row.n == ncol && row.f[c_error][0] ? row.f[c_error] : NULL;
            if (!id[0] || (!lab && !er)) {
                rc = llava_errf(err, "%s:%d: not a results record (%d columns, needs an id and a label or error)",
                                what, start, row.n);
                break;
            }
            llava_record_view v = {id, lab, er, buf + at, pos - at, start};
            if (fn && fn(ctx, &v, err)) {
                rc = -1;
                break;
            }
        }
        *good_len = pos;
    }
    llava_csv_row_free(&row);
    return rc;
}

int llava_results_parse(const char *buf, size_t len, llava_out_format fmt, const char *what, size_t *good_len,
                        llava_record_fn fn, void *ctx, llava_err *err) {
    return fmt == LLAVA_FMT_CSV ? parse_csv(buf, len, what, good_len, fn, ctx, err)
                                : parse_jsonl(buf, len, what, good_len, fn, ctx, err);
}

/* ---- the file ------------------------------------------------------------------------------- */

typedef struct open_ctx {
    llava_idset *done;
    llava_record_fn fn;
    void *ctx;
    int64_t n;
    const char *path;
} open_ctx;

static int on_existing(void *vctx, const llava_record_view *r, llava_err *err) {
    open_ctx *c = vctx;
    c->n++;
    if (c->done && llava_idset_put(c->done, r->id, r->line) >= 0)
        return llava_errf(err, "%s:%d: id \"%s\" is recorded twice (was this file written by two processes?)",
                          c->path, r->line, r->id);
    return c->fn ? c->fn(c->ctx, r, err) : 0;
}

static void sync_parent_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, (size_t)(slash - path) + 1) : xstrdup(".");
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(dir);
}

int llava_output_open(llava_output *o, const char *path, llava_out_format fmt, llava_open_mode mode,
                      llava_idset *done, llava_record_fn fn, void *ctx, llava_err *err) {
    memset(o, 0, sizeof *o);
    o->fd = -1;
    o->fmt = fmt;
    o->sync_interval = 1.0;
    int fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return llava_errf(err, "%s: cannot open the output for writing: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK) {
        close(fd);
        return llava_errf(err, "%s: another process is writing this output (two shards with the same index?)", path);
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return llava_errf(err, "%s: the output is not a regular file", path);
    }
    o->fd = fd;
    o->path = xstrdup(path);
    size_t good = 0;
    if (mode == LLAVA_OPEN_OVERWRITE) {
        if (ftruncate(fd, 0) != 0) {
            llava_errf(err, "%s: cannot truncate: %s", path, strerror(errno));
            goto fail;
        }
    } else if (st.st_size > 0) {
        void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
        if (map == MAP_FAILED) {
            llava_errf(err, "%s: cannot read the existing output: %s", path, strerror(errno));
            goto fail;
        }
        open_ctx c = {done, fn, ctx, 0, path};
        int rc = llava_results_parse(map, (size_t)st.st_size, fmt, path, &good, on_existing, &c, err);
        munmap(map, (size_t)st.st_size);
        if (rc) {
            llava_err_prefix(err, "cannot resume (use another -o, or --overwrite to start over)");
            goto fail;
        }
        o->n_existing = c.n;
        o->torn_bytes = (int64_t)st.st_size - (int64_t)good;
        if (o->torn_bytes > 0 && ftruncate(fd, (off_t)good) != 0) {
            llava_errf(err, "%s: cannot drop the torn last line: %s", path, strerror(errno));
            goto fail;
        }
    }
    o->size = (int64_t)good;
    if (fmt == LLAVA_FMT_CSV && o->size == 0 &&
        llava_output_write(o, LLAVA_CSV_HEADER, strlen(LLAVA_CSV_HEADER), err))
        goto fail;
    if (llava_output_sync(o, err)) goto fail;
    if (st.st_size == 0) sync_parent_dir(path);
    o->last_sync = llava_now();
    return 0;
fail:
    close(fd);
    free(o->path);
    memset(o, 0, sizeof *o);
    o->fd = -1;
    return -1;
}

int llava_output_write(llava_output *o, const char *rec, size_t n, llava_err *err) {
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(o->fd, rec + off, n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = w < 0 ? errno : ENOSPC;
            /* never leave half a record followed by whole ones: cut back to the last whole record */
            if (off && ftruncate(o->fd, (off_t)o->size) != 0) {
                return llava_errf(err, "%s: write failed (%s) and the partial record could not be removed (%s); "
                                  "the next run drops it as a torn line", o->path, strerror(e), strerror(errno));
            }
            return llava_errf(err, "%s: write failed: %s", o->path, strerror(e));
        }
        off += (size_t)w;
    }
    o->size += (int64_t)n;
    o->dirty = 1;
    if (o->sync_interval <= 0 || llava_now() - o->last_sync >= o->sync_interval) return llava_output_sync(o, err);
    return 0;
}

int llava_output_sync(llava_output *o, llava_err *err) {
    if (o->fd < 0 || !o->dirty) return 0;
    o->dirty = 0;
    o->last_sync = llava_now();
    if (fdatasync(o->fd) != 0 && errno != EINVAL && errno != EROFS)
        return llava_errf(err, "%s: fdatasync failed: %s", o->path, strerror(errno));
    return 0;
}

int llava_output_close(llava_output *o, llava_err *err) {
    int rc = 0;
    if (o->fd >= 0) {
        rc = llava_output_sync(o, err);
        close(o->fd);
    }
    free(o->path);
    memset(o, 0, sizeof *o);
    o->fd = -1;
    return rc;
}
