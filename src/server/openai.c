/* openai.c — OpenAI request parsing and response formatting (see openai.h). */
#include "server/openai.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "batch/output.h"
#include "engine/classify.h"
#include "image/anyres.h"
#include "image/image.h"
#include "server/chat_prompt.h"
#include "server/fetch.h"
#include "util/mem.h"

#define MAX_LABELS 4096

int llava_api_errf(llava_api_err *e, int status, const char *param, const char *code, const char *fmt, ...) {
    e->status = status;
    e->type = status == 401   ? "authentication_error"
              : status == 404 ? "not_found_error"
              : status == 429 ? "rate_limit_error"
              : status == 503 ? "unavailable_error"
              : status >= 500 ? "server_error"
                              : "invalid_request_error";
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    snprintf(e->code, sizeof e->code, "%s", code ? code : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return -1;
}

char *llava_api_error_json(const llava_api_err *e) {
    cJSON *o = cJSON_CreateObject(), *x = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(x, "message", e->msg);
    cJSON_AddStringToObject(x, "type", e->type ? e->type : "invalid_request_error");
    if (e->param[0]) cJSON_AddStringToObject(x, "param", e->param);
    else cJSON_AddNullToObject(x, "param");
    if (e->code[0]) cJSON_AddStringToObject(x, "code", e->code);
    else cJSON_AddNullToObject(x, "code");
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* ---- base64 and images ------------------------------------------------------------------------ */

static int b64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
}

int llava_base64_decode(const char *s, size_t n, unsigned char **out, size_t *out_len) {
    unsigned char *o = xmalloc(n / 4 * 3 + 3);
    size_t k = 0;
    uint32_t acc = 0;
    int bits = 0, quantum = 0, pad = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
        if (c == '=') {
            pad++;
            continue;
        }
        int v = b64_value(c);
        if (v < 0 || pad) { /* a character outside the alphabet, or data after padding */
            free(o);
            return -1;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        quantum++;
        if (bits >= 8) {
            bits -= 8;
            o[k++] = (unsigned char)(acc >> bits);
        }
    }
    if (quantum % 4 == 1 || pad > 2) {
        free(o);
        return -1;
    }
    *out = o;
    *out_len = k;
    return 0;
}

/* Decodes + preprocesses the image a URL names into im. param names the field in errors. */
static int load_image(llava_job_image *im, const char *url, const llava_serve_cfg *cfg, const llava_model *m,
                      const char *param, llava_api_err *e) {
    llava_image img = {0};
    llava_err err = {{0}};
    int rc;
    if (!strncmp(url, "data:", 5)) {
        const char *comma = strchr(url, ',');
        if (!comma || comma - url < 12 || strncmp(comma - 7, ";base64", 7))
            return llava_api_errf(e, 400, param, "invalid_image_url",
                                  "image data URL must look like data:image/png;base64,<base64 data>");
        unsigned char *bytes = NULL;
        size_t n = 0;
        if (llava_base64_decode(comma + 1, strlen(comma + 1), &bytes, &n))
            return llava_api_errf(e, 400, param, "invalid_base64", "the image data URL is not valid base64");
        rc = llava_image_decode(&img, bytes, n, cfg->max_pixels, "image", &err);
        free(bytes);
    } else if (!strncmp(url, "file://", 7)) {
        if (!cfg->media_dir)
            return llava_api_errf(e, 400, param, "local_media_disabled",
                                  "file:// image URLs are refused; start the server with --allowed-local-media DIR");
        char *real = realpath(url + 7, NULL);
        size_t dl = strlen(cfg->media_dir);
        if (!real || strncmp(real, cfg->media_dir, dl) || (real[dl] != '/' && !(dl == 1 && cfg->media_dir[0] == '/'))) {
            free(real);
            return llava_api_errf(e, 400, param, "local_media_forbidden",
                                  "file:// image URL does not resolve to a file inside --allowed-local-media");
        }
        rc = llava_image_load(&img, real, cfg->max_pixels, &err);
        free(real);
        if (rc) snprintf(err.msg, sizeof err.msg, "%s", strstr(err.msg, "over the limit") ? "image is over the pixel limit" : "cannot read or decode the image file");
    } else if (!strncmp(url, "http://", 7) || !strncmp(url, "https://", 8)) {
        if (!cfg->remote)
            return llava_api_errf(e, 400, param, "remote_images_disabled",
                                  "remote image URLs are refused; start the server with --allow-remote-images, "
                                  "or send the image inline as a data:image/...;base64 URL");
        unsigned char *bytes = NULL;
        size_t n = 0;
        long status = 0;
        char why[512];
        llava_fetch_status fs = llava_fetch_url(&bytes, &n, &status, url, cfg->remote, why, sizeof why);
        if (fs == LLAVA_FETCH_TOO_LARGE)
            return llava_api_errf(e, 413, param, "image_too_large", "fetching %.200s: %s (--remote-image-max-bytes)",
                                  url, why);
        if (fs == LLAVA_FETCH_NOT_PUBLIC)
            return llava_api_errf(e, 400, param, "remote_image_not_public",
                                  "fetching %.200s: %s; start the server with --allow-private-remote-images to "
                                  "fetch from such addresses", url, why);
        if (fs == LLAVA_FETCH_TIMEOUT)
            return llava_api_errf(e, 400, param, "remote_image_timeout",
                                  "fetching %.200s: %s (--remote-image-timeout %ld)", url, why, cfg->remote->timeout_s);
        if (fs != LLAVA_FETCH_OK)
            return llava_api_errf(e, 400, param, "remote_image_fetch_failed", "fetching %.200s: %s", url, why);
        rc = llava_image_decode(&img, bytes, n, cfg->max_pixels, "image", &err);
        free(bytes);
    } else {
        return llava_api_errf(e, 400, param, "invalid_image_url",
                              "image_url.url must be a data:image/...;base64 URL");
    }
    if (rc) {
        if (strstr(err.msg, "over the limit"))
            return llava_api_errf(e, 413, param, "image_too_large", "%s (server limit --max-pixels %lld)", err.msg,
                                  (long long)cfg->max_pixels);
        return llava_api_errf(e, 400, param, "invalid_image", "%s", err.msg);
    }
    if (llava_preprocess(&im->pixels, &im->n_tiles, &img, &m->pp, &err)) {
        llava_image_free(&img);
        return llava_api_errf(e, 400, param, "invalid_image", "image preprocessing failed: %s", err.msg);
    }
    im->H = img.h;
    im->W = img.w;
    im->n_tokens = llava_model_image_tokens(m, img.h, img.w);
    llava_image_free(&img);
    if (im->n_tokens <= 0) return llava_api_errf(e, 400, param, "invalid_image", "unsupported image size");
    return 0;
}

/* ---- field helpers: 0 absent (or null), 1 read, -1 wrong type/value -------------------------- */

static cJSON *field(const cJSON *o, const char *name) {
    cJSON *x = cJSON_GetObjectItemCaseSensitive(o, name);
    return x && !cJSON_IsNull(x) ? x : NULL;
}

static int get_bool(const cJSON *o, const char *name, int *out, llava_api_err *e) {
    cJSON *x = field(o, name);
    if (!x) return 0;
    if (!cJSON_IsBool(x)) return llava_api_errf(e, 400, name, "invalid_type", "'%s' must be a boolean", name);
    *out = cJSON_IsTrue(x);
    return 1;
}

static int get_num(const cJSON *o, const char *name, double lo, double hi, double *out, llava_api_err *e) {
    cJSON *x = field(o, name);
    if (!x) return 0;
    if (!cJSON_IsNumber(x)) return llava_api_errf(e, 400, name, "invalid_type", "'%s' must be a number", name);
    if (!(x->valuedouble >= lo && x->valuedouble <= hi))
        return llava_api_errf(e, 400, name, "invalid_value", "'%s' must be between %g and %g", name, lo, hi);
    *out = x->valuedouble;
    return 1;
}

static int get_int(const cJSON *o, const char *name, double lo, double hi, long long *out, llava_api_err *e) {
    double d = 0;
    int r = get_num(o, name, lo, hi, &d, e);
    if (r <= 0) return r;
    if (d != floor(d)) return llava_api_errf(e, 400, name, "invalid_type", "'%s' must be an integer", name);
    *out = (long long)d;
    return 1;
}

static cJSON *parse_body(const char *body, size_t len, llava_api_err *e) {
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (!root) {
        llava_api_errf(e, 400, NULL, "invalid_json", "the request body is not valid JSON (error near byte %ld)",
                       end ? (long)(end - body) : 0L);
        return NULL;
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        llava_api_errf(e, 400, NULL, "invalid_json", "the request body must be a JSON object");
        return NULL;
    }
    return root;
}

/* A label list: array of 1..MAX_LABELS non-empty strings. *labels points into the JSON. */
static int get_labels(const cJSON *x, const char *param, const char ***labels, int *n, llava_api_err *e) {
    if (!cJSON_IsArray(x)) return llava_api_errf(e, 400, param, "invalid_type", "'%s' must be an array of strings", param);
    int k = cJSON_GetArraySize(x);
    if (k < 1 || k > MAX_LABELS)
        return llava_api_errf(e, 400, param, "invalid_value", "'%s' must hold 1 to %d labels", param, MAX_LABELS);
    const char **v = xcalloc((size_t)k, sizeof *v);
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, x) {
        if (!cJSON_IsString(it) || !it->valuestring[0]) {
            free(v);
            return llava_api_errf(e, 400, param, "invalid_type", "'%s' must be an array of non-empty strings", param);
        }
        v[i++] = it->valuestring;
    }
    *labels = v;
    *n = k;
    return 0;
}

