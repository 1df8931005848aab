/* shard.c — shard index from flags or array-job environment, id ownership, file names (shard.h). */
#include "batch/shard.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "batch/idset.h"
#include "util/mem.h"

static int parse_int(const char *s, long *out) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    while (*end == ' ' || *end == '\n') end++;
    if (errno || *end || v < 0 || v > INT_MAX) return -1;
    *out = v;
    return 0;
}

int llava_shard_parse(llava_shard *s, const char *text, llava_err *err) {
    const char *slash = strchr(text, '/');
    long i, n;
    char a[32];
    if (!slash || (size_t)(slash - text) >= sizeof a) return llava_errf(err, "--shard %s: expected i/N, e.g. 3/16", text);
    memcpy(a, text, (size_t)(slash - text));
    a[slash - text] = 0;
    if (parse_int(a, &i) || parse_int(slash + 1, &n) || n < 1 || i >= n)
        return llava_errf(err, "--shard %s: expected i/N with 0 <= i < N, e.g. 3/16", text);
    s->index = (int)i;
    s->count = (int)n;
    snprintf(s->source, sizeof s->source, "--shard");
    return 0;
}

static const char *std_getenv(const char *k) { return getenv(k); }

int llava_shard_resolve(llava_shard *s, const char *spec, int shards, const char *(*getenv_fn)(const char *),
                        llava_err *err) {
    if (!getenv_fn) getenv_fn = std_getenv;
    memset(s, 0, sizeof *s);
    s->count = 1;
    snprintf(s->source, sizeof s->source, "none");
    if (shards < 0) return llava_errf(err, "--shards must be at least 1");
    if (spec) {
        if (llava_shard_parse(s, spec, err)) return -1;
        if (shards && shards != s->count)
            return llava_errf(err, "--shard %s and --shards %d disagree", spec, shards);
        return 0;
    }
    const char *v;
    long idx, n;
    if ((v = getenv_fn("SLURM_ARRAY_TASK_ID")) && *v) {
        if (parse_int(v, &idx)) return llava_errf(err, "SLURM_ARRAY_TASK_ID=%s is not a number", v);
        if (shards) {
            /* N fixed by the user: the task id is the shard index (re-running --array=3,7 works) */
            if (idx >= shards)
                return llava_errf(err, "SLURM_ARRAY_TASK_ID=%ld is not below --shards %d (use --array=0-%d)", idx,
                                  shards, shards - 1);
            n = shards;
        } else {
            long lo = 0, step = 1;
            const char *vc = getenv_fn("SLURM_ARRAY_TASK_COUNT"), *vmin = getenv_fn("SLURM_ARRAY_TASK_MIN"),
                       *vstep = getenv_fn("SLURM_ARRAY_TASK_STEP");
            if (!vc || !*vc)
                return llava_errf(err, "SLURM_ARRAY_TASK_ID is set but not SLURM_ARRAY_TASK_COUNT: pass --shards N "
                                  "(or --shard i/N; --shard 0/1 to ignore the array)");
            if (parse_int(vc, &n) || n < 1) return llava_errf(err, "SLURM_ARRAY_TASK_COUNT=%s is not a count", vc);
            if (vmin && *vmin && parse_int(vmin, &lo))
                return llava_errf(err, "SLURM_ARRAY_TASK_MIN=%s is not a number", vmin);
            if (vstep && *vstep && (parse_int(vstep, &step) || step < 1))
                return llava_errf(err, "SLURM_ARRAY_TASK_STEP=%s is not a positive number", vstep);
            if (idx < lo || (idx - lo) % step || (idx - lo) / step >= n)
                return llava_errf(err, "SLURM_ARRAY_TASK_ID=%ld does not number a contiguous array of %ld tasks "
                                  "(min %ld, step %ld): pass --shards N to use the task id as the shard index",
                                  idx, n, lo, step);
            idx = (idx - lo) / step;
        }
        s->index = (int)idx;
        s->count = (int)n;
        snprintf(s->source, sizeof s->source, "SLURM_ARRAY_TASK_ID");
        return 0;
    }
    static const char *const keys[2] = {"JOB_COMPLETION_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX"};
    for (int k = 0; k < 2; k++) {
        if (!(v = getenv_fn(keys[k])) || !*v) continue;
        if (parse_int(v, &idx)) return llava_errf(err, "%s=%s is not a number", keys[k], v);
        if (!shards)
            return llava_errf(err, "%s=%s is set: pass --shards N, the number of %s (or --shard 0/1 to ignore it)",
                              keys[k], v, k == 0 ? "completions of the Job" : "children of the array job");
        if (idx >= shards) return llava_errf(err, "%s=%ld is not below --shards %d", keys[k], idx, shards);
        s->index = (int)idx;
        s->count = shards;
        snprintf(s->source, sizeof s->source, "%s", keys[k]);
        return 0;
    }
    if (shards > 1)
        return llava_errf(err, "--shards %d but no shard index: pass --shard i/%d, or run inside a Slurm array, a "
                          "Kubernetes Indexed Job or an AWS Batch array job", shards, shards);
    return 0;
}

int llava_shard_owns(const llava_shard *s, const char *id) {
    return s->count <= 1 || (int)(llava_id_hash(id) % (uint64_t)s->count) == s->index;
}

/* Where the tag goes: before the last '.' of the file name (not of a directory), else at the end. */
static size_t tag_pos(const char *out) {
    const char *slash = strrchr(out, '/');
    const char *name = slash ? slash + 1 : out;
    const char *dot = strrchr(name, '.');
    return dot && dot != name ? (size_t)(dot - out) : strlen(out);
}

char *llava_shard_path(const char *out, int index, int count) {
    if (count <= 1) return xstrdup(out);
    size_t p = tag_pos(out), n = strlen(out);
    char tag[64];
    int t = snprintf(tag, sizeof tag, ".shard-%04d-of-%04d", index, count);
    char *r = xmalloc(n + (size_t)t + 1);
    memcpy(r, out, p);
    memcpy(r + p, tag, (size_t)t);
    memcpy(r + p + t, out + p, n - p + 1);
    return r;
}

int llava_shard_match(const char *base, const char *name, int *index, int *count) {
    size_t p = tag_pos(base), nb = strlen(base), nn = strlen(name);
    if (nn <= nb || strncmp(name, base, p) != 0 || strcmp(name + nn - (nb - p), base + p) != 0) return 0;
    /* the middle must be exactly ".shard-IIII-of-NNNN" */
    size_t mid_len = nn - nb;
    char mid[64];
    if (mid_len >= sizeof mid) return 0;
    memcpy(mid, name + p, mid_len);
    mid[mid_len] = 0;
    int i, n, used = 0;
    if (sscanf(mid, ".shard-%d-of-%d%n", &i, &n, &used) != 2 || (size_t)used != mid_len) return 0;
    if (n < 2 || i < 0 || i >= n) return 0;
    char check[64];
    snprintf(check, sizeof check, ".shard-%04d-of-%04d", i, n);
    if (strcmp(check, mid) != 0) return 0;
    *index = i;
    *count = n;
    return 1;
}
