/* lora.c: placeholder until the merge lands (issue 6). */
#include "models/lora.h"
#include "core/error.h"

sdw_status sdw_model_set_loras(sdw_model *m, const sdw_lora_spec *loras, int n, sdw_lora_report *reports)
{
    (void)m; (void)loras; (void)reports;
    if (n == 0) return SDW_OK;
    return sdw_fail(SDW_ERR_UNSUPPORTED, "LoRA is not implemented yet");
}

sdw_status sdw_lora_resolve(const char *dir, const char *name, char *path, size_t n)
{
    (void)dir; (void)name; (void)path; (void)n;
    return sdw_fail(SDW_ERR_UNSUPPORTED, "LoRA is not implemented yet");
}

sdw_status sdw_lora_list(const char *dir, sdw_lora_entry_fn fn, void *user)
{
    (void)dir; (void)fn; (void)user;
    return SDW_OK;
}
