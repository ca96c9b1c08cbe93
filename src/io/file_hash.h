/* file_hash.h: SHA-256 of model and LoRA files (A1111's "Model hash" is its
 * first 10 hex digits), cached per path, size and mtime so a multi-GB
 * checkpoint is hashed once. The cache lives in $XDG_CACHE_HOME/sd-worker or
 * ~/.cache/sd-worker (or nowhere if neither is writable). */
#ifndef SDW_IO_FILE_HASH_H
#define SDW_IO_FILE_HASH_H
#include "sdw.h"

/* hex receives 64 lowercase hex digits and a NUL. */
sdw_status sdw_file_sha256(const char *path, char hex[65]);
#endif
