/* openai.h — the OpenAI wire format of `llava serve`: request bodies → prepared engine jobs, and
 * engine results → response bodies (chat.completion, chat.completion.chunk, the classify record,
 * the error object). No HTTP here: http.c moves bytes, this file gives them meaning.
 *
 * Owns: validation of every field the server reads (a wrong type, a bad value, a bad image is a
 * 4xx llava_api_err with a message that says what to fix, never a crash), base64 and data: URLs,
 * file:// URLs confined to one directory, image decode + preprocess (on the calling HTTP thread).
 * Never: touches the engine queue or blocks.
 */
#ifndef LLAVA_SERVER_OPENAI_H
#define LLAVA_SERVER_OPENAI_H

#include <stddef.h>
#include <stdint.h>

#include "batch/sbuf.h"
#include "model/llava.h"
#include "server/queue.h"

typedef struct llava_serve_cfg {
    const char *model_name;  /* what /v1/models lists and requests must name (or omit) */
    int max_images;          /* per request */
    int64_t max_pixels;      /* per image (width * height) */
    int max_tokens_default;  /* when the request gives no max_tokens */
    int max_model_len;       /* prompt + generated tokens at most */
    const char *media_dir;   /* realpath of --allowed-local-media; NULL: file:// URLs are refused */
    const struct llava_fetch_cfg *remote; /* --allow-remote-images limits; NULL: http(s) URLs are refused */
} llava_serve_cfg;

/* An error the client caused (or 5xx): becomes {"error": {message, type, param, code}}. */
typedef struct llava_api_err {
    int status;
    const char *type;  /* "invalid_request_error", "authentication_error", ... */
    char param[64];    /* "" → null */
    char code[48];     /* "" → null */
    char msg[1024];
} llava_api_err;

/* Fills e; returns -1. param/code may be NULL. */
int llava_api_errf(llava_api_err *e, int status, const char *param, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* malloc'd {"error": {...}} body. */
char *llava_api_error_json(const llava_api_err *e);

/* Strict base64 (standard or URL-safe alphabet, padding optional, whitespace ignored). *out is
 * malloc'd. Returns 0, or -1 on a character outside the alphabet or a truncated quantum. */
int llava_base64_decode(const char *s, size_t n, unsigned char **out, size_t *out_len);

/* A chat completion request (also the body of SageMaker /invocations). */
typedef struct llava_chat_req {
    llava_job *job;          /* prepared: CHAT, or CLASSIFY for a guided-choice request */
    int stream, include_usage, logprobs;
    int n_prompt;            /* prompt tokens (image tokens included) */
} llava_chat_req;

int llava_chat_parse(llava_chat_req *r, const char *body, size_t len, const llava_serve_cfg *cfg, const llava_model *m,
                     llava_api_err *e);
void llava_chat_req_free(llava_chat_req *r); /* frees r->job too, if still set */

/* malloc'd chat.completion body for a finished job. */
char *llava_chat_response(const llava_chat_req *r, const llava_job *j, const llava_model *m, const char *id,
                          long created, const char *model_name);

/* Appends one SSE event "data: {chat.completion.chunk}\n\n". role/content may be NULL (not sent);
 * tokens [tok_from, tok_to) of j give the chunk's logprobs when r->logprobs; finish may be NULL. */
void llava_chunk_append(llava_sbuf *b, const llava_chat_req *r, const llava_job *j, const llava_model *m, const char *id,
                        long created, const char *model_name, const char *role, const char *content, size_t content_len,
                        int tok_from, int tok_to, const char *finish);
/* The final usage chunk (choices: []). */
void llava_usage_chunk_append(llava_sbuf *b, const llava_chat_req *r, int completion_tokens, const char *id,
                              long created, const char *model_name);

/* POST /v1/classify {"image", "labels", "question"?, "answer"?, "top_k"?, "min_confidence"?}. */
typedef struct llava_classify_req {
    llava_job *job;
    int top_k;
    double min_conf;
    int n_prompt;
} llava_classify_req;

int llava_classify_parse(llava_classify_req *r, const char *body, size_t len, const llava_serve_cfg *cfg,
                         const llava_model *m, llava_api_err *e);
void llava_classify_req_free(llava_classify_req *r);
/* malloc'd classify record {"id", "label", "probability", "top_k", "low_confidence"} (llava classify's
 * JSONL record with the request id instead of the image path). */
char *llava_classify_response(const llava_classify_req *r, const llava_job *j, const char *id);

#endif
