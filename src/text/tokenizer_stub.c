#include "sdw.h"
#include "core/error.h"
sdw_status sdw_tokenize(const char *text, sdw_pad pad, int32_t ids[SDW_CLIP_CONTEXT], int *n) { (void)text; (void)pad; (void)ids; (void)n; return sdw_fail(SDW_ERR_UNSUPPORTED, "tokenizer not built yet"); }
