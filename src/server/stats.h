/* stats.h — counters of `llava serve`, rendered as Prometheus text (GET /metrics).
 *
 * Owns: request counts by endpoint and status, error count, token/image totals and an end-to-end
 * latency histogram, all behind one mutex (updated once per request, so contention is nil).
 * Endpoint labels must be string literals (they are stored by pointer).
 */
#ifndef LLAVA_SERVER_STATS_H
#define LLAVA_SERVER_STATS_H

typedef struct llava_stats llava_stats;

llava_stats *llava_stats_new(void);
void llava_stats_free(llava_stats *m);

/* One finished HTTP request; endpoint is a string literal such as "/v1/chat/completions". */
void llava_stats_request(llava_stats *m, const char *endpoint, int status, double seconds);
/* Work done by one engine request. */
void llava_stats_work(llava_stats *m, long prompt_tokens, long completion_tokens, long images,
                        double queue_seconds, double engine_seconds);

/* malloc'd Prometheus text exposition; waiting/running are the engine's current load. */
/* gpu_total_bytes <= 0: no GPU gauges */
char *llava_stats_render(llava_stats *m, const char *model_name, int waiting, int running, double gpu_used_bytes,
                         double gpu_total_bytes);

#endif
