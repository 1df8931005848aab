/* merge.c — join and check shard results files (see merge.h). */
#include "batch/merge.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "batch/idset.h"
#include "batch/shard.h"
#include "util/mem.h"

#define SHOW 5 /* findings of each kind printed before "..." */

typedef struct merge_ctx {
    FILE *f;
    llava_idset seen;
    const llava_idset *inputs;
    llava_merge_report *rep;
    FILE *log;
    const char *file;
    int write_err;
} merge_ctx;

static int on_record(void *vctx, const llava_record_view *r, llava_err *err) {
    merge_ctx *c = vctx;
    if (llava_idset_put(&c->seen, r->id, 1) >= 0) {
        if (c->rep->duplicates++ < SHOW && c->log)
            fprintf(c->log, "llava: merge: duplicate id \"%s\" (%s:%d), keeping the first record\n", r->id, c->file,
                    r->line);
        return 0;
    }
    if (c->inputs && llava_idset_get(c->inputs, r->id) < 0 && c->rep->unknown++ < SHOW && c->log)
        fprintf(c->log, "llava: merge: id \"%s\" (%s:%d) is not among the inputs\n", r->id, c->file, r->line);
    c->rep->records++;
    if (r->error) c->rep->errors++;
    if (fwrite(r->text, 1, r->len, c->f) != r->len) c->write_err = errno ? errno : EIO;
    return 0;
}

int llava_merge_incomplete(const llava_merge_report *rep) {
    return rep->missing_shards || rep->duplicates || rep->missing || rep->unknown || rep->torn_files;
}

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

