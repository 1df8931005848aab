/* args.c — argument helpers (see args.h). */
#include "cli/args.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int arg_match(int argc, char **argv, int *i, const char *names, int want_value, const char **val) {
    const char *a = argv[*i];
    size_t la = strlen(a);
    const char *p = names;
    while (*p) {
        const char *e = strchr(p, '|');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == la && !strncmp(p, a, n)) {
            if (want_value) {
                if (*i + 1 >= argc) return -1;
                *val = argv[++*i];
            }
            return 1;
        }
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

int arg_int(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int arg_float(const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) return -1;
    *out = v;
    return 0;
}
