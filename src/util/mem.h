/* mem.h — checked allocation and whole-file I/O.
 *
 * xmalloc/xcalloc abort on out-of-memory for small bookkeeping allocations (a bug-tier failure:
 * nothing useful can continue). Large, input-sized buffers must use llava_try_malloc and turn a
 * NULL into an error message instead.
 */
#ifndef LLAVA_MEM_H
#define LLAVA_MEM_H

#include <stddef.h>
#include <stdint.h>

#include "util/status.h"

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

/* malloc that reports failure (with the size) in err instead of aborting. */
void *llava_try_malloc(size_t n, const char *what, llava_err *err);

/* Reads a whole file into a NUL-terminated buffer (the NUL is not counted in *len).
 * Returns NULL and fills err when the file is missing, unreadable or larger than max_bytes. */
char *llava_read_file(const char *path, size_t *len, size_t max_bytes, llava_err *err);

/* Read-only memory map of a whole file. A zero-byte file maps to data == NULL, size == 0. */
typedef struct llava_mmap {
    void *data;
    size_t size;
} llava_mmap;
int llava_mmap_open(llava_mmap *m, const char *path, llava_err *err);
void llava_mmap_close(llava_mmap *m);

/* Joins dir and name with one '/'; caller frees. */
char *llava_path_join(const char *dir, const char *name);
int llava_file_exists(const char *path);

/* Monotonic wall-clock seconds. */
double llava_now(void);

#endif