int llava_merge(const char *out, llava_out_format fmt, int shards, const llava_inputs *inputs, int overwrite,
                FILE *log, llava_merge_report *rep, llava_err *err) {
    memset(rep, 0, sizeof *rep);
    if (!overwrite && access(out, F_OK) == 0)
        return llava_errf(err, "%s exists: pass --overwrite to replace it with the merged shards", out);
    const char *slash = strrchr(out, '/');
    char *dir = slash ? strndup(out, (size_t)(slash - out) + 1) : xstrdup("./");
    const char *base = slash ? slash + 1 : out;

    /* find the shard files */
    int *found = NULL, nfound = 0, cap = 0, n = shards, rc = -1;
    DIR *d = opendir(dir);
    if (!d) {
        llava_errf(err, "%s: cannot list the directory: %s", dir, strerror(errno));
        free(dir);
        return -1;
    }
    struct dirent *e;
    int other_n = 0;
    while ((e = readdir(d))) {
        int i, cnt;
        if (!llava_shard_match(base, e->d_name, &i, &cnt)) continue;
        if (n == 0) n = cnt;
        if (cnt != n) {
            other_n = cnt;
            continue;
        }
        if (nfound == cap) {
            cap = cap ? cap * 2 : 16;
            found = xrealloc(found, (size_t)cap * sizeof *found);
        }
        found[nfound++] = i;
    }
    closedir(d);
    FILE *f = NULL;
    char *tmp = NULL;
    llava_idset in_ids = {0};
    merge_ctx c = {0};
    if (other_n && shards == 0) {
        llava_errf(err, "shard files of %s for different shard counts (%d and %d): pass --shards N to pick one, or "
                   "remove the stale files", out, n, other_n);
        goto done;
    }
    if (nfound == 0) {
        char *pat = llava_shard_path(base, 0, 2); /* "<name>.shard-0000-of-0002<ext>" */
        char *tag = strstr(pat, ".shard-0000-of-0002");
        llava_errf(err, "no shard files %.*s.shard-*-of-%s%s in %s (run the shards first, with the same -o)",
                   (int)(tag - pat), pat, shards ? "" : "*", tag + strlen(".shard-0000-of-0002"), dir);
        if (shards) {
            char num[32];
            snprintf(num, sizeof num, "%04d", shards);
            llava_errf(err, "no shard files %.*s.shard-*-of-%s%s in %s (run the shards first, with the same -o)",
                       (int)(tag - pat), pat, num, tag + strlen(".shard-0000-of-0002"), dir);
        }
        free(pat);
        goto done;
    }
    qsort(found, (size_t)nfound, sizeof *found, cmp_int);
    rep->shards = n;
    {
        int j = 0;
        for (int i = 0; i < n; i++) {
            if (j < nfound && found[j] == i) {
                j++;
                continue;
            }
            if (rep->missing_shards++ < SHOW && log) {
                char *p = llava_shard_path(out, i, n);
                fprintf(log, "llava: merge: shard %d of %d has no file (%s)\n", i, n, p);
                free(p);
            }
        }
    }
    if (inputs)
        for (int i = 0; i < inputs->n; i++) llava_idset_put(&in_ids, inputs->v[i].id, i);

    size_t tn = strlen(out) + 32;
    tmp = xmalloc(tn);
    snprintf(tmp, tn, "%s.merge-tmp.%d", out, (int)getpid());
    f = fopen(tmp, "wb");
    if (!f) {
        llava_errf(err, "%s: cannot write: %s", tmp, strerror(errno));
        goto done;
    }
    if (fmt == LLAVA_FMT_CSV) fputs(LLAVA_CSV_HEADER, f);
    c.f = f;
    c.inputs = inputs ? &in_ids : NULL;
    c.rep = rep;
    c.log = log;
    for (int k = 0; k < nfound; k++) {
        char *p = llava_shard_path(out, found[k], n);
        llava_mmap m;
        if (llava_mmap_open(&m, p, err)) {
            free(p);
            goto done;
        }
        size_t good = 0;
        c.file = p;
        int r = llava_results_parse(m.data ? m.data : "", m.size, fmt, p, &good, on_record, &c, err);
        if (r == 0 && good < m.size) {
            rep->torn_files++;
            if (log)
                fprintf(log, "llava: merge: %s ends in a torn line (%zu bytes left out): the shard was killed or is "
                        "still running; re-run it to finish\n", p, m.size - good);
        }
        llava_mmap_close(&m);
        free(p);
        if (r) goto done;
        rep->shard_files++;
    }
    if (inputs) {
        for (int i = 0; i < inputs->n; i++) {
            if (llava_idset_get(&c.seen, inputs->v[i].id) >= 0) continue;
            if (rep->missing++ < SHOW && log)
                fprintf(log, "llava: merge: no record for input \"%s\" (shard %d)\n", inputs->v[i].id,
                        (int)(llava_id_hash(inputs->v[i].id) % (uint64_t)n));
        }
    }
    if (c.write_err || fflush(f) != 0 || fsync(fileno(f)) != 0) {
        llava_errf(err, "%s: write failed: %s", tmp, strerror(c.write_err ? c.write_err : errno));
        goto done;
    }
    int cr = fclose(f);
    f = NULL;
    if (cr != 0 || rename(tmp, out) != 0) {
        llava_errf(err, "%s: cannot move the merged file into place: %s", out, strerror(errno));
        goto done;
    }
    free(tmp);
    tmp = NULL;
    rc = 0;
    if (log) {
        if (rep->duplicates > SHOW) fprintf(log, "llava: merge: ... %lld duplicate ids in all\n", (long long)rep->duplicates);
        if (rep->missing > SHOW) fprintf(log, "llava: merge: ... %lld inputs without a record in all\n", (long long)rep->missing);
        if (rep->unknown > SHOW) fprintf(log, "llava: merge: ... %lld records of unknown ids in all\n", (long long)rep->unknown);
    }
done:
    if (f) fclose(f);
    if (tmp) {
        unlink(tmp);
        free(tmp);
    }
    llava_idset_free(&c.seen);
    llava_idset_free(&in_ids);
    free(found);
    free(dir);
    return rc;
}
