/* prompt_parse.h: AUTOMATIC1111's prompt syntax.
 *
 * sdw_prompt_parse() first removes extra-network tags `<type:args>` (A1111's
 * regex `<(\w+):([^>]+)>`; every type is removed from the text, `lora` and
 * `lyco` ones are returned), then splits the rest into weighted spans exactly
 * as modules/prompt_parser.py parse_prompt_attention does:
 *   (x) x1.1   [x] /1.1   (x:1.3)   nesting multiplies   \( \) \[ \] \\ literal
 *   a lone backslash is dropped; unclosed brackets weight the rest of the
 *   prompt; BREAK (a whole word: `\s*\bBREAK\b\s*`) becomes a span with
 *   is_break set; adjacent spans of equal weight are merged (so "a (b) c" is
 *   three spans, "(a)(b)" one).
 * A1111 quirks kept on purpose: BREAK inside brackets is not a break but the
 * literal text "BREAK" with weight -1 times the brackets' multiplier; empty
 * spans stay in the list; an empty prompt is one empty span of weight 1.
 * Not handled here: prompt editing `[a:b:when]` and alternation `[a|b]` (they
 * parse as text), textual-inversion embeddings.
 *
 * A LoRA tag `<lora:NAME:TE:UNET>` (also `te=W`, `unet=W`): te_weight = TE or
 * 1.0, unet_weight = UNET or te_weight, as A1111's extra_networks_lora.py. */
#ifndef SDW_TEXT_PROMPT_PARSE_H
#define SDW_TEXT_PROMPT_PARSE_H
#include "sdw.h"

typedef struct {
    char *text;       /* UTF-8, may be "" */
    float weight;     /* attention multiplier; -1 for a break */
    bool is_break;
} sdw_prompt_span;

typedef struct {
    char *name;       /* as written in the tag, e.g. "add_detail" */
    float te_weight, unet_weight;
} sdw_prompt_lora;

typedef struct {
    sdw_prompt_span *spans;   /* at least one */
    int n_spans;
    sdw_prompt_lora *loras;   /* in prompt order; NULL when none */
    int n_loras;
} sdw_parsed_prompt;

/* Parses prompt into *out (owned by the caller: sdw_parsed_prompt_free).
 * Fails with SDW_ERR_INVALID_ARG where A1111 would raise: an attention weight
 * that is not a number ("(x:1.2.3)"), a LoRA tag without a name or with a
 * weight that is not a finite float. On failure *out is left empty. */
sdw_status sdw_prompt_parse(const char *prompt, sdw_parsed_prompt *out);
void sdw_parsed_prompt_free(sdw_parsed_prompt *p);

#endif
