/* multipart.h: multipart/form-data bodies (RFC 7578), as OpenAI's
 * POST /v1/images/edits receives them. A pure function over a fully
 * buffered body: parts point into it, nothing is copied but the header
 * values. Malformed input ends in SDW_ERR_FORMAT with a message, never in a
 * partial result. */
#ifndef SDW_SERVER_MULTIPART_H
#define SDW_SERVER_MULTIPART_H
#include "sdw.h"

#define SDW_MULTIPART_MAX_PARTS 64

typedef struct {
    char name[128];          /* Content-Disposition name */
    char filename[256];      /* "" when the part is not a file */
    char content_type[128];  /* "" when absent */
    const uint8_t *data;     /* into the body */
    size_t len;
} sdw_multipart_part;

typedef struct sdw_multipart {
    sdw_multipart_part *parts;
    int n;
} sdw_multipart;

/* The boundary comes from content_type ("multipart/form-data; boundary=...").
 * *out is owned by the caller (sdw_multipart_free) and borrows body. */
sdw_status sdw_multipart_parse(const char *content_type, const void *body, size_t n, sdw_multipart *out);
void sdw_multipart_free(sdw_multipart *m);
/* The first part with that name, or NULL. */
const sdw_multipart_part *sdw_multipart_get(const sdw_multipart *m, const char *name);
#endif
