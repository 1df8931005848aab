/* scheduler.c — see scheduler.h. Two llava_gpu_step slots: `fill` takes new images; the other may
 * be in flight. A step is launched when it is full (then, if the other is still running, we wait
 * for it after the launch, so the device goes straight from one to the next) or, in poll, when the
 * device is idle. */
#include "engine/scheduler.h"

#include <math.h>
#include <string.h>

#include "util/mem.h"

typedef struct {
    const llava_classifier *clf;
    void *tag;
    int prompt_tokens;
} seq_meta;

typedef struct {
    llava_gpu_step *st;
    seq_meta *meta;
    int n;          /* images added */
    int in_flight;
} slot;

struct llava_sched {
    const llava_model *m;
    llava_gpu *gpu;
    llava_sched_cb cb;
    void *user;
    slot slots[2];
    int fill;
    int max_seqs, max_batch;
    double *probs, *scores; /* scratch, grown to the largest label set */
    int cap_labels;
};

static void grow_scratch(llava_sched *s, int n) {
    if (n <= s->cap_labels) return;
    s->probs = xrealloc(s->probs, sizeof(double) * (size_t)n);
    s->scores = xrealloc(s->scores, sizeof(double) * (size_t)n);
    s->cap_labels = n;
}

static void deliver_error(llava_sched *s, const llava_classifier *c, void *tag, const char *msg) {
    llava_sched_result r = {.tag = tag, .clf = c, .error = msg};
    s->cb(s->user, &r);
}

int llava_sched_new(llava_sched **out, const llava_model *m, llava_gpu *gpu, llava_sched_cb cb, void *user,
                    llava_err *err) {
    *out = NULL;
    llava_sched *s = xcalloc(1, sizeof *s);
    s->m = m, s->gpu = gpu, s->cb = cb, s->user = user;
    if (gpu) {
        s->max_seqs = llava_gpu_get_info(gpu)->step_seqs;
        for (int i = 0; i < 2; i++) {
            if (llava_gpu_step_new(&s->slots[i].st, gpu, err)) {
                llava_sched_free(s);
                return -1;
            }
            s->slots[i].meta = xcalloc((size_t)s->max_seqs, sizeof(seq_meta));
        }
    }
    *out = s;
    return 0;
}

/* waits for slot k (launched) and delivers its results */
static void finish(llava_sched *s, int k) {
    slot *sl = &s->slots[k];
    llava_gpu_step_wait(sl->st);
    double ms[3];
    llava_gpu_step_times(sl->st, ms);
    for (int i = 0; i < sl->n; i++) {
        const seq_meta *mt = &sl->meta[i];
        grow_scratch(s, llava_classifier_n_labels(mt->clf));
        llava_classifier_score_nodes(mt->clf, llava_gpu_step_result(sl->st, i), s->probs, s->scores);
        llava_sched_result r = {.tag = mt->tag, .clf = mt->clf, .probs = s->probs, .scores = s->scores,
                                .prompt_tokens = mt->prompt_tokens, .batch = sl->n,
                                .step_ms = {ms[0], ms[1], ms[2]}, .model_ms = ms[0] + ms[1] + ms[2]};
        s->cb(s->user, &r);
    }
    llava_gpu_step_clear(sl->st);
    sl->n = 0;
    sl->in_flight = 0;
}

/* launches the fill slot; the other slot (if running) is finished after the launch */
static int launch_fill(llava_sched *s, llava_err *err) {
    slot *f = &s->slots[s->fill];
    if (!f->n) return 0;
    if (llava_gpu_step_launch(f->st, err)) return -1;
    f->in_flight = 1;
    int o = 1 - s->fill;
    if (s->slots[o].in_flight) finish(s, o);
    s->fill = o;
    return 0;
}

void llava_sched_free(llava_sched *s) {
    if (!s) return;
    for (int k = 0; k < 2; k++) {
        if (s->slots[k].in_flight) finish(s, k);
        llava_gpu_step_free(s->slots[k].st);
        free(s->slots[k].meta);
    }
    free(s->probs), free(s->scores);
    free(s);
}

int llava_sched_pending(const llava_sched *s) { return s->slots[0].n + s->slots[1].n; }

void llava_sched_set_max_batch(llava_sched *s, int n) { s->max_batch = n > 0 ? n : 0; }

int llava_sched_add(llava_sched *s, const llava_classifier *c, const float *pixels, int n_tiles, int H, int W,
                    void *tag, llava_err *err) {
    int n_feats = llava_model_image_tokens(s->m, H, W), *ids = NULL, n_ids = 0;
    llava_err ie = {0};
    if (!s->gpu) {
        grow_scratch(s, llava_classifier_n_labels(c));
        double t0 = llava_now();
        if (llava_classify_pixels(s->probs, s->scores, c, pixels, n_tiles, H, W, &ie)) {
            deliver_error(s, c, tag, ie.msg);
            return 0;
        }
        llava_sched_result r = {.tag = tag, .clf = c, .probs = s->probs, .scores = s->scores,
                                .prompt_tokens = llava_classifier_prompt_tokens(c, n_feats), .batch = 1,
                                .model_ms = (llava_now() - t0) * 1e3};
        s->cb(s->user, &r);
        return 0;
    }
    if (llava_classifier_prompt_ids(c, n_feats, &ids, &n_ids, &ie)) {
        deliver_error(s, c, tag, ie.msg);
        return 0;
    }
    const int *tok, *par;
    int nn = llava_classifier_trie(c, &tok, &par);
    for (int attempt = 0;; attempt++) {
        slot *f = &s->slots[s->fill];
        if (s->max_batch && f->n >= s->max_batch && launch_fill(s, err)) {
            free(ids);
            return -1;
        }
        f = &s->slots[s->fill];
        int r = llava_gpu_step_add(f->st, pixels, n_tiles, H, W, ids, n_ids, tok, par, nn, &ie);
        if (r == 0) {
            f->meta[f->n++] = (seq_meta){c, tag, n_ids};
            break;
        }
        if (r < 0 || attempt) { /* cannot fit even an empty step */
            if (r > 0) llava_errf(&ie, "the image and prompt do not fit one step");
            deliver_error(s, c, tag, ie.msg);
            break;
        }
        if (launch_fill(s, err)) {
            free(ids);
            return -1;
        }
    }
    free(ids);
    return 0;
}

int llava_sched_poll(llava_sched *s, int wait, llava_err *err) {
    if (!s->gpu) return 0;
    int o = 1 - s->fill, delivered = 0;
    if (s->slots[o].in_flight && (wait || llava_gpu_step_done(s->slots[o].st))) finish(s, o), delivered = 1;
    if (!s->slots[o].in_flight && s->slots[s->fill].n && launch_fill(s, err)) return -1;
    if (wait && !delivered) {
        o = 1 - s->fill;
        if (s->slots[o].in_flight) finish(s, o);
    }
    return llava_sched_pending(s);
}

int llava_sched_flush(llava_sched *s, llava_err *err) {
    if (!s->gpu) return 0;
    if (launch_fill(s, err)) return -1;
    for (int k = 0; k < 2; k++)
        if (s->slots[k].in_flight) finish(s, k);
    return 0;
}
