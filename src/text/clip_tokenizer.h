/* clip_tokenizer.h: the CLIP byte-level BPE tokenizer behind sdw_tokenize()
 * and sdw_tokenize_bpe() (declared in sdw.h), for the text layer's own use
 * (prompt chunking) and for tests.
 *
 * It reproduces transformers' slow CLIPTokenizer without ftfy (the one every
 * diffusers SD pipeline runs): added tokens are split out of the raw text
 * first, each remaining piece goes through BasicTokenizer (control characters
 * dropped, whitespace -> ' ', spaces around CJK ideographs, NFC, whitespace
 * split, Python str.lower()), then the CLIP regex and byte-level BPE.
 *
 * The vocabulary is built once, on first use, from the merges compiled into
 * the library; every function here is thread-safe. */
#ifndef SDW_TEXT_CLIP_TOKENIZER_H
#define SDW_TEXT_CLIP_TOKENIZER_H
#include "sdw.h"

#define SDW_CLIP_VOCAB_SIZE 49408
/* ",</w>", the token A1111's chunking backtracks to. */
#define SDW_CLIP_COMMA 267

/* A growable list of token ids. Zero-initialise; free with sdw_id_list_free. */
typedef struct {
    int32_t *v;
    int n, cap;
} sdw_id_list;
sdw_status sdw_id_list_push(sdw_id_list *l, int32_t id);
void sdw_id_list_free(sdw_id_list *l);

/* Builds the vocabulary and regex if not done yet. Optional: every other call
 * does it on demand; the first caller pays a few milliseconds. */
sdw_status sdw_clip_init(void);

/* Appends the BPE ids of text[0..len) (no BOS/EOS, no limit) to *out.
 * bang_special: treat "!" as an added special token (id 0) that splits the
 * text, as transformers does for tokenizers whose pad token is "!" (SD2 and
 * the second SDXL tokenizer): "hi!!" -> hi</w> 0 0 instead of hi</w> !!</w>.
 * Fails with SDW_ERR_INVALID_ARG on text that is not valid UTF-8. */
sdw_status sdw_clip_encode(const char *text, size_t len, bool bang_special, sdw_id_list *out);

/* The vocabulary string of id ("photo</w>", "<|endoftext|>"), in the
 * bytes_to_unicode alphabet; NULL if id is out of range or init failed. */
const char *sdw_clip_token_text(int32_t id);
/* The id of a vocabulary string, or -1. */
int32_t sdw_clip_token_id(const char *token);

#endif
