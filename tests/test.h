/* test.h — the minimal harness every tests/test_*.c uses.
 *
 * EXPECT(cond, fmt, ...) counts a check; a failing one prints "FAIL file:line: message".
 * TEST_END() prints "RESULT <passed> <failed>" (read by tests/run_tests.sh) and returns the exit code.
 * Paths: tests run from the repository root; shared_path() resolves files in ../shared
 * (override with LLAVA_SHARED), llava_bin() the CLI under test (LLAVA_BIN, set by run_tests.sh).
 */
#ifndef LLAVA_TEST_H
#define LLAVA_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int t_pass, t_fail;

#define EXPECT(cond, ...)                                          \
    do {                                                           \
        if (cond) {                                                \
            t_pass++;                                              \
        } else {                                                   \
            t_fail++;                                              \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);            \
            printf(__VA_ARGS__);                                   \
            printf("\n");                                          \
            fflush(stdout);                                        \
        }                                                          \
    } while (0)

#define TEST_END()                                        \
    do {                                                  \
        printf("RESULT %d %d\n", t_pass, t_fail);         \
        return t_fail ? 1 : 0;                            \
    } while (0)

static inline const char *shared_path(const char *rel) {
    static char buf[4096];
    const char *root = getenv("LLAVA_SHARED");
    snprintf(buf, sizeof buf, "%s/%s", root && *root ? root : "../shared", rel);
    return buf;
}

static inline const char *llava_bin(void) {
    const char *b = getenv("LLAVA_BIN");
    return b && *b ? b : "build/llava";
}

/* max |a-b| / max |ref| over n values. */
static inline double rel_max_diff(const float *a, const float *ref, size_t n) {
    double md = 0, mr = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)ref[i]);
        if (d > md || isnan(d)) md = isnan(d) ? INFINITY : d;
        if (fabs(ref[i]) > mr) mr = fabs(ref[i]);
    }
    return mr > 0 ? md / mr : md;
}

#endif
