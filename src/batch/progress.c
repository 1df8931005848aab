/* progress.c — progress bar / log lines and the run summary (see progress.h). */
#include "batch/progress.h"

#include <math.h>
#include <string.h>

#include "util/mem.h"

void llava_format_duration(char *buf, size_t n, double s) {
    if (!(s >= 0) || s > 1e9) {
        snprintf(buf, n, "?");
        return;
    }
    if (s < 60) {
        snprintf(buf, n, "%.1fs", s);
        return;
    }
    long t = (long)(s + 0.5);
    if (t < 3600) snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, n, "%ldh%02ldm%02lds", t / 3600, t / 60 % 60, t % 60);
}

void llava_progress_init(llava_progress *p, FILE *out, int tty, int64_t total, int64_t skipped, double t_start,
                         double price_per_hour) {
    memset(p, 0, sizeof *p);
    p->out = out;
    p->tty = tty;
    p->interval = 10;
    p->total = total;
    p->skipped = skipped;
    p->t_start = t_start;
    p->t_work = p->t_last = llava_now();
    p->price_per_hour = price_per_hour;
}

void llava_progress_start(llava_progress *p) { p->t_work = p->t_last = llava_now(); }

static void draw(llava_progress *p, double now) {
    int64_t done = p->skipped + p->done;
    double el = now - p->t_work, rate = el > 0 ? (double)p->done / el : 0;
    double left = rate > 0 ? (double)(p->total - done) / rate : -1;
    double frac = p->total > 0 ? (double)done / (double)p->total : 1;
    char eta[32];
    llava_format_duration(eta, sizeof eta, left);
    if (p->tty) {
        char bar[31];
        int w = (int)(frac * 30 + 1e-9);
        for (int i = 0; i < 30; i++) bar[i] = i < w ? '#' : '.';
        bar[30] = 0;
        fprintf(p->out, "\r[%s] %lld/%lld %3d%% %6.1f img/s ETA %s errors %lld\033[K", bar, (long long)done,
                (long long)p->total, (int)(frac * 100), rate, eta, (long long)p->errors);
        p->drawn = 1;
    } else {
        fprintf(p->out, "llava: %lld/%lld (%d%%) %.1f img/s ETA %s errors %lld\n", (long long)done,
                (long long)p->total, (int)(frac * 100), rate, eta, (long long)p->errors);
    }
    fflush(p->out);
    p->t_last = now;
}

void llava_progress_tick(llava_progress *p, int force) {
    if (!p->out) return;
    double now = llava_now();
    if (force || now - p->t_last >= (p->tty ? 0.1 : p->interval)) draw(p, now);
}

void llava_progress_add(llava_progress *p, int error) {
    p->done++;
    if (error) p->errors++;
    llava_progress_tick(p, 0);
}

void llava_progress_summary(llava_progress *p, int interrupted) {
    if (!p->out) return;
    double now = llava_now();
    if (p->tty && p->drawn) {
        draw(p, now);
        fputc('\n', p->out);
    }
    double wall = now - p->t_start, work = now - p->t_work;
    char w1[32], w2[32];
    llava_format_duration(w1, sizeof w1, wall);
    llava_format_duration(w2, sizeof w2, work);
    fprintf(p->out, "llava: %s: %lld images classified, %lld errors, %lld already done, wall %s (classifying %s), %.2f images/s\n",
            interrupted ? "interrupted" : "done", (long long)(p->done - p->errors), (long long)p->errors,
            (long long)p->skipped, w1, w2, work > 0 ? (double)p->done / work : 0.0);
    if (p->price_per_hour > 0 && p->done > 0)
        fprintf(p->out, "llava: cost %.4f per 1000 images at %.4f per hour (%.4f for this run)\n",
                p->price_per_hour / 3600.0 * wall / (double)p->done * 1000.0, p->price_per_hour,
                p->price_per_hour / 3600.0 * wall);
    if (interrupted)
        fprintf(p->out, "llava: %lld inputs left; run the same command again to resume\n",
                (long long)(p->total - p->skipped - p->done));
    fflush(p->out);
}
