/* json_file.c: see json_file.h. */
#include "io/json_file.h"
#include "core/error.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Python's json module writes Infinity and NaN (diffusers configs can hold
 * them); cJSON rejects them. Rewrite them in place, outside strings, to
 * numbers strtod reads as infinity and zero. */
static void python_literals(char *s, size_t n)
{
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        if (in_str) {
            if (s[i] == '\\') i++;
            else if (s[i] == '"') in_str = false;
        } else if (s[i] == '"') {
            in_str = true;
        } else if (n - i >= 8 && !memcmp(s + i, "Infinity", 8)) {
            memcpy(s + i, "1e999   ", 8);
            i += 7;
        } else if (n - i >= 3 && !memcmp(s + i, "NaN", 3)) {
            memcpy(s + i, "0e0", 3);
            i += 2;
        }
    }
}

sdw_status sdw_json_parse(char *text, size_t n, const char *name, cJSON **out)
{
    *out = NULL;
    python_literals(text, n);
    *out = cJSON_ParseWithLength(text, n);
    if (!*out || !cJSON_IsObject(*out)) {
        cJSON_Delete(*out);
        *out = NULL;
        return sdw_fail(SDW_ERR_FORMAT, "%s: not a JSON object", name);
    }
    return SDW_OK;
}

sdw_status sdw_json_load_file(const char *path, cJSON **out)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return sdw_fail(SDW_ERR_IO, "%s: %s", path, strerror(errno));
    char *buf = malloc(SDW_JSON_FILE_MAX + 1);
    size_t n = buf ? fread(buf, 1, SDW_JSON_FILE_MAX + 1, f) : 0;
    fclose(f);
    if (!buf) return sdw_fail(SDW_ERR_NOMEM, "out of memory reading %s", path);
    if (n > SDW_JSON_FILE_MAX) {
        free(buf);
        return sdw_fail(SDW_ERR_FORMAT, "%s: larger than %zu bytes", path, SDW_JSON_FILE_MAX);
    }
    sdw_status s = sdw_json_parse(buf, n, path, out);
    free(buf);
    return s;
}

int sdw_json_int(const cJSON *obj, const char *key, int def)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNumber(j) ? j->valueint : def;
}

const char *sdw_json_str(const cJSON *obj, const char *key, const char *def)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(j) ? j->valuestring : def;
}
