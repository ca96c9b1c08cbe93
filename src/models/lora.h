/* lora.h: LoRA-family adapters (kohya, PEFT/diffusers, LoCon, LyCORIS LoHa and
 * LoKr, DoRA) merged into a loaded model's compute weights, and undone exactly.
 *
 * sdw_model_set_loras makes the model's weights equal to its base weights plus
 * the given set: the previous set is undone first (from saved copies of the
 * touched weights, bit-exactly), and a set equal to the current one costs
 * nothing. Only the thread that owns the model may call it. */
#ifndef SDW_MODELS_LORA_H
#define SDW_MODELS_LORA_H
#include "sdw.h"
#include <stddef.h>

typedef struct {
    const char *path;        /* a .safetensors file */
    float te_strength;       /* text encoder(s) */
    float unet_strength;     /* UNet */
} sdw_lora_spec;

typedef struct {
    char name[128];          /* file stem */
    char hash10[16];         /* first 10 hex digits of the file's SHA-256 (A1111 "Lora hashes") */
    int keys_applied;        /* modules merged */
    int keys_total;          /* modules in the file */
} sdw_lora_report;

/* reports (may be NULL) receives n entries. A LoRA matching no module of the
 * model, a LoRA for another family or a malformed file fails the whole call
 * and leaves the model with no LoRA. */
sdw_status sdw_model_set_loras(sdw_model *m, const sdw_lora_spec *loras, int n, sdw_lora_report *reports);

/* Resolves a LoRA name from a request or a prompt tag ("style", "sub/style",
 * "style.safetensors") to a path inside dir: no absolute paths, no "..", the
 * real path (symlinks resolved) must stay inside dir, and the file must exist. */
sdw_status sdw_lora_resolve(const char *dir, const char *name, char *path, size_t n);

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
