/* http.c — libmicrohttpd front end of `llava serve` (see http.h). */
#include "server/http.h"

#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "batch/sbuf.h"
#include "model/gpu.h"
#include "server/stats.h"
#include "util/mem.h"

struct llava_server {
    llava_server_params p;
    const llava_model *m;
    llava_engine *eng;
    llava_stats *met;
    struct MHD_Daemon *d;
    int port;
    atomic_int quiescing;
    atomic_int inflight;
    atomic_ullong seq;
    long started;
};

/* Per-request state, from the first call of the access handler to the completion notice. */
typedef struct {
    llava_sbuf body;
    int too_large;
    int status;            /* what we answered */
    const char *endpoint;  /* metrics label */
    double t0;
} req_ctx;

/* ---- responses -------------------------------------------------------------------------------- */

static enum MHD_Result send_body(struct MHD_Connection *c, req_ctx *rc, int status, const char *ctype, char *body) {
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type", ctype);
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    rc->status = status;
    return ok;
}

static enum MHD_Result send_json(struct MHD_Connection *c, req_ctx *rc, int status, char *body) {
    return send_body(c, rc, status, "application/json", body);
}

static enum MHD_Result send_error(struct MHD_Connection *c, req_ctx *rc, const llava_api_err *e) {
    return send_json(c, rc, e->status, llava_api_error_json(e));
}

static void make_id(llava_server *s, const char *prefix, char *out, size_t n) {
    uint64_t x = atomic_fetch_add(&s->seq, 1) + 0x9E3779B97F4A7C15ull * (uint64_t)(s->started ^ (long)getpid());
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 29;
    snprintf(out, n, "%s-%016llx", prefix, (unsigned long long)x);
}

static void record_work(llava_server *s, const llava_job *j, int n_prompt) {
    llava_stats_work(s->met, n_prompt, j->kind == LLAVA_JOB_CHAT ? j->n_toks : 0, j->n_images,
                       j->t_start - j->t_submit, j->t_end - j->t_start);
}

/* Submits; on failure answers 429/503 and returns 0 with the job still the caller's. */
static int submit(llava_server *s, llava_job *j, llava_api_err *e) {
    int r = llava_engine_submit(s->eng, j);
    if (r == -1) return llava_api_errf(e, 429, NULL, "queue_full", "the server is busy (request queue full, --max-queue); retry later");
    if (r == -2) return llava_api_errf(e, 503, NULL, "shutting_down", "the server is shutting down");
    return 0;
}

static int engine_error(const llava_job *j, llava_api_err *e) {
    return llava_api_errf(e, 500, NULL, "engine_error", "the engine failed on this request: %s", j->err.msg);
}

/* ---- streaming --------------------------------------------------------------------------------- */

typedef struct {
    llava_server *s;
    llava_chat_req req;
    char id[64];
    long created;
    llava_sbuf out;       /* SSE bytes built, not yet handed to MHD */
    size_t out_off;
    size_t sent_text;     /* bytes of job->text already streamed */
    int sent_toks;        /* tokens whose logprobs were streamed */
    int role_sent, finished;
} stream_state;

