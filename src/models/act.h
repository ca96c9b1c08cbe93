/* act.h: a network's activations (sdw_act_bytes: bf16 in BF16 precision,
 * f32 otherwise) in its forward's arena, as the UNet, SD3 and FLUX
 * transformers keep what lies between a norm and a projection. */
#ifndef SDW_MODELS_ACT_H
#define SDW_MODELS_ACT_H
#include "backend/backend.h"
#include "core/arena.h"

/* Element i of an activation. */
static inline void *sdw_act_at(const sdw_backend *be, void *act, size_t i)
{
    return (char *)act + sdw_act_bytes(be, i);
}

/* An arena buffer for n elements of an activation. */
static inline void *sdw_act_alloc(const sdw_backend *be, sdw_arena *arena, size_t n)
{
    return sdw_arena_floats(arena, (sdw_act_bytes(be, n) + 3) / 4);
}
#endif
