/* lora_flux.c: see lora_flux.h. XLabs' names follow x-flux's
 * DoubleStreamBlockLoraProcessor (qkv_lora1 / proj_lora1 beside img_attn's
 * qkv / proj, qkv_lora2 / proj_lora2 beside txt_attn's) and
 * SingleStreamBlockLoraProcessor (qkv_lora on the q|k|v part of linear1,
 * proj_lora beside linear2). */
#include "models/lora_flux.h"
#include "core/error.h"
#include "models/lora_family.h"
#include <stdio.h>
#include <string.h>

static const sdw_named_layer *find_layer(const sdw_layer_list *l, const char *name)
{
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->v[i].name, name)) return &l->v[i];
    return NULL;
}

/* Adds alias for rows [row0, row0 + rows) of the layer named bfl (rows < 0:
 * all of it); a layer the model lacks adds nothing. */
static sdw_status alias(const sdw_layer_list *layers, sdw_layer_list *out, const char *bfl, const char *name,
                        int row0, int rows)
{
    const sdw_named_layer *l = find_layer(layers, bfl);
    if (!l) return SDW_OK;
    return sdw_layer_list_add(out, name, l->linear, NULL, l->row0 + row0, rows < 0 ? l->rows : rows);
}

sdw_status sdw_lora_flux_aliases(const sdw_flux *f, sdw_layer_list *out)
{
    static const char *const dbl[][2] = {
        { "img_attn.qkv", "qkv_lora1" }, { "txt_attn.qkv", "qkv_lora2" },
        { "img_attn.proj", "proj_lora1" }, { "txt_attn.proj", "proj_lora2" },
    };
    const sdw_flux_config *c = sdw_flux_get_config(f);
    const sdw_layer_list *layers = sdw_flux_layers(f);
    char bfl[96], name[96];
    for (int b = 0; b < c->depth; b++)
        for (size_t k = 0; k < sizeof dbl / sizeof dbl[0]; k++) {
            snprintf(bfl, sizeof bfl, "double_blocks.%d.%s", b, dbl[k][0]);
            snprintf(name, sizeof name, "double_blocks.%d.%s", b, dbl[k][1]);
            SDW_TRY(alias(layers, out, bfl, name, 0, -1));
        }
    for (int b = 0; b < c->depth_single; b++) {
        snprintf(bfl, sizeof bfl, "single_blocks.%d.linear1", b);
        snprintf(name, sizeof name, "single_blocks.%d.qkv", b);
        SDW_TRY(alias(layers, out, bfl, name, 0, 3 * c->hidden));
        snprintf(bfl, sizeof bfl, "single_blocks.%d.linear2", b);
        snprintf(name, sizeof name, "single_blocks.%d.proj", b);
        SDW_TRY(alias(layers, out, bfl, name, 0, -1));
    }
    return alias(layers, out, "final_layer.adaLN_modulation.1", SDW_LORA_FLUX_SWAPPED, 0, -1);
}

sdw_lora_for sdw_lora_key_family(const char *key)
{
    const unsigned a = sdw_lora_key_archs(key);
    if (a == SDW_ARCH_SD) return SDW_LORA_FOR_SD;
    if (a == SDW_ARCH_SD3) return SDW_LORA_FOR_SD3;
    if ((a & SDW_ARCH_FLUX) && !(a & SDW_ARCH_SD)) return SDW_LORA_FOR_FLUX;
    return SDW_LORA_FOR_ANY;
}
