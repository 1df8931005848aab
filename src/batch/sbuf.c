/* sbuf.c — growable record buffer (see sbuf.h). */
#include "batch/sbuf.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "util/mem.h"

static void reserve(llava_sbuf *b, size_t extra) {
    if (b->len + extra + 1 <= b->cap) return;
    size_t ncap = b->cap ? b->cap : 256;
    while (ncap < b->len + extra + 1) ncap *= 2;
    b->p = xrealloc(b->p, ncap);
    b->cap = ncap;
}

void llava_sbuf_put(llava_sbuf *b, const char *s, size_t n) {
    reserve(b, n);
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

void llava_sbuf_puts(llava_sbuf *b, const char *s) { llava_sbuf_put(b, s, strlen(s)); }

void llava_sbuf_printf(llava_sbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char tmp[256];
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) {
        llava_sbuf_put(b, tmp, (size_t)n);
        return;
    }
    reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void llava_sbuf_json_str(llava_sbuf *b, const char *s) {
    reserve(b, strlen(s) + 2);
    llava_sbuf_put(b, "\"", 1);
    const char *run = s;
    for (const unsigned char *p = (const unsigned char *)s;; p++) {
        unsigned char c = *p;
        if (c && c >= 0x20 && c != '"' && c != '\\') continue;
        llava_sbuf_put(b, run, (size_t)((const char *)p - run));
        if (!c) break;
        switch (c) {
        case '"': llava_sbuf_puts(b, "\\\""); break;
        case '\\': llava_sbuf_puts(b, "\\\\"); break;
        case '\n': llava_sbuf_puts(b, "\\n"); break;
        case '\r': llava_sbuf_puts(b, "\\r"); break;
        case '\t': llava_sbuf_puts(b, "\\t"); break;
        default: llava_sbuf_printf(b, "\\u%04x", c); break;
        }
        run = (const char *)p + 1;
    }
    llava_sbuf_put(b, "\"", 1);
}

void llava_sbuf_prob(llava_sbuf *b, double p) { llava_sbuf_printf(b, "%.6g", isfinite(p) ? p : 0.0); }

void llava_sbuf_clear(llava_sbuf *b) {
    b->len = 0;
    if (b->p) b->p[0] = 0;
}

void llava_sbuf_free(llava_sbuf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}