static int classifier_fits(const llava_model *m, const llava_classifier *c, const llava_job_image *im,
                           const llava_serve_cfg *cfg, int *n_prompt, llava_api_err *e) {
    const char *p = llava_classifier_prompt(c);
    int *ids = NULL, n = 0;
    llava_err err = {{0}};
    if (llava_tokenize(m->tok, p, strlen(p), 1, &ids, &n, &err)) return llava_api_errf(e, 400, NULL, NULL, "%s", err.msg);
    free(ids);
    *n_prompt = n - 1 + im->n_tokens;
    if (*n_prompt + llava_classifier_trie_size(c) + 8 > cfg->max_model_len)
        return llava_api_errf(e, 400, "messages", "context_length_exceeded",
                              "the prompt (%d tokens) plus the label continuations (%d tokens) exceed the context "
                              "of %d tokens (--max-model-len)",
                              *n_prompt, llava_classifier_trie_size(c), cfg->max_model_len);
    return 0;
}

/* ---- chat completions ------------------------------------------------------------------------- */

void llava_chat_req_free(llava_chat_req *r) {
    llava_job_free(r->job);
    r->job = NULL;
}

int llava_chat_parse(llava_chat_req *r, const char *body, size_t len, const llava_serve_cfg *cfg, const llava_model *m,
                     llava_api_err *e) {
    memset(r, 0, sizeof *r);
    cJSON *root = parse_body(body, len, e);
    if (!root) return -1;
    int rc = -1, n_msgs = 0, n_images = 0, cap_msgs = 0;
    llava_chat_message *msgs = NULL;
    llava_chat_part **parts = NULL;
    llava_job_image *images = NULL;
    const char **labels = NULL;
    int n_labels = 0;
    char *question = NULL;
    llava_job *j = NULL;
    llava_err err = {{0}};

    cJSON *x = field(root, "model");
    if (x && !cJSON_IsString(x)) {
        llava_api_errf(e, 400, "model", "invalid_type", "'model' must be a string");
        goto done;
    }
    if (x && strcmp(x->valuestring, cfg->model_name)) {
        llava_api_errf(e, 404, "model", "model_not_found", "the model '%s' does not exist; this server serves '%s'",
                       x->valuestring, cfg->model_name);
        goto done;
    }
    long long n = 1;
    if (get_int(root, "n", -1e9, 1e9, &n, e) < 0) goto done;
    if (n != 1) {
        llava_api_errf(e, 400, "n", "invalid_value", "'n' must be 1 (this server returns one choice per request)");
        goto done;
    }
    /* labels first: they decide the job kind */
    x = field(root, "structured_outputs");
    if (x) {
        if (!cJSON_IsObject(x)) {
            llava_api_errf(e, 400, "structured_outputs", "invalid_type", "'structured_outputs' must be an object");
            goto done;
        }
        cJSON *c = field(x, "choice");
        if (!c) {
            llava_api_errf(e, 400, "structured_outputs", "unsupported",
                           "only structured_outputs.choice is supported (regex, json and grammar are not)");
            goto done;
        }
        if (get_labels(c, "structured_outputs.choice", &labels, &n_labels, e)) goto done;
    }
    x = field(root, "guided_choice");
    if (x && !labels && get_labels(x, "guided_choice", &labels, &n_labels, e)) goto done;
    const char *answer = NULL;
    x = field(root, "answer_template");
    if (x) {
        if (!cJSON_IsString(x)) {
            llava_api_errf(e, 400, "answer_template", "invalid_type", "'answer_template' must be a string");
            goto done;
        }
        answer = x->valuestring;
    }

    /* messages */
    cJSON *mv = field(root, "messages");
    if (!mv || !cJSON_IsArray(mv) || cJSON_GetArraySize(mv) < 1) {
        llava_api_errf(e, 400, "messages", mv ? "invalid_type" : "missing_field",
                       "'messages' must be a non-empty array of {role, content}");
        goto done;
    }
    cap_msgs = cJSON_GetArraySize(mv);
    msgs = xcalloc((size_t)cap_msgs, sizeof *msgs);
    parts = xcalloc((size_t)cap_msgs, sizeof *parts);
    images = xcalloc((size_t)(cfg->max_images > 0 ? cfg->max_images : 1), sizeof *images);
    const cJSON *mi;
    int last_user = -1;
    cJSON_ArrayForEach(mi, mv) {
        char pbuf[64];
        snprintf(pbuf, sizeof pbuf, "messages[%d]", n_msgs);
        cJSON *role = cJSON_IsObject(mi) ? field(mi, "role") : NULL;
        if (!role || !cJSON_IsString(role)) {
            llava_api_errf(e, 400, pbuf, "invalid_type", "%s must be an object with a string 'role'", pbuf);
            goto done;
        }
        llava_chat_message *msg = &msgs[n_msgs];
        msg->role = role->valuestring;
        if (!strcmp(msg->role, "user")) last_user = n_msgs;
        cJSON *content = field(mi, "content");
        if (!content) msg->content_str = "";
        else if (cJSON_IsString(content)) msg->content_str = content->valuestring;
        else if (cJSON_IsArray(content)) {
            int np = cJSON_GetArraySize(content);
            parts[n_msgs] = xcalloc((size_t)(np ? np : 1), sizeof **parts);
            const cJSON *pi;
            cJSON_ArrayForEach(pi, content) {
                char qbuf[96];
                snprintf(qbuf, sizeof qbuf, "%s.content[%d]", pbuf, msg->n_parts);
                cJSON *type = cJSON_IsObject(pi) ? field(pi, "type") : NULL;
                if (!type || !cJSON_IsString(type)) {
                    llava_api_errf(e, 400, qbuf, "invalid_type", "%s must be an object with a string 'type'", qbuf);
                    goto done;
                }
                llava_chat_part *p = &parts[n_msgs][msg->n_parts];
                if (!strcmp(type->valuestring, "text")) {
                    cJSON *t = field(pi, "text");
                    if (!t || !cJSON_IsString(t)) {
                        llava_api_errf(e, 400, qbuf, "invalid_type", "%s.text must be a string", qbuf);
                        goto done;
                    }
                    p->type = LLAVA_PART_TEXT;
                    p->text = t->valuestring;
                } else if (!strcmp(type->valuestring, "image_url")) {
                    cJSON *iu = field(pi, "image_url");
                    cJSON *url = iu && cJSON_IsObject(iu) ? field(iu, "url") : iu;
                    if (!url || !cJSON_IsString(url)) {
                        llava_api_errf(e, 400, qbuf, "invalid_type", "%s.image_url.url must be a string", qbuf);
                        goto done;
                    }
                    if (n_images >= cfg->max_images) {
                        llava_api_errf(e, 400, "messages", "too_many_images",
                                       "at most %d image%s per request (--max-images)", cfg->max_images,
                                       cfg->max_images == 1 ? "" : "s");
                        goto done;
                    }
                    if (load_image(&images[n_images], url->valuestring, cfg, m, qbuf, e)) goto done;
                    n_images++;
                    p->type = LLAVA_PART_IMAGE;
                } else {
                    llava_api_errf(e, 400, qbuf, "unsupported_content",
                                   "content part type '%s' is not supported (use text or image_url)", type->valuestring);
                    goto done;
                }
                msg->n_parts++;
            }
            msg->parts = parts[n_msgs];
        } else {
            llava_api_errf(e, 400, pbuf, "invalid_type", "%s.content must be a string or an array of parts", pbuf);
            goto done;
        }
        n_msgs++;
    }

    /* options */
    int lp = 0, stream = 0, iu = 0;
    long long top_lp = 0, max_tokens = -1, seed = 0;
    double temp = 1.0, top_p = 1.0;
    int have_temp;
    if (get_bool(root, "logprobs", &lp, e) < 0 || get_int(root, "top_logprobs", 0, LLAVA_MAX_TOP_LOGPROBS, &top_lp, e) < 0 ||
        get_bool(root, "stream", &stream, e) < 0 || (have_temp = get_num(root, "temperature", 0, 2, &temp, e)) < 0 ||
        get_num(root, "top_p", 0, 1, &top_p, e) < 0 || get_int(root, "seed", -9.2e18, 9.2e18, &seed, e) < 0 ||
        get_int(root, "max_tokens", 1, 1 << 24, &max_tokens, e) < 0 ||
        get_int(root, "max_completion_tokens", 1, 1 << 24, &max_tokens, e) < 0)
        goto done;
    if (top_p <= 0) {
        llava_api_errf(e, 400, "top_p", "invalid_value", "'top_p' must be in (0, 1]");
        goto done;
    }
    if (top_lp > 0 && !lp) {
        llava_api_errf(e, 400, "top_logprobs", "invalid_value", "'top_logprobs' needs 'logprobs': true");
        goto done;
    }
    x = field(root, "stream_options");
    if (x) {
        if (!cJSON_IsObject(x)) {
            llava_api_errf(e, 400, "stream_options", "invalid_type", "'stream_options' must be an object");
            goto done;
        }
        if (get_bool(x, "include_usage", &iu, e) < 0) goto done;
    }
    r->stream = stream;
    r->include_usage = stream && iu;
    r->logprobs = lp;

    if (labels) {
        /* constrained classification: label scoring of the one image with the last user question */
        if (n_images != 1) {
            llava_api_errf(e, 400, "messages", "invalid_value",
                           "a request with a label set (guided_choice / structured_outputs.choice) needs exactly one "
                           "image; it has %d", n_images);
            goto done;
        }
        if (last_user < 0) {
            llava_api_errf(e, 400, "messages", "invalid_value", "a label-set request needs a user message");
            goto done;
        }
        llava_chat_message *u = &msgs[last_user];
        llava_sbuf q = {0};
        if (u->content_str) llava_sbuf_puts(&q, u->content_str);
        for (int i = 0; i < u->n_parts; i++)
            if (u->parts[i].type == LLAVA_PART_TEXT) {
                if (q.len) llava_sbuf_puts(&q, "\n");
                llava_sbuf_puts(&q, u->parts[i].text);
            }
        question = q.p ? q.p : xstrdup("");
        j = llava_job_new(LLAVA_JOB_CLASSIFY);
        if (llava_classifier_new(&j->clf, m, labels, n_labels, question, answer, &err)) {
            llava_api_errf(e, 400, labels == NULL ? NULL : "guided_choice", "invalid_value", "%s", err.msg);
            goto done;
        }
        if (classifier_fits(m, j->clf, &images[0], cfg, &r->n_prompt, e)) goto done;
    } else {
        int *ntok = xcalloc((size_t)(n_images ? n_images : 1), sizeof *ntok);
        for (int i = 0; i < n_images; i++) ntok[i] = images[i].n_tokens;
        j = llava_job_new(LLAVA_JOB_CHAT);
        int bad = llava_build_chat_prompt(&j->ids, &j->n_ids, m, msgs, n_msgs, n_images, ntok, &err);
        free(ntok);
        if (bad) {
            llava_api_errf(e, 400, "messages", "invalid_value", "%s", err.msg);
            goto done;
        }
        r->n_prompt = j->n_ids;
        int room = cfg->max_model_len - j->n_ids;
        if (max_tokens < 0) max_tokens = cfg->max_tokens_default < room ? cfg->max_tokens_default : room;
        if (room < 1 || max_tokens > room) {
            llava_api_errf(e, 400, "messages", "context_length_exceeded",
                           "the prompt has %d tokens; with max_tokens %lld it exceeds the context of %d tokens "
                           "(--max-model-len)",
                           j->n_ids, max_tokens, cfg->max_model_len);
            goto done;
        }
        j->gp.max_tokens = (int)max_tokens;
        j->gp.temperature = have_temp ? (float)temp : 1.0f;
        j->gp.top_p = (float)top_p;
        j->gp.seed = (uint64_t)seed;
        j->gp.top_logprobs = lp ? (int)top_lp : 0;
        x = field(root, "stop");
        if (x) {
            if (cJSON_IsString(x)) {
                if (x->valuestring[0]) j->stop[j->n_stop++] = xstrdup(x->valuestring);
            } else if (cJSON_IsArray(x) && cJSON_GetArraySize(x) <= LLAVA_JOB_MAX_STOP) {
                const cJSON *s;
                cJSON_ArrayForEach(s, x) {
                    if (!cJSON_IsString(s)) {
                        llava_api_errf(e, 400, "stop", "invalid_type", "'stop' must be a string or an array of strings");
                        goto done;
                    }
                    if (s->valuestring[0]) j->stop[j->n_stop++] = xstrdup(s->valuestring);
                }
            } else {
                llava_api_errf(e, 400, "stop", "invalid_type", "'stop' must be a string or an array of at most %d strings",
                               LLAVA_JOB_MAX_STOP);
                goto done;
            }
        }
    }
    j->images = images;
    j->n_images = n_images;
    images = NULL;
    n_images = 0;
    r->job = j;
    j = NULL;
    rc = 0;
done:
    if (images)
        for (int i = 0; i < n_images; i++) free(images[i].pixels);
    free(images);
    llava_job_free(j);
    for (int i = 0; parts && i < cap_msgs; i++) free(parts[i]);
    free(parts);
    free(msgs);
    free(labels);
    free(question);
    cJSON_Delete(root);
    return rc;
}

