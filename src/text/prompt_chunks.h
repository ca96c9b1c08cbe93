/* prompt_chunks.h: a parsed prompt as CLIP inputs, 75 tokens at a time, the
 * way A1111's FrozenCLIPEmbedderWithCustomWordsBase.tokenize_line does it.
 *
 * Each span is tokenized on its own; its weight goes to each of its tokens.
 * A chunk holds 75 tokens; BREAK closes the current chunk; when a chunk is
 * full and a comma was among its last 20 tokens, the tokens after that comma
 * move to the next chunk (A1111's comma_padding_backtrack = 20). Every chunk
 * is 77 ids: BOS, its tokens, EOS, then padding (weights 1.0 for BOS, EOS and
 * padding). With SDW_PAD_EOS the padding is EOS (SD1, SDXL encoder 1); with
 * SDW_PAD_ZERO everything after the first EOS is 0 (A1111's process_tokens
 * for SD2 / SDXL encoder 2, = diffusers' layout) and the text is tokenized
 * the way transformers' "!"-padded tokenizer does (see sdw_clip_encode).
 * An empty prompt gives one chunk. */
#ifndef SDW_TEXT_PROMPT_CHUNKS_H
#define SDW_TEXT_PROMPT_CHUNKS_H
#include "text/prompt_parse.h"

#define SDW_CHUNK_TOKENS 75
#define SDW_COMMA_BACKTRACK 20

/* *ids and *weights (n_chunks * SDW_CLIP_CONTEXT each, chunk after chunk) are
 * malloc'd; the caller frees both. On failure both are NULL. */
sdw_status sdw_prompt_to_chunks(const sdw_parsed_prompt *p, sdw_pad pad, int32_t **ids, float **weights,
                                int *n_chunks);

/* Appends empty-prompt chunks (BOS, EOS, padding; weights 1.0) until there are
 * target chunks, reallocating *ids and *weights; nothing if there already
 * are. This is how A1111 pads the shorter of prompt and negative prompt. */
sdw_status sdw_prompt_chunks_pad(int32_t **ids, float **weights, int *n_chunks, int target, sdw_pad pad);

#endif
