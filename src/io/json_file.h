/* json_file.h: reading a small JSON file (config.json, model_index.json). */
#ifndef SDW_IO_JSON_FILE_H
#define SDW_IO_JSON_FILE_H
#include "sdw.h"
#include <cjson/cJSON.h>

#define SDW_JSON_FILE_MAX ((size_t)16 << 20)
/* Parses path into *out (free with cJSON_Delete); errors name the file. */
sdw_status sdw_json_load_file(const char *path, cJSON **out);
/* The same for text[0..n) in memory (no NUL needed); text is rewritten in
 * place (Python's Infinity/NaN literals); errors say name. */
sdw_status sdw_json_parse(char *text, size_t n, const char *name, cJSON **out);
/* Integer member, or def when absent or not a number. */
int sdw_json_int(const cJSON *obj, const char *key, int def);
const char *sdw_json_str(const cJSON *obj, const char *key, const char *def);
#endif
