/* base64.h: base64 for images in JSON (the server's init_image, mask_image,
 * A1111's images and OpenAI's b64_json). Encoding is RFC 4648 standard
 * base64 with padding; decoding accepts what clients actually send. */
#ifndef SDW_IO_BASE64_H
#define SDW_IO_BASE64_H
#include "sdw.h"

/* Length of the encoding of n bytes, without a terminating NUL. */
size_t sdw_base64_encoded_len(size_t n);
/* Standard alphabet, '=' padded, no line breaks. *out is malloc'd and
 * NUL-terminated; *out_len (if not NULL) gets its length. */
sdw_status sdw_base64_encode(const void *buf, size_t n, char **out, size_t *out_len);
/* Decodes s[0, len). Accepted besides plain base64: a data URL prefix
 * ("data:image/png;base64,"; any media type, must say base64), whitespace and
 * line breaks anywhere, missing or partial padding, the URL-safe alphabet
 * ('-' and '_'), and nonzero unused bits in the last character. Anything else
 * fails with SDW_ERR_FORMAT (naming the offset); a result larger than
 * max_bytes fails with SDW_ERR_NOMEM before anything is allocated. *out is
 * malloc'd, non-NULL on success even when *n is 0. */
sdw_status sdw_base64_decode(const char *s, size_t len, size_t max_bytes, uint8_t **out, size_t *n);
#endif
