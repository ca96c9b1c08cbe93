/* sd3_text.h: the text conditioning of Stable Diffusion 3 / 3.5, as
 * diffusers' StableDiffusion3Pipeline.encode_prompt computes it:
 *   CLIP-L (HF names, quick_gelu) and CLIP-G (HF names, gelu), 77 tokens each
 *     (CLIP-L pads with EOS; CLIP-G with "!" = id 0, and a literal "!" of the
 *     text is id 0 too, as transformers' "!"-padded tokenizer splits it out);
 *     features = hidden_states[-2] (no final norm), pooled = the final-norm
 *     state at the first EOS through text_projection, for both;
 *   T5-XXL (optional) on t5_len tokens, its last hidden state;
 *   context = cat(pad(cat(L, G), joint_dim with zeros), T5) -> [77 + t5_len,
 *     joint_dim]; without T5 the T5 part is zeros [77, joint_dim];
 *   pooled = cat(L pooled, G pooled) -> [L.proj + G.proj] (2048).
 * The encoders come from separate files (ComfyUI / the SD3 repos: HF names,
 * no prefix) or from an all-in-one checkpoint (text_encoders.clip_l.transformer.,
 * text_encoders.clip_g.transformer., text_encoders.t5xxl.transformer.).
 *
 * Prompts use A1111 syntax for the CLIP part as A1111 runs SD3: emphasis
 * ("Original": scale each token, restore the chunk's mean), BREAK, and
 * prompts past 75 tokens in further 77-token chunks, concatenated (diffusers
 * would truncate); pooled from the first chunk. T5 reads the plain text
 * (syntax removed). <lora:...> tags are removed from both. For a plain
 * prompt of up to 75 tokens this is diffusers' result exactly. */
#ifndef SDW_MODELS_SD3_TEXT_H
#define SDW_MODELS_SD3_TEXT_H
#include "models/clip_text.h"
#include "models/t5.h"

#define SDW_SD3_AIO_CLIP_L "text_encoders.clip_l.transformer."
#define SDW_SD3_AIO_CLIP_G "text_encoders.clip_g.transformer."
#define SDW_SD3_AIO_T5 "text_encoders.t5xxl.transformer."
/* diffusers' default max_sequence_length; SAI / ComfyUI give T5 77. */
#define SDW_SD3_T5_LEN_DEFAULT 256
#define SDW_SD3_T5_LEN_MAX 512

typedef enum { SDW_SD3_CLIP_L, SDW_SD3_CLIP_G } sdw_sd3_clip_kind;

typedef struct sdw_sd3_text {
    sdw_clip_text *clip_l;   /* 768 wide, 12 layers; pooled through text_projection when the file has one */
    sdw_clip_text *clip_g;   /* 1280 wide, 32 layers, with text_projection */
    sdw_t5 *t5;              /* NULL: no T5 (its part of the context is zeros) */
    int joint_dim;           /* context width: the T5's d_model, or the transformer's (sdw_sd3_text_check) */
    char what[3][512];       /* where each encoder came from (L, G, T5), for errors */
} sdw_sd3_text;

/* Loads one CLIP tower into t->clip_l or t->clip_g from st under prefix
 * ("" for a separate file). what names the source in errors ("--clip-g
 * clip_g.safetensors", "model.safetensors (text_encoders.clip_g.transformer.*)");
 * file (NULL for an all-in-one checkpoint) is where a config.json beside it
 * may give the head count. Fails naming what when st holds no HF CLIP text
 * tower there, when it is the other one of the two (told by width and
 * layers at the real sizes, 768 x 12 for L and 1280 x 32 for G; test towers
 * narrower than 64 are taken as the caller says), when it has not 77
 * positions, and for CLIP-G without text_projection. A CLIP-L without
 * text_projection is accepted: its pooled output is then unprojected (as
 * SAI's and ComfyUI's SD3 use it anyway), said in the log. */
sdw_status sdw_sd3_text_load_clip(sdw_backend *be, sdw_sd3_text *t, sdw_sd3_clip_kind kind,
                                  const sdw_safetensors *st, const char *prefix, const char *file, const char *what);
/* Loads the T5 encoder into t->t5 from st under prefix; sets joint_dim to its d_model. */
sdw_status sdw_sd3_text_load_t5(sdw_backend *be, sdw_sd3_text *t, const sdw_safetensors *st, const char *prefix,
                                const char *what);
/* The three separate files (t5_path NULL: no T5); *t is zeroed first and
 * freed on failure. The files are closed again (weights are copied). */
sdw_status sdw_sd3_text_load_files(sdw_backend *be, const char *clip_l_path, const char *clip_g_path,
                                   const char *t5_path, sdw_sd3_text *t);
/* Whether st has an all-in-one checkpoint's CLIP-L and CLIP-G; *has_t5 (may
 * be NULL) whether it has the T5 too (sd3_medium_incl_clips has not). */
bool sdw_sd3_text_aio_present(const sdw_safetensors *st, bool *has_t5);
/* All the encoders an all-in-one checkpoint at path holds (T5 if present). */
sdw_status sdw_sd3_text_load_aio(sdw_backend *be, const sdw_safetensors *st, const char *path, sdw_sd3_text *t);
void sdw_sd3_text_free(sdw_sd3_text *t);

/* Checks the encoders against the transformer (joint_attention_dim,
 * pooled_projection_dim) and sets t->joint_dim: the T5's d_model must be
 * joint_dim, the CLIP features (L.width + G.width) must fit in it, and the
 * pooled outputs (L.proj + G.proj) must make pooled_dim. Errors name the
 * file at fault. */
sdw_status sdw_sd3_text_check(sdw_sd3_text *t, int joint_dim, int pooled_dim);
/* The pooled width, L.proj + G.proj. */
int sdw_sd3_text_pooled_dim(const sdw_sd3_text *t);

/* Encodes prompt (A1111 syntax, see above) into *context (malloc'd, the
 * caller frees it) of *n_ctx = 77 x chunks + (t5 ? t5_len : 77) tokens of
 * t->joint_dim, and pooled [sdw_sd3_text_pooled_dim] (the caller's).
 * t5_len in 1..512: the T5 ids are truncated / padded to it (diffusers 256;
 * 77 = SAI / ComfyUI for prompts of up to 76 T5 tokens). clip_skip in A1111
 * numbering, as SDXL's: 0, 1 and 2 = hidden_states[-2] (the default), N >= 3 =
 * hidden_states[-N], i.e. diffusers' clip_skip N - 2; the pooled outputs do
 * not change with it. Scratch comes from arena (reset here). */
sdw_status sdw_sd3_encode(sdw_backend *be, sdw_arena *arena, const sdw_sd3_text *t, const char *prompt, int t5_len,
                          int clip_skip, float **context, int *n_ctx, float *pooled);

/* Long prompts: the CLIP chunks a prompt takes (1 unless it is past 75
 * tokens or has BREAK), and sdw_sd3_encode padding the prompt with empty
 * chunks up to min_chunks (1..64), as A1111 pads the shorter of prompt and
 * negative prompt so that both batch together. */
sdw_status sdw_sd3_prompt_chunks(const char *prompt, int *n);
sdw_status sdw_sd3_encode_chunks(sdw_backend *be, sdw_arena *arena, const sdw_sd3_text *t, const char *prompt,
                                 int min_chunks, int t5_len, int clip_skip, float **context, int *n_ctx,
                                 float *pooled);
#endif
