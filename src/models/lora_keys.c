/* lora_keys.c: see lora_keys.h. */
#include "models/lora_keys.h"
#include <stdio.h>
#include <string.h>

static const struct {
    const char *suffix;
    sdw_lora_role role;
} suffixes[] = {
    { ".lora_down.weight", SDW_LORA_DOWN }, { ".lora_up.weight", SDW_LORA_UP }, { ".lora_mid.weight", SDW_LORA_MID },
    { ".lora_A.weight", SDW_LORA_DOWN }, { ".lora_B.weight", SDW_LORA_UP },
    { "_lora.down.weight", SDW_LORA_DOWN }, { "_lora.up.weight", SDW_LORA_UP },
    { ".lora.down.weight", SDW_LORA_DOWN }, { ".lora.up.weight", SDW_LORA_UP },
    { ".lora_linear_layer.down.weight", SDW_LORA_DOWN }, { ".lora_linear_layer.up.weight", SDW_LORA_UP },
    /* XLabs' FLUX processors ("double_blocks.0.processor.qkv_lora1.down.weight"). */
    { ".down.weight", SDW_LORA_DOWN }, { ".up.weight", SDW_LORA_UP },
    { ".alpha", SDW_LORA_ALPHA },
    { ".hada_w1_a", SDW_LORA_HADA_W1_A }, { ".hada_w1_b", SDW_LORA_HADA_W1_B },
    { ".hada_w2_a", SDW_LORA_HADA_W2_A }, { ".hada_w2_b", SDW_LORA_HADA_W2_B },
    { ".hada_t1", SDW_LORA_HADA_T1 }, { ".hada_t2", SDW_LORA_HADA_T2 },
    { ".lokr_w1", SDW_LORA_LOKR_W1 }, { ".lokr_w1_a", SDW_LORA_LOKR_W1_A }, { ".lokr_w1_b", SDW_LORA_LOKR_W1_B },
    { ".lokr_w2", SDW_LORA_LOKR_W2 }, { ".lokr_w2_a", SDW_LORA_LOKR_W2_A }, { ".lokr_w2_b", SDW_LORA_LOKR_W2_B },
    { ".lokr_t2", SDW_LORA_LOKR_T2 },
    { ".dora_scale", SDW_LORA_DORA_SCALE }, { ".lora_magnitude_vector", SDW_LORA_DORA_SCALE },
    /* Parts of LyCORIS modules we recognise but do not merge. */
    { ".diff", SDW_LORA_UNKNOWN }, { ".diff_b", SDW_LORA_UNKNOWN }, { ".w_norm", SDW_LORA_UNKNOWN },
    { ".b_norm", SDW_LORA_UNKNOWN }, { ".on_input", SDW_LORA_UNKNOWN }, { ".oft_blocks", SDW_LORA_UNKNOWN },
};

static const struct {
    const char *prefix;
    char comp;
    bool part_of_path;   /* the prefix is the module path's own start */
} prefixes[] = {
    { "lora_unet_", 'u', false }, { "lora_te1_", '0', false }, { "lora_te2_", '1', false },
    { "lora_te_", '0', false }, { "unet.", 'u', false }, { "text_encoder_2.", '1', false },
    { "text_encoder.", '0', false },
    /* PEFT saves of a bare UNet or text encoder. */
    { "down_blocks.", 'u', true }, { "mid_block.", 'u', true }, { "up_blocks.", 'u', true },
    { "text_model.", '0', true },
    /* FLUX: sd-scripts' T5 ("lora_te3_", ComfyUI's name for a third encoder), diffusers
     * ("transformer."), ComfyUI / ai-toolkit ("diffusion_model."), kohya-style diffusers
     * names, and bare BFL / diffusers / XLabs module paths. */
    { "lora_te3_", '2', false }, { "lora_transformer_", 'u', false }, { "transformer.", 'u', false },
    { "model.diffusion_model.", 'u', false }, { "diffusion_model.", 'u', false },
    { "double_blocks.", 'u', true }, { "single_blocks.", 'u', true }, { "transformer_blocks.", 'u', true },
    { "single_transformer_blocks.", 'u', true },
    /* SD3: diffusers' third encoder (T5), bare Stability names, and SimpleTuner's LyCORIS
     * ("lycoris_" + a diffusers transformer path with '_', as ComfyUI reads it). */
    { "text_encoder_3.", '2', false }, { "joint_blocks.", 'u', true }, { "lycoris_", 'u', false },
};

/* '.' -> '_', and the diffusers attention-processor detour removed. */
static void normalise(char comp, const char *in, char *out, size_t n)
{
    char tmp[512];
    size_t k = 0;
    for (; *in && k + 1 < sizeof tmp; in++) tmp[k++] = *in == '.' ? '_' : *in;
    tmp[k] = 0;
    char *p;
    while ((p = strstr(tmp, "processor_"))) memmove(p, p + 10, strlen(p + 10) + 1);
    const char *body = tmp;
    if (comp != 'u' && !strncmp(body, "text_model_", 11)) body += 11;
    size_t len = strlen(body);
    /* The processor's "to_out_lora" patches to_out.0. */
    bool to_out = comp == 'u' && len >= 7 && !strcmp(body + len - 7, "_to_out");
    snprintf(out, n, "%c:%s%s", comp, body, to_out ? "_0" : "");
}

bool sdw_lora_split_name(const char *tensor, char *key, size_t n, sdw_lora_role *role)
{
    const char *name = tensor;
    if (!strncmp(name, "base_model.model.", 17)) name += 17;
    size_t len = strlen(name), cut = 0;
    *role = SDW_LORA_UNKNOWN;
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        size_t sl = strlen(suffixes[i].suffix);
        if (sl < len && sl > cut && !strcmp(name + len - sl, suffixes[i].suffix)) {
            cut = sl;
            *role = suffixes[i].role;
        }
    }
    if (!cut) {
        /* An unknown part: key it on everything before the last dot. */
        const char *dot = strrchr(name, '.');
        cut = dot ? len - (size_t)(dot - name) : 0;
    }
    char module[512];
    if (len - cut >= sizeof module) return false;
    memcpy(module, name, len - cut);
    module[len - cut] = 0;
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
        size_t pl = strlen(prefixes[i].prefix);
        if (!strncmp(module, prefixes[i].prefix, pl)) {
            normalise(prefixes[i].comp, module + (prefixes[i].part_of_path ? 0 : pl), key, n);
            return true;
        }
    }
    return false;
}

void sdw_lora_layer_key(char comp, const char *name, char *key, size_t n) { normalise(comp, name, key, n); }
