/* cmd_eval.c — `llava eval`: score `llava classify` predictions against ground truth.
 *
 * Thin front end over src/eval: parse the options, load and join the two files, compute the
 * metrics, write the summary / metrics JSON / HTML report. argv[0] is the subcommand name.
 * Exit status: 0 evaluated, 1 bad input or nothing to score (or, with --strict, any missing, extra
 * or failed id), 2 usage error.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/metrics.h"
#include "eval/records.h"
#include "eval/report.h"

int cmd_eval(int argc, char **argv);

static void eval_usage(FILE *f) {
    fputs("usage: llava eval --pred PRED [--truth TRUTH] [-o metrics.json] [--report report.html] [--top-k K]\n"
          "                  [--strict] [--max-ids N]\n"
          "\n"
          "Scores predictions against ground truth, joined by id.\n"
          "  --pred FILE     predictions: the JSONL of `llava classify` (error records count as failures),\n"
          "                  or CSV id,label[,probability] (or with a header naming id, label, probability, error,\n"
          "                  top_k, truth: the CSV of classify --format csv)\n"
          "  --truth FILE    ground truth: CSV id,label (header optional, RFC 4180 quoting) or JSONL {id, label};\n"
          "                  without it, the \"truth\" labels classify copied from a labelled manifest\n"
          "  -o FILE         write the metrics JSON to FILE ('-' for stdout, replacing the summary lines)\n"
          "  --report FILE   write a self-contained HTML report (summary, per-class table, confusion matrix\n"
          "                  picture, reliability diagram)\n"
          "  --top-k K       K of the top-k accuracy (default: 3, or the length of the shortest top_k list)\n"
          "  --strict        exit 1 when any truth id is missing or failed, or a prediction is not in the truth\n"
          "  --max-ids N     list at most N missing/extra/failed ids in the JSON (default 100; counts are complete)\n"
          "Metrics follow scikit-learn (zero_division=0); see docs/eval.md.\n",
          f);
}

static int parse_int_arg(const char *opt, const char *v, int min, int *out) {
    char *end = NULL;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (end == v || *end || errno || x < min || x > INT_MAX) {
        fprintf(stderr, "llava eval: invalid value for %s: \"%s\" (an integer >= %d)\n", opt, v, min);
        return -1;
    }
    *out = (int)x;
    return 0;
}

/* Prints up to 5 ids of a list to stderr. */
static void warn_ids(const char *what, int n, const llava_eval_set *s, const int *idx, int from_truth) {
    if (!n) return;
    fprintf(stderr, "llava eval: warning: %d %s:", n, what);
    for (int i = 0; i < n && i < 5; i++)
        fprintf(stderr, " %s", from_truth ? s->truth[idx[i]].id : s->pred[idx[i]].id);
    fputs(n > 5 ? " ...\n" : "\n", stderr);
}

int cmd_eval(int argc, char **argv) {
    const char *pred = NULL, *truth = NULL, *out = NULL, *report = NULL;
    int k = 0, strict = 0, max_ids = 100;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        char name[64];
        snprintf(name, sizeof name, "%s", a);
        char *eq = strchr(name, '=');
        if (strncmp(a, "--", 2) == 0 && eq) { /* --opt=value */
            *eq = 0;
            val = a + (eq - name) + 1;
        }
        if (!strcmp(name, "-h") || !strcmp(name, "--help")) {
            eval_usage(stdout);
            return 0;
        }
        if (!strcmp(name, "--strict")) {
            strict = 1;
            continue;
        }
        int takes = !strcmp(name, "--pred") || !strcmp(name, "--truth") || !strcmp(name, "-o") ||
                    !strcmp(name, "--output") || !strcmp(name, "--report") || !strcmp(name, "--top-k") ||
                    !strcmp(name, "--max-ids");
        if (!takes) {
            fprintf(stderr, "llava eval: unknown option %s (see llava eval --help)\n", a);
            return 2;
        }
        if (!val) {
            if (i + 1 >= argc) {
                fprintf(stderr, "llava eval: %s needs a value (see llava eval --help)\n", name);
                return 2;
            }
            val = argv[++i];
        }
        if (!strcmp(name, "--pred")) pred = val;
        else if (!strcmp(name, "--truth")) truth = val;
        else if (!strcmp(name, "-o") || !strcmp(name, "--output")) out = val;
        else if (!strcmp(name, "--report")) report = val;
        else if (!strcmp(name, "--top-k")) {
            if (parse_int_arg(name, val, 1, &k)) return 2;
        } else if (parse_int_arg(name, val, 0, &max_ids)) return 2;
    }
    if (!pred) {
        fprintf(stderr, "llava eval: --pred is required (see llava eval --help)\n");
        return 2;
    }

    llava_err err = {{0}};
    llava_eval_set set;
    llava_metrics m = {0};
    cJSON *doc = NULL;
    int rc = 1;
    if (llava_eval_set_load(&set, pred, truth, &err)) goto fail;
    if (set.n_pairs == 0) {
        llava_errf(&err, "nothing to score: none of the %d truth ids has a successful prediction in %s (%d failed, %d "
                   "missing; %d prediction ids are not in the truth): do the two files use the same ids?",
                   set.n_truth, pred, set.n_failed, set.n_missing, set.n_extra);
        goto fail;
    }
    int k_given = k > 0;
    if (!k_given) k = set.min_top_k < 3 ? set.min_top_k : 3;
    llava_eval_pairs pairs = llava_eval_set_pairs(&set, k);
    if (llava_metrics_compute(&m, &pairs, &err)) goto fail;

    warn_ids("truth ids have no prediction", set.n_missing, &set, set.missing, 1);
    warn_ids("prediction ids are not in the truth", set.n_extra, &set, set.extra, 0);
    if (set.n_failed)
        fprintf(stderr, "llava eval: warning: %d truth ids have an error record (failures: excluded from accuracy, "
                        "counted in coverage), e.g. %s: %s\n",
                set.n_failed, set.pred[set.failed[0]].id, set.pred[set.failed[0]].error);
    if (k_given && m.n_top_k_short)
        fprintf(stderr, "llava eval: warning: %d predictions list fewer than %d labels in top_k; top-%d accuracy "
                        "uses what they list (run classify with --top-k %d or more)\n",
                m.n_top_k_short, k, k, k);

    if (!out || strcmp(out, "-") != 0) llava_eval_print_summary(stdout, &m, &set);
    if (out) {
        doc = llava_eval_metrics_json(&m, &set, max_ids);
        if (llava_eval_write_json(out, doc, &err)) goto fail;
    }
    if (report && llava_eval_write_report(report, &m, &set, &err)) goto fail;
    rc = 0;
    if (strict && (set.n_missing || set.n_extra || set.n_failed)) {
        fprintf(stderr, "llava eval: --strict: %d missing, %d extra, %d failed ids\n", set.n_missing, set.n_extra,
                set.n_failed);
        rc = 1;
    }
    goto done;
fail:
    fprintf(stderr, "llava eval: %s\n", err.msg);
done:
    cJSON_Delete(doc);
    llava_metrics_free(&m);
    llava_eval_set_free(&set);
    return rc;
}
