/* spm_shim.h: a C view of a SentencePiece model (Debian's libsentencepiece,
 * C++), for the T5 tokenizer (text/t5_tokenizer.c). Only what T5 needs: load
 * a model from its serialized bytes, encode text into piece ids, and name a
 * piece. No C++ exception crosses these functions: failures come back as an
 * sdw_status with the message set (core/error.h).
 *
 * A loaded model is immutable: encoding from several threads at once is safe. */
#ifndef SDW_TEXT_SPM_SHIM_H
#define SDW_TEXT_SPM_SHIM_H
#include "sdw.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sdw_spm sdw_spm;

/* Parses a ModelProto (the bytes of a .model file). name is for messages.
 * *out is owned by the caller: sdw_spm_free. */
sdw_status sdw_spm_load(const void *data, size_t size, const char *name, sdw_spm **out);
void sdw_spm_free(sdw_spm *m);

/* Appends the piece ids of text[0..len) (SentencePiece's own normalisation,
 * dummy prefix and whitespace rules; no BOS/EOS) to the growable array
 * *ids / *n / *cap (malloc'd, the caller frees *ids). The text must be valid
 * UTF-8: this is not checked here. */
sdw_status sdw_spm_encode(const sdw_spm *m, const char *text, size_t len, int32_t **ids, int *n, int *cap);

/* The number of pieces, and the text of piece id (NULL if out of range; the
 * string lives as long as the model). */
int sdw_spm_piece_count(const sdw_spm *m);
const char *sdw_spm_piece(const sdw_spm *m, int32_t id);

#ifdef __cplusplus
}
#endif
#endif
