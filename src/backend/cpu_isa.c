/* cpu_isa.c: what the CPU can do, as oneDNN sees it (it honours
 * ONEDNN_MAX_CPU_ISA, which lets a test force the f32 fallback). */
#include "sdw.h"
#include <dnnl.h>

bool sdw_cpu_has_native_bf16(void)
{
    unsigned isa = (unsigned)dnnl_get_effective_cpu_isa();
    return (isa & (unsigned)dnnl_cpu_isa_avx512_core_bf16) == (unsigned)dnnl_cpu_isa_avx512_core_bf16;
}

const char *sdw_cpu_isa_name(void)
{
    switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_sse41: return "sse41";
    default: return "other";
    }
}

sdw_precision sdw_precision_resolve(sdw_precision p)
{
    if (p != SDW_PRECISION_AUTO) return p;
    return sdw_cpu_has_native_bf16() ? SDW_PRECISION_BF16 : SDW_PRECISION_F32;
}

const char *sdw_precision_name(sdw_precision p)
{
    switch (p) {
    case SDW_PRECISION_AUTO: return "auto";
    case SDW_PRECISION_F32: return "f32";
    case SDW_PRECISION_BF16: return "bf16";
    }
    return "?";
}
