/* t5_tokenizer.h: the T5 tokenizer of FLUX.1 (text_encoder_2) and SD3
 * (text_encoder_3): google/t5-v1_1-xxl's SentencePiece unigram model, compiled
 * into the library (data/t5-spiece.model), run by libsentencepiece through
 * text/spm_shim.h.
 *
 * It reproduces transformers' slow T5Tokenizer with legacy=True (what BFL's
 * reference code runs; tests/data/flux/t5_tokenizer.*): the special-token
 * literals `</s>`, `<pad>`, `<unk>` and `<extra_id_0>` ... `<extra_id_99>` are
 * split out of the raw text first and become their ids (1, 0, 2, 32099 ...
 * 32000); every piece of text between them is encoded by SentencePiece on its
 * own (each gets its own dummy-prefix `▁`). No BOS. `</s>` (1) ends the
 * sequence; as in the slow tokenizer it is not appended a second time when the
 * (truncated) ids already end with a literal `</s>`.
 *
 * The model is loaded once, on first use; every function here is thread-safe. */
#ifndef SDW_TEXT_T5_TOKENIZER_H
#define SDW_TEXT_T5_TOKENIZER_H
#include "sdw.h"

#define SDW_T5_PAD 0
#define SDW_T5_EOS 1
#define SDW_T5_UNK 2
/* 32,000 SentencePiece pieces + 100 sentinels <extra_id_99> = 32000 ...
 * <extra_id_0> = 32099 (the embedding matrix has 32,128 rows). */
#define SDW_T5_N_PIECES 32000
#define SDW_T5_N_EXTRA_IDS 100
#define SDW_T5_VOCAB_SIZE (SDW_T5_N_PIECES + SDW_T5_N_EXTRA_IDS)
/* The lengths FLUX pads to: dev (and SD3) 512, schnell 256. */
#define SDW_T5_MAX_LENGTH_DEV 512
#define SDW_T5_MAX_LENGTH_SCHNELL 256

/* Loads the built-in model if not done yet. Optional: the other calls do it
 * on demand (the first one parses the 0.8 MB model). */
sdw_status sdw_t5_init(void);

/* Tokenizes text into exactly max_length ids (ids[max_length], caller's):
 * the ids, truncated to max_length - 1, then `</s>`, then `<pad>` (0) up to
 * max_length. If n_untruncated is not NULL it receives the number of ids
 * before truncation, `</s>` included (1 for an empty prompt).
 * SDW_ERR_INVALID_ARG for text that is not UTF-8 or max_length < 1. */
sdw_status sdw_t5_tokenize(const char *text, int max_length, int32_t *ids, int *n_untruncated);

/* All the ids of text, `</s>` included, no truncation or padding. *ids is
 * malloc'd (the caller frees it), *n its length (>= 1). */
sdw_status sdw_t5_tokenize_all(const char *text, int32_t **ids, int *n);

/* The piece of id ("▁photo", "</s>", "<extra_id_0>"); NULL if id is outside
 * 0 .. SDW_T5_VOCAB_SIZE - 1 or the model could not be loaded. */
const char *sdw_t5_piece(int32_t id);

#endif
