/* args.h — small helpers for the subcommands' argument parsing (no global state). */
#ifndef LLAVA_ARGS_H
#define LLAVA_ARGS_H

#include <stdint.h>

/* Returns 1 if argv[*i] is one of the names (separated by '|'); then *val gets the next argument
 * (advancing *i) when want_value is set. Missing values return -1. */
int arg_match(int argc, char **argv, int *i, const char *names, int want_value, const char **val);
int arg_int(const char *s, long lo, long hi, long *out);
int arg_float(const char *s, double lo, double hi, double *out);

#endif
