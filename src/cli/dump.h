/* dump.h: `generate --dump DIR`: collects the pipeline's observed tensors
 * (conditioning, initial noise and latents, latents after every step, decoded
 * image) and writes them as DIR/run-<i>.safetensors, NCHW like PyTorch, to
 * compare a run with another implementation's. */
#ifndef SDW_CLI_DUMP_H
#define SDW_CLI_DUMP_H
#include "sdw.h"

typedef struct sdw_dump sdw_dump;
sdw_dump *sdw_dump_begin(const char *dir, int run);
void sdw_dump_observe(void *user, const char *name, int step, const float *x, int ndim, const int64_t *shape);
/* Writes the file when write is true; frees the collector either way. */
sdw_status sdw_dump_end(sdw_dump *d, bool write);
#endif
