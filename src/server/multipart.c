/* multipart.c: see multipart.h. Lines may end in CRLF or a bare LF (some
 * clients); a part's data ends right before the CRLF (or LF) that precedes
 * the next delimiter. */
#include "server/multipart.h"
#include "core/error.h"
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_BOUNDARY 200
#define MAX_HEADER_LINE 2048
#define MAX_HEADERS 16

/* Copies a parameter's value (quoted or a token) from a header value such as
 * `form-data; name="image"; filename="a.png"`. Returns false when absent. */
static bool header_param(const char *v, const char *key, char *out, size_t n)
{
    size_t klen = strlen(key);
    const char *p = v;
    while ((p = strchr(p, ';'))) {
        p++;
        while (*p == ' ' || *p == '\t') p++;
        if (strncasecmp(p, key, klen) || p[klen] != '=') continue;
        p += klen + 1;
        size_t k = 0;
        if (*p == '"') {
            for (p++; *p && *p != '"'; p++) {
                if (*p == '\\' && p[1]) p++;
                if (k + 1 < n) out[k++] = *p;
            }
        } else {
            for (; *p && *p != ';' && *p != ' ' && *p != '\t'; p++)
                if (k + 1 < n) out[k++] = *p;
        }
        out[k] = 0;
        return true;
    }
    return false;
}

/* The end of the line starting at p (the '\n'), or NULL. */
static const uint8_t *line_end(const uint8_t *p, const uint8_t *end)
{
    return memchr(p, '\n', (size_t)(end - p));
}

static sdw_status parse_headers(const uint8_t **pp, const uint8_t *end, sdw_multipart_part *part)
{
    const uint8_t *p = *pp;
    bool disposition = false;
    for (int i = 0;; i++) {
        const uint8_t *nl = line_end(p, end);
        if (!nl) return sdw_fail(SDW_ERR_FORMAT, "multipart: part headers not terminated");
        size_t len = (size_t)(nl - p);
        if (len && p[len - 1] == '\r') len--;
        if (len == 0) {
            p = nl + 1;
            break;
        }
        if (i >= MAX_HEADERS || len >= MAX_HEADER_LINE)
            return sdw_fail(SDW_ERR_FORMAT, "multipart: part headers too large");
        char line[MAX_HEADER_LINE];
        memcpy(line, p, len);
        line[len] = 0;
        if (memchr(line, 0, len)) return sdw_fail(SDW_ERR_FORMAT, "multipart: NUL byte in a part header");
        char *colon = strchr(line, ':');
        if (!colon) return sdw_fail(SDW_ERR_FORMAT, "multipart: malformed part header");
        *colon = 0;
        char *value = colon + 1;
        while (*value == ' ' || *value == '\t') value++;
        if (!strcasecmp(line, "Content-Disposition")) {
            if (strncasecmp(value, "form-data", 9))
                return sdw_fail(SDW_ERR_FORMAT, "multipart: Content-Disposition must be form-data");
            if (!header_param(value, "name", part->name, sizeof part->name))
                return sdw_fail(SDW_ERR_FORMAT, "multipart: a part without a name");
            header_param(value, "filename", part->filename, sizeof part->filename);
            disposition = true;
        } else if (!strcasecmp(line, "Content-Type")) {
            size_t k = 0;
            for (; value[k] && value[k] != ';' && k + 1 < sizeof part->content_type; k++)
                part->content_type[k] = value[k];
            part->content_type[k] = 0;
        }
        p = nl + 1;
    }
    if (!disposition) return sdw_fail(SDW_ERR_FORMAT, "multipart: a part without Content-Disposition");
    *pp = p;
    return SDW_OK;
}

sdw_status sdw_multipart_parse(const char *content_type, const void *body, size_t n, sdw_multipart *out)
{
    memset(out, 0, sizeof *out);
    if (!content_type || strncasecmp(content_type, "multipart/form-data", 19))
        return sdw_fail(SDW_ERR_FORMAT, "Content-Type: expected multipart/form-data");
    char boundary[MAX_BOUNDARY + 3] = "--";
    if (!header_param(content_type, "boundary", boundary + 2, sizeof boundary - 2) || !boundary[2])
        return sdw_fail(SDW_ERR_FORMAT, "Content-Type: multipart/form-data without a boundary");
    size_t blen = strlen(boundary);
    if (blen - 2 > 70) return sdw_fail(SDW_ERR_FORMAT, "Content-Type: multipart boundary longer than 70 characters");
    const uint8_t *p = body, *end = p + n;
    /* The first delimiter: at the start, or at the start of a line. */
    const uint8_t *d = n >= blen && !memcmp(p, boundary, blen) ? p : NULL;
    while (!d) {
        const uint8_t *nl = line_end(p, end);
        if (!nl) return sdw_fail(SDW_ERR_FORMAT, "multipart: no boundary found in the body");
        p = nl + 1;
        if ((size_t)(end - p) >= blen && !memcmp(p, boundary, blen)) d = p;
    }
    p = d + blen;
    sdw_status s = SDW_OK;
    for (;;) {
        if (end - p >= 2 && p[0] == '-' && p[1] == '-') break; /* the closing delimiter */
        while (p < end && (*p == ' ' || *p == '\t')) p++;
        if (p < end && *p == '\r') p++;
        if (p >= end || *p != '\n') { s = sdw_fail(SDW_ERR_FORMAT, "multipart: malformed boundary line"); break; }
        p++;
        if (out->n >= SDW_MULTIPART_MAX_PARTS) {
            s = sdw_fail(SDW_ERR_FORMAT, "multipart: more than %d parts", SDW_MULTIPART_MAX_PARTS);
            break;
        }
        sdw_multipart_part part = { 0 };
        if ((s = parse_headers(&p, end, &part)) != SDW_OK) break;
        /* The data runs to the next "\n--boundary". */
        const uint8_t *q = p, *next = NULL;
        while ((q = memmem(q, (size_t)(end - q), boundary, blen))) {
            if (q > p && q[-1] == '\n') { next = q; break; }
            if (q == p && p > (const uint8_t *)body && p[-1] == '\n') { next = q; break; }
            q++;
        }
        if (!next) { s = sdw_fail(SDW_ERR_FORMAT, "multipart: truncated (no closing boundary)"); break; }
        const uint8_t *dend = next;
        if (dend > p && dend[-1] == '\n') dend--;
        if (dend > p && dend[-1] == '\r') dend--;
        part.data = p;
        part.len = (size_t)(dend - p);
        sdw_multipart_part *parts = realloc(out->parts, (size_t)(out->n + 1) * sizeof *parts);
        if (!parts) { s = sdw_fail(SDW_ERR_NOMEM, "multipart: out of memory"); break; }
        out->parts = parts;
        out->parts[out->n++] = part;
        p = next + blen;
    }
    if (s != SDW_OK) sdw_multipart_free(out);
    return s;
}

void sdw_multipart_free(sdw_multipart *m)
{
    free(m->parts);
    m->parts = NULL;
    m->n = 0;
}

const sdw_multipart_part *sdw_multipart_get(const sdw_multipart *m, const char *name)
{
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->parts[i].name, name)) return &m->parts[i];
    return NULL;
}
