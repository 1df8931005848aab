/* status.h — the error type every fallible library call uses.
 *
 * Owns: llava_err (a message buffer), llava_errf() to fill it, CHECK() for broken invariants.
 * Contract: a fallible function returns 0 on success and -1 on failure, after writing a
 * one-line message into *err that says what failed and what to do. err may be NULL (the
 * message is then dropped). Library code never calls exit(); CHECK aborts only on bugs.
 */
#ifndef LLAVA_STATUS_H
#define LLAVA_STATUS_H

#include <stdio.h>
#include <stdlib.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct llava_err {
    char msg[1024];
} llava_err;

/* Writes a printf-style message into err (if not NULL) and returns -1. */
int llava_errf(llava_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prepends "prefix: " to the message already in err; returns -1. */
int llava_err_prefix(llava_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#ifdef __cplusplus
}
#endif

/* A broken invariant is a bug: report file:line and abort. Never use it for bad input. */
#define CHECK(cond)                                                                       \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "llava: internal error at %s:%d: CHECK(%s) failed\n", __FILE__, \
                    __LINE__, #cond);                                                     \
            abort();                                                                      \
        }                                                                                 \
    } while (0)

#endif