/* Called by MHD on the connection's thread; blocks until there is something to send. */
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    stream_state *st = cls;
    for (;;) {
        if (st->out_off < st->out.len) {
            size_t n = st->out.len - st->out_off;
            if (n > max) n = max;
            memcpy(buf, st->out.p + st->out_off, n);
            st->out_off += n;
            return (ssize_t)n;
        }
        llava_sbuf_clear(&st->out);
        st->out_off = 0;
        if (st->finished) return MHD_CONTENT_READER_END_OF_STREAM;
        llava_job *j = st->req.job;
        const llava_model *m = st->s->m;
        const char *name = st->s->p.cfg.model_name;
        if (!st->role_sent) {
            llava_chunk_append(&st->out, &st->req, j, m, st->id, st->created, name, "assistant", "", 0, 0, 0, NULL);
            st->role_sent = 1;
            continue;
        }
        pthread_mutex_lock(&j->mu);
        while (!j->done && j->stable <= st->sent_text) pthread_cond_wait(&j->cv, &j->mu);
        if (j->done && j->failed) {
            llava_api_err e;
            engine_error(j, &e);
            char *s = llava_api_error_json(&e);
            llava_sbuf_printf(&st->out, "data: %s\n\ndata: [DONE]\n\n", s);
            free(s);
            st->finished = 1;
        } else if (j->kind == LLAVA_JOB_CLASSIFY) {
            if (j->done) {
                int b = 0, nl = llava_classifier_n_labels(j->clf);
                for (int i = 1; i < nl; i++)
                    if (j->probs[i] > j->probs[b]) b = i;
                const char *label = llava_classifier_label(j->clf, b);
                llava_chunk_append(&st->out, &st->req, j, m, st->id, st->created, name, NULL, label, strlen(label), 0, 0,
                                   NULL);
                llava_chunk_append(&st->out, &st->req, j, m, st->id, st->created, name, NULL, NULL, 0, 0, 0, "stop");
                if (st->req.include_usage) llava_usage_chunk_append(&st->out, &st->req, 0, st->id, st->created, name);
                llava_sbuf_puts(&st->out, "data: [DONE]\n\n");
                st->finished = 1;
            }
        } else {
            size_t upto = j->done ? strlen(j->text ? j->text : "") : j->stable;
            int toks = j->n_toks;
            if (upto > st->sent_text) {
                llava_chunk_append(&st->out, &st->req, j, m, st->id, st->created, name, NULL, j->text + st->sent_text,
                                   upto - st->sent_text, st->sent_toks, toks, NULL);
                st->sent_text = upto;
                st->sent_toks = toks;
            }
            if (j->done) {
                llava_chunk_append(&st->out, &st->req, j, m, st->id, st->created, name, NULL, NULL, 0, st->sent_toks,
                                   j->n_toks, j->finish_reason);
                if (st->req.include_usage)
                    llava_usage_chunk_append(&st->out, &st->req, j->n_toks, st->id, st->created, name);
                llava_sbuf_puts(&st->out, "data: [DONE]\n\n");
                st->finished = 1;
            }
        }
        pthread_mutex_unlock(&j->mu);
    }
}

static void stream_free(void *cls) {
    stream_state *st = cls;
    llava_job *j = st->req.job;
    llava_job_cancel_wait(j); /* a client that left before its turn costs no engine time */
    if (j->done && !j->failed) record_work(st->s, j, st->req.n_prompt);
    llava_chat_req_free(&st->req);
    llava_sbuf_free(&st->out);
    free(st);
}

/* ---- handlers ---------------------------------------------------------------------------------- */

static enum MHD_Result handle_chat(llava_server *s, struct MHD_Connection *c, req_ctx *rc) {
    llava_api_err e;
    llava_chat_req req;
    if (llava_chat_parse(&req, rc->body.p ? rc->body.p : "", rc->body.len, &s->p.cfg, s->m, &e)) return send_error(c, rc, &e);
    if (submit(s, req.job, &e)) {
        llava_chat_req_free(&req);
        return send_error(c, rc, &e);
    }
    char id[64];
    make_id(s, "chatcmpl", id, sizeof id);
    long created = (long)time(NULL);
    if (req.stream) {
        stream_state *st = xcalloc(1, sizeof *st);
        st->s = s;
        st->req = req;
        snprintf(st->id, sizeof st->id, "%s", id);
        st->created = created;
        struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, st, stream_free);
        MHD_add_response_header(r, "Content-Type", "text/event-stream");
        MHD_add_response_header(r, "Cache-Control", "no-cache");
        enum MHD_Result ok = MHD_queue_response(c, MHD_HTTP_OK, r);
        MHD_destroy_response(r);
        rc->status = 200;
        return ok;
    }
    llava_job *j = req.job;
    llava_job_wait(j);
    enum MHD_Result ok;
    if (j->failed) {
        engine_error(j, &e);
        ok = send_error(c, rc, &e);
    } else {
        record_work(s, j, req.n_prompt);
        ok = send_json(c, rc, 200, llava_chat_response(&req, j, s->m, id, created, s->p.cfg.model_name));
    }
    llava_chat_req_free(&req);
    return ok;
}

