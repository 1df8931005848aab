/* records.h — reading the inputs of `llava eval`: predictions and ground truth, joined by id.
 *
 * Owns: llava_eval_set — every record of both files (strings in one arena), the join (scored
 * pairs, failures, missing and extra ids) and the arrays llava_metrics_compute reads.
 * Formats (chosen by extension: .jsonl/.ndjson JSON lines, .csv comma, .tsv tab; otherwise a file
 * whose first non-blank byte is '{' is JSON lines, anything else CSV):
 *   predictions JSONL: the records `llava classify` writes, {"id","image","label","probability",
 *     "top_k":[{"label","probability"}],"low_confidence"}; {"id","image","error"} is a failure.
 *     Only id and label (or error) are required; id may be a string or an integer.
 *     A "truth" string (the label of the classify manifest) is kept: it is the truth when no
 *     truth file is given.
 *   predictions CSV: id,label[,probability] without header, or a header naming the columns
 *     id, label and optionally probability, error, image, truth and top_k (the JSON list, as
 *     `classify --format csv` writes it); other columns are ignored.
 *   truth JSONL: objects with id and label. truth CSV: id,label or id,path,label (the classify
 *     manifest) without header, or a header naming id and label.
 * CSV: RFC 4180 quoting ("a, b" and "say ""hi"""; a quoted field may span lines), CRLF or LF, a
 * UTF-8 BOM is skipped, blank lines are skipped, unquoted fields are trimmed of spaces and tabs.
 * A first row that has fields named "id" and "label" (any case) is a header.
 * Every input error (missing file, bad JSON line, missing field, empty id, probability outside
 * [0, 1], duplicate id in either file, ...) returns -1 with "FILE:LINE: what" in err.
 * Never exits, never prints.
 */
#ifndef LLAVA_EVAL_RECORDS_H
#define LLAVA_EVAL_RECORDS_H

#include "eval/metrics.h"
#include "util/status.h"

typedef struct llava_pred_rec {
    const char *id;
    const char *image;        /* NULL when absent */
    const char *label;        /* NULL for a failure record */
    const char *error;        /* non-NULL for a failure record */
    const char *truth;        /* the manifest label classify copied into the record; NULL when absent */
    double prob;              /* probability of label; NAN when absent */
    const char **top_k;       /* (n_top_k) ranked labels; NULL when the record has none */
    int n_top_k;
    int line;                 /* 1-based line where the record starts */
} llava_pred_rec;

typedef struct llava_truth_rec {
    const char *id;
    const char *label;
    int line;
} llava_truth_rec;

typedef struct llava_eval_arena llava_eval_arena;

typedef struct llava_eval_set {
    llava_eval_arena *arena;  /* owns every string and top_k array */
    char *pred_path, *truth_path;

    llava_pred_rec *pred;     /* (n_pred) in file order */
    int n_pred;
    int n_pred_errors;        /* failure records in the whole prediction file */
    llava_truth_rec *truth;   /* (n_truth) in file order */
    int n_truth;

    /* the join (llava_eval_join), in truth order */
    int n_pairs;              /* truth ids with a successful prediction */
    int *pair_truth;          /* (n_pairs) index into truth */
    int *pair_pred;           /* (n_pairs) index into pred */
    const char **pair_truth_label, **pair_pred_label;  /* (n_pairs) */
    double *pair_prob;                                 /* (n_pairs) */
    const char *const **pair_top_k;                    /* (n_pairs) a record without top_k: [label] */
    int *pair_n_top_k;                                 /* (n_pairs) */
    int min_top_k;            /* shortest ranked list among the pairs (0 when no pairs) */
    int *failed;              /* (n_failed) index into pred: failures whose id is in truth */
    int n_failed;
    int *missing;             /* (n_missing) index into truth: ids without any prediction */
    int n_missing;
    int *extra;               /* (n_extra) index into pred: ids absent from truth */
    int n_extra;
} llava_eval_set;

/* Loads both files and joins them; truth_path NULL takes the truth from the predictions' "truth"
 * fields (records without one are then extra). *s is zeroed first; free with llava_eval_set_free
 * (also after a failure). */
int llava_eval_set_load(llava_eval_set *s, const char *pred_path, const char *truth_path, llava_err *err);
void llava_eval_set_free(llava_eval_set *s);

/* The loaders and the join, separately (llava_eval_set_load calls them in this order). */
int llava_eval_load_pred(llava_eval_set *s, const char *path, llava_err *err);
int llava_eval_load_truth(llava_eval_set *s, const char *path, llava_err *err);
/* The truth records from the loaded predictions' "truth" fields; fails when none has one. */
int llava_eval_truth_from_pred(llava_eval_set *s, llava_err *err);
void llava_eval_join(llava_eval_set *s); /* once per set */

/* The scored pairs as metric input (arrays borrowed from s). */
llava_eval_pairs llava_eval_set_pairs(const llava_eval_set *s, int k);

#endif
