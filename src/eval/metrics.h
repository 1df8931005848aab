/* metrics.h — classification metrics over paired (truth, predicted) labels.
 *
 * Owns: llava_metrics (labels, confusion matrix, per-class and averaged scores, top-k accuracy,
 * reliability table) computed by one pure function from arrays the caller keeps.
 * Definitions follow scikit-learn (accuracy_score, precision_recall_fscore_support with
 * zero_division=0, confusion_matrix) so numbers can be checked against it:
 *   labels      = the sorted (byte-wise strcmp = code-point order for UTF-8) union of the truth and
 *                 predicted labels of the scored pairs — a truth label never predicted and a
 *                 predicted label absent from truth (support 0) both get a row and a column;
 *   confusion   = C[i][j] = number of pairs with truth labels[i] predicted as labels[j];
 *   precision_c = TP/(TP+FP), recall_c = TP/(TP+FN), f1_c = 2TP/(2TP+FP+FN) (= 2PR/(P+R)); a 0/0 is 0;
 *   macro       = unweighted mean over labels; weighted = mean weighted by support (truth count);
 *   top-k       = fraction of pairs whose truth label is among the first k entries of their
 *                 ranked list (a list shorter than k is used as it is and counted in n_top_k_short);
 *   reliability = LLAVA_CAL_BINS equal-width bins of the predicted label's probability, bin m
 *                 holding (m/B, (m+1)/B] (bin 0 also holds 0): count, mean confidence, accuracy;
 *   ECE         = sum_m |B_m|/n * |acc(B_m) - conf(B_m)| (Guo et al. 2017), MCE = max_m of the gap.
 * Assumes: non-NULL label strings (a NULL is a caller bug: CHECK). Never does I/O.
 */
#ifndef LLAVA_EVAL_METRICS_H
#define LLAVA_EVAL_METRICS_H

#include <stdint.h>

#include "util/status.h"

#define LLAVA_CAL_BINS 10

/* The scored pairs: n predictions that have a truth label. Arrays are borrowed for the call. */
typedef struct llava_eval_pairs {
    int n;
    const char *const *truth;         /* (n) truth labels */
    const char *const *pred;          /* (n) predicted labels */
    const double *prob;               /* (n) probability of pred, NAN = unknown; NULL: none known */
    const char *const *const *top_k;  /* (n) ranked label lists, an entry may be NULL; NULL: none */
    const int *n_top_k;               /* (n) lengths of the top_k lists */
    int k;                            /* top-k accuracy K, >= 1 */
} llava_eval_pairs;

typedef struct llava_class_metrics {
    double precision, recall, f1;
    int support;    /* pairs whose truth is this label (row sum) */
    int predicted;  /* pairs predicted as this label (column sum) */
    int tp;
} llava_class_metrics;

typedef struct llava_cal_bin {
    double lo, hi;            /* (lo, hi] */
    int count;
    int correct;
    double mean_confidence;   /* NAN when count == 0 */
    double accuracy;          /* NAN when count == 0 */
} llava_cal_bin;

typedef struct llava_metrics {
    int n;                    /* scored pairs */
    int n_labels;
    char **labels;            /* (n_labels) sorted, owned */
    int *confusion;           /* (n_labels, n_labels) row = truth, column = predicted, owned */
    llava_class_metrics *cls; /* (n_labels), owned */

    int n_correct;
    double accuracy;          /* n_correct / n; 0 when n == 0 */
    double macro_precision, macro_recall, macro_f1;
    double weighted_precision, weighted_recall, weighted_f1;

    int k;                    /* top-k K */
    int has_top_k;            /* 0 when the input carried no ranked lists */
    int n_top_k_correct;
    int n_top_k_short;        /* pairs whose list had fewer than k entries */
    double top_k_accuracy;

    int n_calibrated;         /* pairs with a known probability */
    llava_cal_bin bins[LLAVA_CAL_BINS];
    double ece, mce;          /* NAN when n_calibrated == 0 */
} llava_metrics;

/* Computes every metric. Returns 0, or -1 with err set when k < 1, a probability is outside
 * [0, 1], or memory for the confusion matrix (n_labels^2 ints) cannot be had. n == 0 gives an
 * empty result (no labels, accuracy 0). *out is zeroed first; free with llava_metrics_free (also
 * after a failure). */
int llava_metrics_compute(llava_metrics *out, const llava_eval_pairs *in, llava_err *err);
void llava_metrics_free(llava_metrics *m);

/* Index of label in m->labels, or -1. */
int llava_metrics_label_index(const llava_metrics *m, const char *label);

/* The reliability bin of probability p in [0, 1] (see the top of the file). */
int llava_cal_bin_of(double p);

#endif
