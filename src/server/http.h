/* http.h — the HTTP side of `llava serve` on libmicrohttpd: routing, API key, body limit, metrics,
 * and the hand-off of prepared jobs to the engine (queue.h).
 *
 * Threads: libmicrohttpd runs one thread per connection. A request thread parses and validates
 * (openai.h: JSON, base64, image decode + preprocess), submits the job, and waits on the job's
 * condition variable (or streams SSE chunks from a content-reader callback as tokens arrive).
 * Routes: POST /v1/chat/completions, POST /invocations (SageMaker, same body), POST /v1/classify,
 * GET /v1/models, GET /health, GET /ping, GET /metrics. /health and /ping need no API key.
 * Shutdown: llava_server_quiesce stops accepting and makes new requests 503; in-flight requests
 * finish; llava_server_stop closes everything.
 */
#ifndef LLAVA_SERVER_HTTP_H
#define LLAVA_SERVER_HTTP_H

#include <stddef.h>

#include "server/openai.h"
#include "server/queue.h"

typedef struct llava_server_params {
    const char *host;    /* numeric address or name to bind, e.g. "127.0.0.1" */
    int port;            /* 0: any free port (llava_server_port tells which) */
    const char *api_key; /* NULL or "": no authentication */
    size_t max_body;     /* request bodies above this get 413 */
    const char *device;  /* "cpu" or the GPU's name (for /v1/models) */
    llava_serve_cfg cfg;
} llava_server_params;

typedef struct llava_server llava_server;

/* p's strings must outlive the server. */
int llava_server_start(llava_server **out, const llava_server_params *p, const llava_model *m, llava_engine *eng,
                       llava_err *err);
int llava_server_port(const llava_server *s);
/* Stops accepting connections; requests still arriving on open connections get 503. */
void llava_server_quiesce(llava_server *s);
/* Requests received but not yet answered. */
int llava_server_inflight(llava_server *s);
/* Closes the daemon (joins connection threads) and frees the server. NULL is fine. */
void llava_server_stop(llava_server *s);

#endif