static cJSON *token_json(const llava_model *m, int id, double logprob) {
    cJSON *o = cJSON_CreateObject();
    char *t = llava_detokenize(m->tok, &id, 1, 0);
    cJSON_AddStringToObject(o, "token", t ? t : "");
    cJSON_AddNumberToObject(o, "logprob", isfinite(logprob) ? logprob : -9999.0);
    cJSON *b = cJSON_AddArrayToObject(o, "bytes");
    for (const unsigned char *p = (const unsigned char *)(t ? t : ""); *p; p++) cJSON_AddItemToArray(b, cJSON_CreateNumber(*p));
    free(t);
    return o;
}

static cJSON *logprobs_json(const llava_job *j, const llava_model *m, int from, int to) {
    cJSON *o = cJSON_CreateObject(), *c = cJSON_AddArrayToObject(o, "content");
    for (int i = from; i < to; i++) {
        const llava_token_info *t = &j->toks[i];
        cJSON *e = token_json(m, t->id, t->logprob);
        cJSON *tl = cJSON_AddArrayToObject(e, "top_logprobs");
        for (int k = 0; k < t->n_top; k++) cJSON_AddItemToArray(tl, token_json(m, t->top_ids[k], t->top_logprobs[k]));
        cJSON_AddItemToArray(c, e);
    }
    cJSON_AddNullToObject(o, "refusal");
    return o;
}