static enum MHD_Result handle_classify(llava_server *s, struct MHD_Connection *c, req_ctx *rc) {
    llava_api_err e;
    llava_classify_req req;
    if (llava_classify_parse(&req, rc->body.p ? rc->body.p : "", rc->body.len, &s->p.cfg, s->m, &e))
        return send_error(c, rc, &e);
    if (submit(s, req.job, &e)) {
        llava_classify_req_free(&req);
        return send_error(c, rc, &e);
    }
    llava_job *j = req.job;
    llava_job_wait(j);
    enum MHD_Result ok;
    if (j->failed) {
        engine_error(j, &e);
        ok = send_error(c, rc, &e);
    } else {
        char id[64];
        make_id(s, "classify", id, sizeof id);
        record_work(s, j, req.n_prompt);
        ok = send_json(c, rc, 200, llava_classify_response(&req, j, id));
    }
    llava_classify_req_free(&req);
    return ok;
}

static enum MHD_Result handle_models(llava_server *s, struct MHD_Connection *c, req_ctx *rc) {
    llava_sbuf b = {0};
    llava_sbuf_puts(&b, "{\"object\":\"list\",\"data\":[{\"id\":");
    llava_sbuf_json_str(&b, s->p.cfg.model_name);
    llava_sbuf_printf(&b, ",\"object\":\"model\",\"created\":%ld,\"owned_by\":\"llava.c\",\"root\":", s->started);
    llava_sbuf_json_str(&b, s->m->dir ? s->m->dir : "");
    llava_sbuf_printf(&b, ",\"parent\":null,\"max_model_len\":%d}]}", s->p.cfg.max_model_len);
    return send_json(c, rc, 200, b.p);
}

static int authorized(llava_server *s, struct MHD_Connection *c) {
    const char *key = s->p.api_key;
    if (!key || !key[0]) return 1;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7)) return 0;
    h += 7;
    size_t a = strlen(h), b = strlen(key);
    unsigned diff = (unsigned)(a ^ b);
    for (size_t i = 0; i < a; i++) diff |= (unsigned char)h[i] ^ (unsigned char)key[i % (b ? b : 1)];
    return diff == 0;
}

