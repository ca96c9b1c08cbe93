/* lora.h: LoRA-family adapters (kohya, PEFT/diffusers, LoCon, LyCORIS LoHa and
 * LoKr, DoRA) applied to a loaded model, and undone exactly: merged into
 * dense compute weights, kept beside compact ones (GGUF, float8) as low-rank
 * branches (lora.c says how).
 *
 * sdw_model_set_loras makes the model's layers compute its base weights plus
 * the given set: the previous set is undone first (from saved copies of the
 * touched weights, bit-exactly; branches dropped), and a set equal to the
 * current one costs nothing. Only the thread that owns the model may call it. */
#ifndef SDW_MODELS_LORA_H
#define SDW_MODELS_LORA_H
#include "sdw.h"
#include <stddef.h>

typedef struct {
    const char *path;        /* a .safetensors file */
    float te_strength;       /* text encoder(s): CLIP-L / CLIP-G, and T5 (FLUX, SD3) */
    float unet_strength;     /* UNet, or the FLUX / SD3 transformer */
} sdw_lora_spec;

typedef struct {
    char name[128];          /* file stem */
    char hash12[16];         /* A1111's "Lora hashes" value: the first 12 hex digits of the
                                SHA-256 of the file after its header (the "addnet" hash) */
    int keys_applied;        /* modules merged */
    int keys_total;          /* modules in the file */
} sdw_lora_report;

/* reports (may be NULL) receives n entries. A LoRA matching no module of the
 * model, a LoRA for another family (by its kohya metadata, or by its module
 * names: SD's UNet on FLUX or SD3, FLUX's or SD3's transformer on the others,
 * or the widths of the diffusers names FLUX and SD3 share; lora_family.h) or
 * a malformed file fails the whole call and leaves the model with no LoRA. */
sdw_status sdw_model_set_loras(sdw_model *m, const sdw_lora_spec *loras, int n, sdw_lora_report *reports);

/* Compact layers (GGUF, float8; see lora.c) keep a LoRA beside their
 * weights, exactly, unless a module's branch would hold more than this many
 * f32 values beyond its file's own factors (a change that does not factor:
 * DoRA, Tucker cores; LoHa's r1 r2 factors): that layer is merged into its
 * weights instead, rounded. Default 2^22; 0 restores it; for tests. */
void sdw_lora_set_dense_branch_max(size_t values);

/* "name: hash12, ..." for n reports (A1111's infotext value); malloc'd. */
char *sdw_lora_hashes(const sdw_lora_report *reports, int n);

/* The model's LoRA bookkeeping (saved original weights, current set). */
struct sdw_lora_state;
void sdw_lora_state_free(struct sdw_lora_state *s);

/* Resolves a LoRA name from a request or a prompt tag ("style", "sub/style",
 * "style.safetensors") to a path inside dir: no absolute paths, no "..", the
 * real path (symlinks resolved) must stay inside dir, and the file must exist. */
sdw_status sdw_lora_resolve(const char *dir, const char *name, char *path, size_t n);

/* The LoRAs one job asks for, from the command line, a request and its
 * prompt's <lora:name:te[:unet]> tags, with storage for their paths. */
#define SDW_MAX_LORAS 16
typedef struct {
    sdw_lora_spec spec[SDW_MAX_LORAS];
    char path[SDW_MAX_LORAS][1024];
    int n;
} sdw_lora_set;

/* Adds one LoRA by path, used as given (the operator's own choice). */
sdw_status sdw_lora_set_add(sdw_lora_set *s, const char *path, float te, float unet);
/* Adds the LoRA named name, resolved in dir (sdw_lora_resolve). */
sdw_status sdw_lora_set_add_named(sdw_lora_set *s, const char *dir, const char *name, float te, float unet);
/* Adds every LoRA a prompt's tags name, resolved in dir. */
sdw_status sdw_lora_set_add_prompt(sdw_lora_set *s, const char *dir, const char *prompt);

/* One LoRA file found by sdw_lora_list. */
typedef struct {
    const char *name;        /* relative to dir, without ".safetensors" */
    const char *path;
    const char *base_model;  /* ss_base_model_version from the header, or NULL */
    const char *output_name; /* ss_output_name, or NULL */
} sdw_lora_entry;
typedef void (*sdw_lora_entry_fn)(void *user, const sdw_lora_entry *e);

/* Calls fn for every *.safetensors under dir (recursing, sorted by name);
 * unreadable files are listed without metadata. */
sdw_status sdw_lora_list(const char *dir, sdw_lora_entry_fn fn, void *user);
#endif
