/* amx.h: what the AMX tile kernels (attention_bf16_amx.c, conv_amx.c) share:
 * whether tiles can be used here, and their one tile configuration. */
#ifndef SDW_BACKEND_AMX_H
#define SDW_BACKEND_AMX_H
#include <stdbool.h>

/* The instruction sets of a function that uses tiles next to AVX-512. */
#define AMX_FN __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))

/* True when the CPU has AMX-BF16, oneDNN runs its AMX kernels (so
 * ONEDNN_MAX_CPU_ISA turns ours off too) and Linux granted this process the
 * tile state (asked once). */
bool sdw_amx_usable(void);
/* All eight tiles 16 rows x 64 bytes: 16 x 32 bf16 operands, 16 x 16 f32
 * sums. Per thread, before its first tile instruction. */
void sdw_amx_configure_tiles(void);
/* Hands the tile state back (after a thread's last tile instruction). */
void sdw_amx_release_tiles(void);

/* The sums of a 32 x 32 block, tiles 0-3 (rows 0-15 and 16-31 x columns
 * 0-15 and 16-31), started from bias[0..32) in every row (a tile load of
 * stride 0), or from zero. */
#define SDW_AMX_SUMS_FROM(bias)                                                                                        \
    do {                                                                                                               \
        const float *b_ = (bias);                                                                                      \
        if (b_) {                                                                                                      \
            _tile_loadd(0, b_, 0);                                                                                     \
            _tile_loadd(1, b_ + 16, 0);                                                                                \
            _tile_loadd(2, b_, 0);                                                                                     \
            _tile_loadd(3, b_ + 16, 0);                                                                                \
        } else {                                                                                                       \
            _tile_zero(0);                                                                                             \
            _tile_zero(1);                                                                                             \
            _tile_zero(2);                                                                                             \
            _tile_zero(3);                                                                                             \
        }                                                                                                              \
    } while (0)
#endif