static const char *endpoint_label(const char *url) {
    static const char *const known[] = {"/v1/chat/completions", "/invocations", "/v1/classify", "/v1/models",
                                        "/health", "/ping", "/metrics"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (!strcmp(url, known[i])) return known[i];
    return "other";
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    llava_server *s = cls;
    req_ctx *rc = *con_cls;
    if (!rc) {
        rc = xcalloc(1, sizeof *rc);
        rc->t0 = llava_now();
        rc->endpoint = endpoint_label(url);
        atomic_fetch_add(&s->inflight, 1);
        *con_cls = rc;
        return MHD_YES;
    }
    if (*upload_size) { /* body bytes: keep up to the limit, drain the rest */
        if (!rc->too_large && rc->body.len + *upload_size > s->p.max_body) {
            rc->too_large = 1;
            llava_sbuf_free(&rc->body);
        }
        if (!rc->too_large) llava_sbuf_put(&rc->body, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    llava_api_err e;
    int get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
    const char *ep = rc->endpoint;
    if (get && (!strcmp(ep, "/health") || !strcmp(ep, "/ping"))) {
        if (atomic_load(&s->quiescing)) {
            llava_api_errf(&e, 503, NULL, "shutting_down", "the server is shutting down");
            return send_error(c, rc, &e);
        }
        return send_json(c, rc, 200, xstrdup(!strcmp(ep, "/ping") ? "{}" : "{\"status\":\"ok\"}"));
    }
    if (!authorized(s, c)) {
        llava_api_errf(&e, 401, NULL, "invalid_api_key", "missing or wrong API key (send Authorization: Bearer <key>)");
        return send_error(c, rc, &e);
    }
    int is_post_ep = !strcmp(ep, "/v1/chat/completions") || !strcmp(ep, "/invocations") || !strcmp(ep, "/v1/classify");
    int is_get_ep = !strcmp(ep, "/v1/models") || !strcmp(ep, "/metrics");
    if (!is_post_ep && !is_get_ep) {
        llava_api_errf(&e, 404, NULL, "not_found", "no route %s %s", method, url);
        return send_error(c, rc, &e);
    }
    if ((is_post_ep && !post) || (is_get_ep && !get)) {
        llava_api_errf(&e, 405, NULL, "method_not_allowed", "%s needs %s", url, is_post_ep ? "POST" : "GET");
        return send_error(c, rc, &e);
    }
    if (!strcmp(ep, "/metrics")) {
        int waiting, running;
        double gpu_used = 0, gpu_total = 0;
        llava_engine_load(s->eng, &waiting, &running);
        if (strcmp(s->p.device, "cpu")) llava_gpu_mem(&gpu_used, &gpu_total);
        return send_body(c, rc, 200, "text/plain; version=0.0.4",
                         llava_stats_render(s->met, s->p.cfg.model_name, waiting, running, gpu_used, gpu_total));
    }
    if (!strcmp(ep, "/v1/models")) return handle_models(s, c, rc);
    if (atomic_load(&s->quiescing)) {
        llava_api_errf(&e, 503, NULL, "shutting_down", "the server is shutting down");
        return send_error(c, rc, &e);
    }
    if (rc->too_large) {
        llava_api_errf(&e, 413, NULL, "request_too_large", "the request body is over the limit of %zu bytes (--max-body-bytes)",
                       s->p.max_body);
        return send_error(c, rc, &e);
    }
    if (!strcmp(ep, "/v1/classify")) return handle_classify(s, c, rc);
    return handle_chat(s, c, rc);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    llava_server *s = cls;
    req_ctx *rc = *con_cls;
    if (!rc) return;
    llava_stats_request(s->met, rc->endpoint, rc->status ? rc->status : 499, llava_now() - rc->t0);
    llava_sbuf_free(&rc->body);
    free(rc);
    *con_cls = NULL;
    atomic_fetch_sub(&s->inflight, 1);
}

int llava_server_start(llava_server **out, const llava_server_params *p, const llava_model *m, llava_engine *eng,
                       llava_err *err) {
    *out = NULL;
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    char port[16];
    snprintf(port, sizeof port, "%d", p->port);
    int gai = getaddrinfo(p->host, port, &hints, &ai);
    if (gai) return llava_errf(err, "--host %s: %s", p->host, gai_strerror(gai));
    llava_server *s = xcalloc(1, sizeof *s);
    s->p = *p;
    s->m = m;
    s->eng = eng;
    s->met = llava_stats_new();
    s->started = (long)time(NULL);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG | (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0);
    s->d = MHD_start_daemon(flags, (uint16_t)p->port, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_CONNECTION_LIMIT, (unsigned)1024,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)300, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!s->d) {
        llava_stats_free(s->met);
        free(s);
        return llava_errf(err, "cannot listen on %s:%d (address in use or not allowed?)", p->host, p->port);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : p->port;
    *out = s;
    return 0;
}

int llava_server_port(const llava_server *s) { return s->port; }

void llava_server_quiesce(llava_server *s) {
    if (atomic_exchange(&s->quiescing, 1)) return;
    MHD_socket fd = MHD_quiesce_daemon(s->d);
    if (fd != MHD_INVALID_SOCKET) close(fd);
}

int llava_server_inflight(llava_server *s) { return atomic_load(&s->inflight); }

void llava_server_stop(llava_server *s) {
    if (!s) return;
    MHD_stop_daemon(s->d);
    llava_stats_free(s->met);
    free(s);
}