static int best_label(const llava_job *j) {
    int n = llava_classifier_n_labels(j->clf), b = 0;
    for (int i = 1; i < n; i++)
        if (j->probs[i] > j->probs[b]) b = i;
    return b;
}

static void add_usage(cJSON *o, int prompt, int completion) {
    cJSON *u = cJSON_AddObjectToObject(o, "usage");
    cJSON_AddNumberToObject(u, "prompt_tokens", prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", completion);
    cJSON_AddNumberToObject(u, "total_tokens", prompt + completion);
}

static cJSON *head_json(const char *id, const char *object, long created, const char *model_name) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "object", object);
    cJSON_AddNumberToObject(o, "created", (double)created);
    cJSON_AddStringToObject(o, "model", model_name);
    cJSON_AddNullToObject(o, "system_fingerprint");
    return o;
}

char *llava_chat_response(const llava_chat_req *r, const llava_job *j, const llava_model *m, const char *id,
                          long created, const char *model_name) {
    cJSON *o = head_json(id, "chat.completion", created, model_name);
    cJSON *ch = cJSON_AddArrayToObject(o, "choices"), *c = cJSON_CreateObject();
    cJSON_AddItemToArray(ch, c);
    cJSON_AddNumberToObject(c, "index", 0);
    cJSON *msg = cJSON_AddObjectToObject(c, "message");
    cJSON_AddStringToObject(msg, "role", "assistant");
    int completion = 0;
    if (j->kind == LLAVA_JOB_CLASSIFY) {
        cJSON_AddStringToObject(msg, "content", llava_classifier_label(j->clf, best_label(j)));
        cJSON_AddNullToObject(c, "logprobs");
        cJSON_AddStringToObject(c, "finish_reason", "stop");
        cJSON *lp = cJSON_AddObjectToObject(c, "label_probabilities");
        for (int i = 0; i < llava_classifier_n_labels(j->clf); i++)
            cJSON_AddNumberToObject(lp, llava_classifier_label(j->clf, i), j->probs[i]);
    } else {
        cJSON_AddStringToObject(msg, "content", j->text ? j->text : "");
        if (r->logprobs) cJSON_AddItemToObject(c, "logprobs", logprobs_json(j, m, 0, j->n_toks));
        else cJSON_AddNullToObject(c, "logprobs");
        cJSON_AddStringToObject(c, "finish_reason", j->finish_reason ? j->finish_reason : "stop");
        completion = j->n_toks;
    }
    add_usage(o, r->n_prompt, completion);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static void sse(llava_sbuf *b, cJSON *o) {
    char *s = cJSON_PrintUnformatted(o);
    llava_sbuf_puts(b, "data: ");
    llava_sbuf_puts(b, s);
    llava_sbuf_puts(b, "\n\n");
    free(s);
    cJSON_Delete(o);
}

void llava_chunk_append(llava_sbuf *b, const llava_chat_req *r, const llava_job *j, const llava_model *m, const char *id,
                        long created, const char *model_name, const char *role, const char *content, size_t content_len,
                        int tok_from, int tok_to, const char *finish) {
    cJSON *o = head_json(id, "chat.completion.chunk", created, model_name);
    cJSON *ch = cJSON_AddArrayToObject(o, "choices"), *c = cJSON_CreateObject();
    cJSON_AddItemToArray(ch, c);
    cJSON_AddNumberToObject(c, "index", 0);
    cJSON *d = cJSON_AddObjectToObject(c, "delta");
    if (role) cJSON_AddStringToObject(d, "role", role);
    if (content) {
        char *t = xmalloc(content_len + 1);
        memcpy(t, content, content_len);
        t[content_len] = 0;
        cJSON_AddStringToObject(d, "content", t);
        free(t);
    }
    if (r->logprobs && j->kind == LLAVA_JOB_CHAT && tok_to > tok_from)
        cJSON_AddItemToObject(c, "logprobs", logprobs_json(j, m, tok_from, tok_to));
    else cJSON_AddNullToObject(c, "logprobs");
    if (finish) cJSON_AddStringToObject(c, "finish_reason", finish);
    else cJSON_AddNullToObject(c, "finish_reason");
    if (r->include_usage) cJSON_AddNullToObject(o, "usage");
    sse(b, o);
}

void llava_usage_chunk_append(llava_sbuf *b, const llava_chat_req *r, int completion_tokens, const char *id,
                              long created, const char *model_name) {
    cJSON *o = head_json(id, "chat.completion.chunk", created, model_name);
    cJSON_AddArrayToObject(o, "choices");
    add_usage(o, r->n_prompt, completion_tokens);
    sse(b, o);
}

/* ---- /v1/classify ----------------------------------------------------------------------------- */

void llava_classify_req_free(llava_classify_req *r) {
    llava_job_free(r->job);
    r->job = NULL;
}

int llava_classify_parse(llava_classify_req *r, const char *body, size_t len, const llava_serve_cfg *cfg,
                         const llava_model *m, llava_api_err *e) {
    memset(r, 0, sizeof *r);
    r->top_k = 3;
    r->min_conf = 0.5;
    cJSON *root = parse_body(body, len, e);
    if (!root) return -1;
    int rc = -1;
    const char **labels = NULL, *question = NULL, *answer = NULL;
    int n_labels = 0;
    llava_job *j = NULL;
    llava_err err = {{0}};
    cJSON *x = field(root, "model");
    if (x && (!cJSON_IsString(x) || strcmp(x->valuestring, cfg->model_name))) {
        llava_api_errf(e, cJSON_IsString(x) ? 404 : 400, "model", "model_not_found", "this server serves '%s'",
                       cfg->model_name);
        goto done;
    }
    x = field(root, "labels");
    if (!x) {
        llava_api_errf(e, 400, "labels", "missing_field", "'labels' (an array of strings) is required");
        goto done;
    }
    if (get_labels(x, "labels", &labels, &n_labels, e)) goto done;
    x = field(root, "question");
    if (x && !cJSON_IsString(x)) {
        llava_api_errf(e, 400, "question", "invalid_type", "'question' must be a string");
        goto done;
    }
    question = x ? x->valuestring : NULL;
    x = field(root, "answer");
    if (x && !cJSON_IsString(x)) {
        llava_api_errf(e, 400, "answer", "invalid_type", "'answer' must be a string");
        goto done;
    }
    answer = x ? x->valuestring : NULL;
    long long k = 3;
    double mc = 0.5;
    if (get_int(root, "top_k", 1, MAX_LABELS, &k, e) < 0 || get_num(root, "min_confidence", 0, 1, &mc, e) < 0) goto done;
    r->top_k = (int)k;
    r->min_conf = mc;
    x = field(root, "image");
    if (!x || !cJSON_IsString(x)) {
        llava_api_errf(e, 400, "image", x ? "invalid_type" : "missing_field",
                       "'image' must be a data:image/...;base64 URL string");
        goto done;
    }
    j = llava_job_new(LLAVA_JOB_CLASSIFY);
    j->images = xcalloc(1, sizeof *j->images);
    if (load_image(&j->images[0], x->valuestring, cfg, m, "image", e)) goto done;
    j->n_images = 1;
    if (llava_classifier_new(&j->clf, m, labels, n_labels, question, answer, &err)) {
        llava_api_errf(e, 400, "labels", "invalid_value", "%s", err.msg);
        goto done;
    }
    if (classifier_fits(m, j->clf, &j->images[0], cfg, &r->n_prompt, e)) goto done;
    r->job = j;
    j = NULL;
    rc = 0;
done:
    llava_job_free(j);
    free(labels);
    cJSON_Delete(root);
    return rc;
}

char *llava_classify_response(const llava_classify_req *r, const llava_job *j, const char *id) {
    int n = llava_classifier_n_labels(j->clf);
    const char **labels = xmalloc(sizeof(char *) * (size_t)n);
    for (int i = 0; i < n; i++) labels[i] = llava_classifier_label(j->clf, i);
    llava_input in = {(char *)id, (char *)"request", NULL};
    llava_sbuf b = {0};
    llava_record_result(&b, LLAVA_FMT_JSONL, &in, labels, j->probs, n, r->top_k, r->min_conf);
    free(labels);
    /* the record without the image path (a request has none) */
    cJSON *o = cJSON_ParseWithLength(b.p, b.len);
    llava_sbuf_free(&b);
    CHECK(o);
    cJSON_DeleteItemFromObjectCaseSensitive(o, "image");
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}
