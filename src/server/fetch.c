/* fetch.c — remote image download with libcurl (see fetch.h). */
#include "server/fetch.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/mem.h"

typedef struct fetch_buf {
    unsigned char *p;
    size_t len, cap, max;
    int over; /* set when the body passed max: the transfer is aborted right there */
} fetch_buf;

/* libcurl's write callback: append, or abort (return != n) as soon as the limit is crossed. */
static size_t on_body(char *data, size_t size, size_t nmemb, void *user) {
    fetch_buf *b = user;
    size_t n = size * nmemb;
    if (n > b->max - b->len) {
        b->over = 1;
        return 0;
    }
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64 * 1024;
        while (cap < b->len + n) cap *= 2;
        if (cap > b->max) cap = b->max;
        unsigned char *q = realloc(b->p, cap);
        if (!q) return 0; /* CURLE_WRITE_ERROR; reported as a failed fetch */
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    return n;
}

int llava_fetch_global_init(void) { return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1; }

void llava_fetch_global_cleanup(void) { curl_global_cleanup(); }

llava_fetch_status llava_fetch_url(unsigned char **out, size_t *out_len, long *http_status, const char *url,
                                   const llava_fetch_cfg *cfg, char *msg, size_t msg_cap) {
    *out = NULL;
    *out_len = 0;
    *http_status = 0;
    msg[0] = 0;
    if (strncmp(url, "http://", 7) && strncmp(url, "https://", 8)) {
        snprintf(msg, msg_cap, "only http:// and https:// URLs are fetched");
        return LLAVA_FETCH_BAD_URL;
    }
    CURL *h = curl_easy_init();
    if (!h) {
        snprintf(msg, msg_cap, "cannot start a transfer (libcurl)");
        return LLAVA_FETCH_FAILED;
    }
    fetch_buf b = {.max = cfg->max_bytes};
    char cerr[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, cfg->max_redirs);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, cfg->timeout_s * 1000L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L); /* many request threads: no SIGALRM-based DNS timeouts */
    curl_easy_setopt(h, CURLOPT_FAILONERROR, 1L); /* status >= 400: stop before reading the error page */
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)cfg->max_bytes); /* early no from Content-Length */
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "llava.c-serve");
    /* no CURLOPT_ACCEPT_ENCODING: compressed bodies are not inflated, so the byte limit is the
     * memory limit (no decompression bombs) */
    CURLcode rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, http_status);
    curl_easy_cleanup(h);

    llava_fetch_status st = LLAVA_FETCH_OK;
    if (b.over || rc == CURLE_FILESIZE_EXCEEDED) {
        st = LLAVA_FETCH_TOO_LARGE;
        snprintf(msg, msg_cap, "the response is larger than %zu bytes", cfg->max_bytes);
    } else if (rc == CURLE_OPERATION_TIMEDOUT) {
        st = LLAVA_FETCH_TIMEOUT;
        snprintf(msg, msg_cap, "no complete response within %ld s", cfg->timeout_s);
    } else if (rc == CURLE_HTTP_RETURNED_ERROR) {
        st = LLAVA_FETCH_HTTP_ERROR;
        snprintf(msg, msg_cap, "the server answered HTTP %ld", *http_status);
    } else if (rc == CURLE_UNSUPPORTED_PROTOCOL || rc == CURLE_URL_MALFORMAT) {
        st = LLAVA_FETCH_BAD_URL;
        snprintf(msg, msg_cap, "%s (only http:// and https:// are fetched, also on redirects)",
                 cerr[0] ? cerr : curl_easy_strerror(rc));
    } else if (rc == CURLE_TOO_MANY_REDIRECTS) {
        st = LLAVA_FETCH_FAILED;
        snprintf(msg, msg_cap, "more than %ld redirects", cfg->max_redirs);
    } else if (rc != CURLE_OK) {
        st = LLAVA_FETCH_FAILED;
        snprintf(msg, msg_cap, "%s", cerr[0] ? cerr : curl_easy_strerror(rc));
    } else if (*http_status >= 400) { /* FAILONERROR covers this; kept as a guard */
        st = LLAVA_FETCH_HTTP_ERROR;
        snprintf(msg, msg_cap, "the server answered HTTP %ld", *http_status);
    }
    if (st != LLAVA_FETCH_OK) {
        free(b.p);
        return st;
    }
    *out = b.p ? b.p : xmalloc(1); /* an empty body is still a (failing-to-decode) image */
    *out_len = b.len;
    return LLAVA_FETCH_OK;
}
