/* inputs.h — the list of images a batch run works on, built from command-line arguments.
 *
 * An argument is one of:
 *   - a directory: every image file below it (extensions .jpg .jpeg .png .webp, any case), found
 *     recursively and sorted by byte order of the path so every machine sees the same list; names
 *     starting with '.' are skipped (macOS "._x.jpg" resource forks, .git, ...), symlinks to files
 *     are followed, symlinks to directories are not (no cycles);
 *   - a manifest, chosen by extension (any case):
 *       .txt    one path per line; blank lines are skipped;
 *       .csv    id,path[,label] with or without a header (RFC 4180 quoting, "" escapes, quoted
 *               newlines; spaces around unquoted fields trimmed). A header is a first row that
 *               names an "id" column and a path column ("path", "image", "file_name" or
 *               "filename"); with a header the columns may come in any order, extra columns are
 *               ignored, and "label"/"truth" is the optional label;
 *       .jsonl  one object per line: "image" (or "path"), optional "id" (string or integer),
 *               optional "label";
 *     relative paths inside a manifest are relative to the manifest's folder; a UTF-8 BOM is
 *     skipped; a malformed line is an error that names file:line;
 *   - any other file: one image.
 * Each input gets an id: the manifest's id when it has one, else the path as given (the argument,
 * dir + relative path for directory members, the manifest's text for manifest lines). Duplicate
 * ids are an error (llava_inputs_check_unique).
 */
#ifndef LLAVA_BATCH_INPUTS_H
#define LLAVA_BATCH_INPUTS_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "batch/sbuf.h"
#include "util/status.h"

typedef struct llava_input {
    char *id;    /* unique key of the record */
    char *path;  /* file to open (manifest paths resolved against the manifest's folder) */
    char *label; /* the manifest's label (ground truth), NULL when none */
} llava_input;

typedef struct llava_inputs {
    llava_input *v; /* (n) */
    int n, cap;
} llava_inputs;

/* Appends the inputs named by one argument (see above). Returns 0 or -1 (missing path, unreadable
 * directory or manifest, malformed manifest line, manifest entry with an empty path). */
int llava_inputs_add(llava_inputs *in, const char *arg, llava_err *err);
/* Appends one input (copies the strings; label may be NULL). */
void llava_inputs_push(llava_inputs *in, const char *id, const char *path, const char *label);
/* -1 with a message naming the first duplicates (up to 5) and their count. */
int llava_inputs_check_unique(const llava_inputs *in, llava_err *err);
void llava_inputs_free(llava_inputs *in);

/* 1 when the name ends in .jpg .jpeg .png .webp (any case). */
int llava_is_image_name(const char *name);
/* 1 when s ends in ext (which starts with '.'), ignoring case. */
int llava_has_ext(const char *s, const char *ext);

/* One JSONL line (without its newline) as a JSON value; trailing text other than blanks is an
 * error. what names the line in messages ("file:12"). The caller cJSON_Deletes it. */
cJSON *llava_jsonl_parse(const char *line, size_t n, const char *what, llava_err *err);

/* --- CSV (RFC 4180) records, shared by manifests, CSV results and merge ------------------------- */
typedef struct llava_csv_row {
    char **f;   /* (n) NUL-terminated fields, owned by the row */
    int n, cap;
} llava_csv_row;

/* Reads the record starting at *pos in buf[0..len). Returns 1 with the fields in row and *pos past
 * the record's line end, 0 at end of data, or -1 (message in err) on a quote error: a character
 * after a closing quote, or a quote that never closes. *complete is set to 0 when the record has
 * no terminating newline (the torn tail of a file being written), else 1. Lines counts newlines
 * consumed (for messages), may be NULL. */
int llava_csv_next(llava_csv_row *row, const char *buf, size_t len, size_t *pos, int *complete, int *lines,
                   llava_err *err);
void llava_csv_row_free(llava_csv_row *row);
/* Appends s to b, quoted when it holds a comma, quote, CR or LF, or
 * starts/ends with a space. */
void llava_csv_append_field(llava_sbuf *b, const char *s);

#endif
