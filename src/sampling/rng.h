/* rng.h: the two seed-compatible noise generators.
 *
 * SDW_RNG_CPU reproduces torch.Generator('cpu').manual_seed(seed) as used by
 * ComfyUI and diffusers (torch 1.13 CPU kernels):
 *   - the engine is mt19937 seeded with the low 32 bits of the seed (so seeds
 *     2**32+7 and 7 give the same stream);
 *   - torch.randn of n >= 16 elements: n float uniforms (24 bits of one 32-bit
 *     draw each), Box-Muller in float over blocks of 16 (element j and j+8 of a
 *     block from u1 = 1 - x[j], u2 = x[j+8]), and, when n % 16 != 0, the last 16
 *     elements refilled with 16 fresh uniforms and transformed again; the log
 *     and sincos are the Cephes float polynomials of torch's AVX2 kernel, so
 *     the result is bit-identical to torch on an x86 CPU with AVX2;
 *   - torch.randn of n < 16 elements: per element a double normal from two
 *     53-bit uniforms (each from two 32-bit draws), Box-Muller in double, the
 *     sine half cached in the generator and returned by the next such element
 *     (the cache survives across calls and is cleared by seeding);
 *   - torch.rand: one 24-bit float uniform per element.
 *
 * SDW_RNG_CUDA reproduces AUTOMATIC1111's Philox reproduction of
 * torch.randn on a CUDA generator (modules/rng_philox.py): element i of a call
 * is Philox4x32-10 with counter [offset, 0, i, 0] and key [seed lo, seed hi],
 * Box-Muller of the first two words in double; offset counts randn calls. */
#ifndef SDW_SAMPLING_RNG_H
#define SDW_SAMPLING_RNG_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { SDW_RNG_CPU, SDW_RNG_CUDA } sdw_rng_kind;

#define SDW_MT_N 624

typedef struct {
    sdw_rng_kind kind;
    uint64_t seed;
    /* CPU: mt19937 state and torch's cached double normal sample */
    uint32_t mt[SDW_MT_N];
    int mt_idx;
    bool has_cached_normal;
    double cached_normal;
    /* CUDA (Philox): randn calls made so far */
    uint64_t offset;
} sdw_rng;

void sdw_rng_init(sdw_rng *r, sdw_rng_kind kind, uint64_t seed);
/* One torch.randn(shape) call of n = numel elements, row-major; the stream
 * continues across calls. */
void sdw_rng_randn(sdw_rng *r, float *out, size_t n);
/* One torch.rand(shape) call: uniforms in [0, 1). For SDW_RNG_CUDA (which A1111
 * never uses for uniforms) this draws from the Philox stream: the first word of
 * each element's block, scaled by 2^-32 in float64 and rounded to float32 (so
 * it also advances the offset). */
void sdw_rng_rand(sdw_rng *r, float *out, size_t n);
/* Name of a kind ("cpu", "cuda"), and the reverse (false if unknown). */
const char *sdw_rng_kind_name(sdw_rng_kind k);
bool sdw_rng_kind_parse(const char *s, sdw_rng_kind *out);
#endif
