/* sbuf.h — a growable byte buffer for building records (one record = one write(2)).
 *
 * Owns: its malloc'd bytes (always NUL-terminated once anything was appended). Growth aborts on
 * out-of-memory (records are small bookkeeping, see util/mem.h).
 */
#ifndef LLAVA_BATCH_SBUF_H
#define LLAVA_BATCH_SBUF_H

#include <stddef.h>

typedef struct llava_sbuf {
    char *p;
    size_t len, cap;
} llava_sbuf;

void llava_sbuf_put(llava_sbuf *b, const char *s, size_t n);
void llava_sbuf_puts(llava_sbuf *b, const char *s);
void llava_sbuf_printf(llava_sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* s as a JSON string literal with quotes; bytes >= 0x80 pass through (UTF-8), control characters
 * are escaped. */
void llava_sbuf_json_str(llava_sbuf *b, const char *s);
/* A probability as JSON/CSV text: "%.6g" (the shortest form that still separates the 1e-4
 * tolerance the engine guarantees); non-finite values become 0. */
void llava_sbuf_prob(llava_sbuf *b, double p);
void llava_sbuf_clear(llava_sbuf *b);
void llava_sbuf_free(llava_sbuf *b);

#endif
