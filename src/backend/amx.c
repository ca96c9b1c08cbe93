/* amx.c: AMX availability and the tile configuration (see amx.h). Out of
 * line on purpose: clang gives OpenMP's outlined regions none of the target
 * attributes of their function, so tile intrinsics in a parallel region must
 * sit in functions of their own. */
#include "backend/amx.h"
#include <dnnl.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <immintrin.h>

static bool granted;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void probe(void)
{
    unsigned a, b, c, d;
    __asm__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(0));
    const bool tile = (d >> 24) & 1, bf = (d >> 22) & 1;
    if (!tile || !bf || !__builtin_cpu_supports("avx512bf16")) return;
    /* Linux hands out the 8 KiB tile state only to a process that asks
     * (ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA). */
    granted = syscall(SYS_arch_prctl, 0x1023, 18) == 0;
}

bool sdw_amx_usable(void)
{
    pthread_once(&once, probe);
    return granted && dnnl_get_effective_cpu_isa() == dnnl_cpu_isa_avx512_core_amx;
}

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

/* Static: gcc 12 does not see _tile_loadconfig read its operand, and drops
 * the stores that would fill a stack copy. */
static const tile_config all_tiles_16x64 = {
    .palette = 1,
    .colsb = { 64, 64, 64, 64, 64, 64, 64, 64 },
    .rows = { 16, 16, 16, 16, 16, 16, 16, 16 },
};

AMX_FN void sdw_amx_configure_tiles(void) { _tile_loadconfig(&all_tiles_16x64); }

AMX_FN void sdw_amx_release_tiles(void) { _tile_release(); }
