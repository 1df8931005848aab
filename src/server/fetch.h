/* fetch.h — downloads one remote image (http/https) for `llava serve --allow-remote-images`.
 *
 * Owns: the libcurl easy handle of one fetch (made and freed per call, so request threads share
 * nothing) and the byte limit, enforced while the body streams in (a server that lies about or
 * omits Content-Length still cannot make us hold more than max_bytes + one curl buffer).
 * Assumes: llava_fetch_global_init() ran once before any thread was started (libcurl's rule).
 * Never: follows a redirect to a scheme other than http/https, decodes the image (the caller does,
 * with its own pixel limit), raises signals (CURLOPT_NOSIGNAL), or blocks the engine worker (it
 * runs on the calling HTTP request thread).
 * Note: the server can reach whatever its host can (loopback and private networks included); only
 * enable remote images where that is acceptable.
 */
#ifndef LLAVA_SERVER_FETCH_H
#define LLAVA_SERVER_FETCH_H

#include <stddef.h>

typedef struct llava_fetch_cfg {
    size_t max_bytes;  /* response bodies larger than this → LLAVA_FETCH_TOO_LARGE */
    long timeout_s;    /* the whole transfer (connect, redirects, body) */
    long max_redirs;   /* redirects followed at most (3 in `llava serve`) */
} llava_fetch_cfg;

typedef enum llava_fetch_status {
    LLAVA_FETCH_OK = 0,
    LLAVA_FETCH_TOO_LARGE,   /* body over max_bytes (from Content-Length, or counted while streaming) */
    LLAVA_FETCH_TIMEOUT,     /* not done within timeout_s */
    LLAVA_FETCH_HTTP_ERROR,  /* the server answered status >= 400 (*http_status tells which) */
    LLAVA_FETCH_BAD_URL,     /* not http(s), malformed, or redirected to another scheme */
    LLAVA_FETCH_FAILED,      /* DNS, connection, TLS, too many redirects, ... (msg says which) */
} llava_fetch_status;

/* Once per process, before threads start; 0 on success, -1 if libcurl cannot initialise. */
int llava_fetch_global_init(void);
void llava_fetch_global_cleanup(void);

/* GETs url. On LLAVA_FETCH_OK *out (malloc'd, caller frees) holds *out_len bytes; otherwise *out is
 * NULL and msg (msg_cap bytes, always terminated) says what went wrong, without the URL. *http_status
 * gets the final response code (0 when none arrived). */
llava_fetch_status llava_fetch_url(unsigned char **out, size_t *out_len, long *http_status, const char *url,
                                   const llava_fetch_cfg *cfg, char *msg, size_t msg_cap);

#endif
