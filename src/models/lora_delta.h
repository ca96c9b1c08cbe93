/* lora_delta.h: the weight change one adapter module makes, in each format:
 *   LoRA / LoCon  up @ down (through the Tucker core lora_mid for 3x3 convs)
 *   LoHa          (w1a @ w1b) * (w2a @ w2b), or through Tucker cores t1, t2
 *   LoKr          kron(w1, w2), each full or a product (w2 maybe via t2)
 * scaled by alpha / rank where the format says so; DoRA (dora_scale) then
 * renormalises the merged weight, as ComfyUI and PEFT do. */
#ifndef SDW_MODELS_LORA_DELTA_H
#define SDW_MODELS_LORA_DELTA_H
#include "models/lora_keys.h"
#include "sdw.h"
#include <stdint.h>

typedef struct {
    float *t[SDW_LORA_ROLE_COUNT];       /* f32 data, NULL where the module has no such part */
    int64_t numel[SDW_LORA_ROLE_COUNT];
    int ndim[SDW_LORA_ROLE_COUNT];
    int64_t shape[SDW_LORA_ROLE_COUNT][4];
} sdw_lora_parts;

/* The target: rows x in, with a kh x kw kernel (1 x 1 for a linear). */
typedef struct {
    int rows, in, kh, kw;
} sdw_lora_target_shape;

/* delta [rows, in * kh * kw] = the module's change at strength 1, alpha /
 * rank included. Fails, naming key, when the parts do not fit the target. */
sdw_status sdw_lora_delta(const sdw_lora_parts *p, const char *key, sdw_lora_target_shape s, float *delta);

/* Merges the module: W [rows, in * kh * kw] += strength * delta, or with DoRA
 * W += strength * (dora_scale * (W + delta) / ||W + delta|| - W). delta and
 * work are scratch of rows * in * kh * kw floats each. */
sdw_status sdw_lora_merge(const sdw_lora_parts *p, const char *key, sdw_lora_target_shape s, float strength,
                          float *delta, float *W, float *work);
/* For a linear target: the rank r of the exact factors U @ D of the
 * module's change that sdw_lora_factors makes, or 0 where there are none
 * (DoRA, Tucker cores, a kernel): a plain LoRA's rank; LoHa's r1 r2 (the
 * Hadamard product of two products of ranks r1 and r2 is one of rank
 * r1 r2); LoKr's p q (the Kronecker product of two products, a full factor
 * of [P, Q] counting as min(P, Q)). */
int sdw_lora_factor_rank(const sdw_lora_parts *p, sdw_lora_target_shape s);
/* strength * the change = U [rows, r] @ D [r, in], strength and alpha /
 * rank folded into U; r from sdw_lora_factor_rank (non-zero). Fails, naming
 * key, when the parts do not fit the target. */
sdw_status sdw_lora_factors(const sdw_lora_parts *p, const char *key, sdw_lora_target_shape s, float strength,
                            float *U, float *D);
#endif
