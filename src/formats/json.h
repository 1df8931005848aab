/* json.h — reading JSON files (cJSON underneath) with messages that name the file and the key.
 *
 * The parsed tree belongs to the caller (cJSON_Delete). Getters return the default when the key
 * is absent or null, and fail (return -1, message in err) when it is present with the wrong type.
 */
#ifndef LLAVA_JSON_H
#define LLAVA_JSON_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "util/status.h"

/* Parses the file at path; NULL with err set when missing, unreadable or not valid JSON
 * (the message gives the byte offset of the syntax error). */
cJSON *llava_json_load(const char *path, llava_err *err);

/* Parses a buffer of len bytes; what names the source in messages. */
cJSON *llava_json_parse(const char *buf, size_t len, const char *what, llava_err *err);

int llava_json_int(const cJSON *obj, const char *key, int64_t def, int64_t *out, const char *what, llava_err *err);
int llava_json_num(const cJSON *obj, const char *key, double def, double *out, const char *what, llava_err *err);
int llava_json_bool(const cJSON *obj, const char *key, int def, int *out, const char *what, llava_err *err);
/* *out points into the tree (or is def); valid while the tree lives. */
int llava_json_str(const cJSON *obj, const char *key, const char *def, const char **out, const char *what, llava_err *err);

#endif
