/* ref.h — reading the Hugging Face reference fixtures of tests/fixtures/ref (written by
 * tools/make_reference.py): gzip'd safetensors and the manifest. Header-only, for tests. */
#ifndef LLAVA_TEST_REF_H
#define LLAVA_TEST_REF_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <zlib.h>

#include "formats/safetensors.h"

/* Decompresses a .gz file into a temp file and opens it as safetensors (temp file removed at once;
 * the mmap keeps the data). NULL on failure. */
static inline llava_safetensors *ref_open_gz(const char *path) {
    gzFile g = gzopen(path, "rb");
    if (!g) return NULL;
    char tmpl[] = "/tmp/llava-ref-XXXXXX";
    int fd = mkstemp(tmpl);
    if (fd < 0) {
        gzclose(g);
        return NULL;
    }
    char buf[1 << 16];
    int n;
    while ((n = gzread(g, buf, sizeof buf)) > 0)
        if (write(fd, buf, (size_t)n) != n) break;
    gzclose(g);
    close(fd);
    llava_safetensors *st = NULL;
    llava_err err;
    if (llava_st_open(&st, tmpl, &err)) {
        printf("INFO %s: %s\n", path, err.msg);
        st = NULL;
    }
    unlink(tmpl);
    return st;
}

#endif
