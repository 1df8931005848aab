/* metrics.c — classification metrics (see metrics.h for the definitions). */
#include "eval/metrics.h"

#include <math.h>
#include <string.h>

#include "util/mem.h"

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int llava_metrics_label_index(const llava_metrics *m, const char *label) {
    int lo = 0, hi = m->n_labels - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(m->labels[mid], label);
        if (c == 0) return mid;
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

int llava_cal_bin_of(double p) {
    /* Compare against the edges m/B themselves, not p*B, so that p = 0.3 (the double nearest 0.3)
     * lands in (0.2, 0.3] as the definition says, whatever rounding p*B does. */
    int m = (int)ceil(p * LLAVA_CAL_BINS) - 1;
    if (m < 0) m = 0;
    if (m > LLAVA_CAL_BINS - 1) m = LLAVA_CAL_BINS - 1;
    while (m > 0 && p <= (double)m / LLAVA_CAL_BINS) m--;
    while (m < LLAVA_CAL_BINS - 1 && p > (double)(m + 1) / LLAVA_CAL_BINS) m++;
    return m;
}

static double safe_div(double a, double b) { return b > 0 ? a / b : 0.0; }

void llava_metrics_free(llava_metrics *m) {
    if (!m) return;
    for (int i = 0; i < m->n_labels; i++) free(m->labels[i]);
    free(m->labels);
    free(m->confusion);
    free(m->cls);
    memset(m, 0, sizeof *m);
}

/* The sorted distinct labels of truth and pred; caller frees the array (strings are borrowed). */
static const char **distinct_labels(const llava_eval_pairs *in, int *n_out) {
    const char **all = xmalloc(sizeof(char *) * 2 * (size_t)(in->n ? in->n : 1));
    for (int i = 0; i < in->n; i++) {
        CHECK(in->truth[i] && in->pred[i]);
        all[2 * i] = in->truth[i];
        all[2 * i + 1] = in->pred[i];
    }
    size_t total = 2 * (size_t)in->n;
    qsort(all, total, sizeof *all, cmp_str);
    int u = 0;
    for (size_t i = 0; i < total; i++)
        if (u == 0 || strcmp(all[u - 1], all[i]) != 0) all[u++] = all[i];
    *n_out = u;
    return all;
}

int llava_metrics_compute(llava_metrics *out, const llava_eval_pairs *in, llava_err *err) {
    memset(out, 0, sizeof *out);
    CHECK(in && in->n >= 0);
    if (in->k < 1) return llava_errf(err, "top-k: k must be at least 1 (got %d)", in->k);
    out->k = in->k;
    out->n = in->n;
    out->ece = out->mce = NAN;
    for (int b = 0; b < LLAVA_CAL_BINS; b++) {
        out->bins[b].lo = (double)b / LLAVA_CAL_BINS;
        out->bins[b].hi = (double)(b + 1) / LLAVA_CAL_BINS;
        out->bins[b].mean_confidence = out->bins[b].accuracy = NAN;
    }
    if (in->prob)
        for (int i = 0; i < in->n; i++)
            if (!isnan(in->prob[i]) && !(in->prob[i] >= 0.0 && in->prob[i] <= 1.0))
                return llava_errf(err, "pair %d: probability %g is outside [0, 1]", i, in->prob[i]);

    int L = 0;
    const char **uniq = distinct_labels(in, &L);
    out->labels = xmalloc(sizeof(char *) * (size_t)(L ? L : 1));
    for (int i = 0; i < L; i++) out->labels[i] = xstrdup(uniq[i]);
    out->n_labels = L;
    free(uniq);

    size_t cells = (size_t)L * (size_t)L;
    if (L && cells / (size_t)L != (size_t)L) return llava_errf(err, "confusion matrix: %d labels is too many", L);
    out->confusion = llava_try_malloc(sizeof(int) * (cells ? cells : 1), "the confusion matrix", err);
    if (!out->confusion) return -1;
    memset(out->confusion, 0, sizeof(int) * (cells ? cells : 1));
    out->cls = xcalloc((size_t)(L ? L : 1), sizeof *out->cls);

    /* confusion matrix, accuracy, top-k, reliability in one pass */
    double conf_sum[LLAVA_CAL_BINS] = {0};
    for (int i = 0; i < in->n; i++) {
        int t = llava_metrics_label_index(out, in->truth[i]);
        int p = llava_metrics_label_index(out, in->pred[i]);
        CHECK(t >= 0 && p >= 0);
        out->confusion[(size_t)t * L + p]++;
        int correct = t == p;
        out->n_correct += correct;

        if (in->top_k) {
            const char *const *list = in->top_k[i];
            int nk = list ? in->n_top_k[i] : 0;
            if (nk < in->k) out->n_top_k_short++;
            int lim = nk < in->k ? nk : in->k;
            for (int j = 0; j < lim; j++)
                if (list[j] && strcmp(list[j], in->truth[i]) == 0) {
                    out->n_top_k_correct++;
                    break;
                }
        }
        if (in->prob && !isnan(in->prob[i])) {
            int b = llava_cal_bin_of(in->prob[i]);
            out->bins[b].count++;
            out->bins[b].correct += correct;
            conf_sum[b] += in->prob[i];
            out->n_calibrated++;
        }
    }
    out->accuracy = safe_div(out->n_correct, out->n);
    out->has_top_k = in->top_k != NULL;
    out->top_k_accuracy = out->has_top_k ? safe_div(out->n_top_k_correct, out->n) : NAN;

    /* per-class scores from the matrix */
    for (int c = 0; c < L; c++) {
        llava_class_metrics *k = &out->cls[c];
        for (int j = 0; j < L; j++) {
            k->support += out->confusion[(size_t)c * L + j];
            k->predicted += out->confusion[(size_t)j * L + c];
        }
        k->tp = out->confusion[(size_t)c * L + c];
        k->precision = safe_div(k->tp, k->predicted);
        k->recall = safe_div(k->tp, k->support);
        /* 2PR/(P+R) written as 2TP/(2TP+FP+FN) = 2TP/(support+predicted), as scikit-learn computes it */
        k->f1 = safe_div(2.0 * k->tp, (double)k->support + k->predicted);
        out->macro_precision += k->precision;
        out->macro_recall += k->recall;
        out->macro_f1 += k->f1;
        out->weighted_precision += k->precision * k->support;
        out->weighted_recall += k->recall * k->support;
        out->weighted_f1 += k->f1 * k->support;
    }
    out->macro_precision = safe_div(out->macro_precision, L);
    out->macro_recall = safe_div(out->macro_recall, L);
    out->macro_f1 = safe_div(out->macro_f1, L);
    out->weighted_precision = safe_div(out->weighted_precision, out->n);
    out->weighted_recall = safe_div(out->weighted_recall, out->n);
    out->weighted_f1 = safe_div(out->weighted_f1, out->n);

    /* reliability table, ECE, MCE */
    if (out->n_calibrated > 0) {
        out->ece = 0.0;
        out->mce = 0.0;
        for (int b = 0; b < LLAVA_CAL_BINS; b++) {
            llava_cal_bin *bin = &out->bins[b];
            if (!bin->count) continue;
            bin->mean_confidence = conf_sum[b] / bin->count;
            bin->accuracy = (double)bin->correct / bin->count;
            double gap = fabs(bin->accuracy - bin->mean_confidence);
            out->ece += (double)bin->count / out->n_calibrated * gap;
            if (gap > out->mce) out->mce = gap;
        }
    }
    return 0;
}
