/* stats.c — Prometheus counters (see stats.h). */
#include "server/stats.h"

#include <pthread.h>
#include <string.h>

#include "batch/sbuf.h"
#include "util/mem.h"

#define MAX_SERIES 128
static const double BUCKETS[] = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
#define N_BUCKETS ((int)(sizeof BUCKETS / sizeof BUCKETS[0]))

typedef struct {
    double le_count[N_BUCKETS + 1]; /* cumulative at render; here per bucket, last = +Inf */
    double sum;
    long count;
} histogram;

typedef struct {
    const char *endpoint;
    int status;
    long count;
} series;

struct llava_stats {
    pthread_mutex_t mu;
    series s[MAX_SERIES];
    int n_series;
    long errors, prompt_tokens, completion_tokens, images, engine_requests;
    histogram latency, queue_time, engine_time;
};

llava_stats *llava_stats_new(void) {
    llava_stats *m = xcalloc(1, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
    return m;
}

void llava_stats_free(llava_stats *m) {
    if (!m) return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static void observe(histogram *h, double v) {
    int b = 0;
    while (b < N_BUCKETS && v > BUCKETS[b]) b++;
    h->le_count[b] += 1;
    h->sum += v;
    h->count++;
}

void llava_stats_request(llava_stats *m, const char *endpoint, int status, double seconds) {
    pthread_mutex_lock(&m->mu);
    int i = 0;
    while (i < m->n_series && !(m->s[i].status == status && !strcmp(m->s[i].endpoint, endpoint))) i++;
    if (i == m->n_series && m->n_series < MAX_SERIES) m->s[m->n_series++] = (series){endpoint, status, 0};
    if (i < m->n_series) m->s[i].count++;
    if (status >= 400) m->errors++;
    observe(&m->latency, seconds);
    pthread_mutex_unlock(&m->mu);
}

void llava_stats_work(llava_stats *m, long prompt_tokens, long completion_tokens, long images,
                        double queue_seconds, double engine_seconds) {
    pthread_mutex_lock(&m->mu);
    m->prompt_tokens += prompt_tokens;
    m->completion_tokens += completion_tokens;
    m->images += images;
    m->engine_requests++;
    observe(&m->queue_time, queue_seconds);
    observe(&m->engine_time, engine_seconds);
    pthread_mutex_unlock(&m->mu);
}

static void put_hist(llava_sbuf *b, const char *name, const char *help, const histogram *h, const char *model) {
    llava_sbuf_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    double cum = 0;
    for (int i = 0; i <= N_BUCKETS; i++) {
        cum += h->le_count[i];
        if (i < N_BUCKETS) llava_sbuf_printf(b, "%s_bucket{model_name=\"%s\",le=\"%g\"} %.0f\n", name, model, BUCKETS[i], cum);
        else llava_sbuf_printf(b, "%s_bucket{model_name=\"%s\",le=\"+Inf\"} %.0f\n", name, model, cum);
    }
    llava_sbuf_printf(b, "%s_sum{model_name=\"%s\"} %.6f\n%s_count{model_name=\"%s\"} %ld\n", name, model, h->sum, name,
                      model, h->count);
}

char *llava_stats_render(llava_stats *m, const char *model_name, int waiting, int running, double gpu_used_bytes,
                         double gpu_total_bytes) {
    /* the model name goes into label values: keep it to a safe character set */
    char model[128];
    size_t k = 0;
    for (const char *p = model_name; *p && k + 1 < sizeof model; p++)
        model[k++] = (*p == '"' || *p == '\\' || *p == '\n') ? '_' : *p;
    model[k] = 0;
    llava_sbuf b = {0};
    pthread_mutex_lock(&m->mu);
    llava_sbuf_puts(&b, "# HELP llava_http_requests_total HTTP requests by endpoint and status.\n"
                        "# TYPE llava_http_requests_total counter\n");
    for (int i = 0; i < m->n_series; i++)
        llava_sbuf_printf(&b, "llava_http_requests_total{model_name=\"%s\",endpoint=\"%s\",status=\"%d\"} %ld\n", model,
                          m->s[i].endpoint, m->s[i].status, m->s[i].count);
    llava_sbuf_printf(&b,
                      "# HELP llava_http_errors_total HTTP requests answered with a status >= 400.\n"
                      "# TYPE llava_http_errors_total counter\nllava_http_errors_total{model_name=\"%s\"} %ld\n"
                      "# HELP llava_num_requests_waiting Requests in the engine queue.\n"
                      "# TYPE llava_num_requests_waiting gauge\nllava_num_requests_waiting{model_name=\"%s\"} %d\n"
                      "# HELP llava_num_requests_running Requests the engine is computing (the running batch).\n"
                      "# TYPE llava_num_requests_running gauge\nllava_num_requests_running{model_name=\"%s\"} %d\n"
                      "# HELP llava_prompt_tokens_total Prompt tokens processed (image tokens included).\n"
                      "# TYPE llava_prompt_tokens_total counter\nllava_prompt_tokens_total{model_name=\"%s\"} %ld\n"
                      "# HELP llava_generation_tokens_total Tokens generated.\n"
                      "# TYPE llava_generation_tokens_total counter\nllava_generation_tokens_total{model_name=\"%s\"} %ld\n"
                      "# HELP llava_images_total Images processed.\n"
                      "# TYPE llava_images_total counter\nllava_images_total{model_name=\"%s\"} %ld\n"
                      "# HELP llava_engine_requests_total Requests the engine completed.\n"
                      "# TYPE llava_engine_requests_total counter\nllava_engine_requests_total{model_name=\"%s\"} %ld\n",
                      model, m->errors, model, waiting, model, running, model, m->prompt_tokens, model,
                      m->completion_tokens, model, m->images, model, m->engine_requests);
    if (gpu_total_bytes > 0)
        llava_sbuf_printf(&b,
                          "# HELP llava_gpu_memory_used_bytes Device memory in use (all processes on the card).\n"
                          "# TYPE llava_gpu_memory_used_bytes gauge\nllava_gpu_memory_used_bytes{model_name=\"%s\"} %.0f\n"
                          "# HELP llava_gpu_memory_total_bytes Device memory of the card.\n"
                          "# TYPE llava_gpu_memory_total_bytes gauge\nllava_gpu_memory_total_bytes{model_name=\"%s\"} %.0f\n",
                          model, gpu_used_bytes, model, gpu_total_bytes);
    put_hist(&b, "llava_http_request_duration_seconds", "End-to-end HTTP request latency.", &m->latency, model);
    put_hist(&b, "llava_request_queue_time_seconds", "Time requests waited for the engine.", &m->queue_time, model);
    put_hist(&b, "llava_request_engine_time_seconds", "Engine time per request (vision, prefill, decode).",
             &m->engine_time, model);
    pthread_mutex_unlock(&m->mu);
    return b.p;
}
