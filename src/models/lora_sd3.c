/* lora_sd3.c: see lora_sd3.h. mmdit_names.c's sdw_mmdit_diffusers_parts
 * says which SAI layers load with their halves swapped; the aliases here are
 * its two "swapped" cases seen from the LoRA side. */
#include "models/lora_sd3.h"
#include "core/error.h"
#include <stdio.h>
#include <string.h>

static const sdw_named_layer *find_layer(const sdw_layer_list *l, const char *name)
{
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->v[i].name, name)) return &l->v[i];
    return NULL;
}

/* name for all of the layer sai (a layer the model lacks adds nothing). */
static sdw_status alias(const sdw_layer_list *layers, sdw_layer_list *out, const char *sai, const char *name)
{
    const sdw_named_layer *l = find_layer(layers, sai);
    if (!l) return SDW_OK;
    return sdw_layer_list_add(out, name, l->linear, NULL, l->row0, l->rows);
}

sdw_status sdw_lora_sd3_aliases(const sdw_mmdit *m, sdw_layer_list *out)
{
    const sdw_layer_list *layers = sdw_mmdit_layers(m);
    const int last = sdw_mmdit_get_config(m)->depth - 1;
    char sai[96], name[96];
    snprintf(sai, sizeof sai, "joint_blocks.%d.context_block.adaLN_modulation.1", last);
    snprintf(name, sizeof name, "transformer_blocks.%d.norm1_context.linear", last);
    SDW_TRY(alias(layers, out, sai, name));
    return alias(layers, out, "final_layer.adaLN_modulation.1", "norm_out.linear");
}
