/* avx512_emulated.h: AVX-512 (F, BW, VL, DQ, BF16) on any x86-64, for the
 * tests that run our AVX-512 kernels on CPUs without it: SIMDe's native
 * aliases, plus the few intrinsics its Debian release (0.7.4) lacks,
 * written here element by element with the instructions' semantics (bf16
 * conversion rounds to nearest even, as vcvtneps2bf16 does). */
#ifndef SDW_TESTS_AVX512_EMULATED_H
#define SDW_TESTS_AVX512_EMULATED_H
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <immintrin.h> /* gcc's vector and mask types, which SIMDe then uses (no -m flags needed) */
#include <math.h>
#include <simde/x86/avx512.h>
#include <stdint.h>
#include <string.h>

typedef int16_t emu_i16x32 __attribute__((vector_size(64)));
typedef int16_t emu_i16x16 __attribute__((vector_size(32)));

static inline uint16_t emu_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

static inline __m256bh emu_cvtneps_pbh(__m512 a)
{
    emu_i16x16 r;
    for (int i = 0; i < 16; i++) r[i] = (int16_t)emu_bf16(a[i]);
    __m256bh out;
    memcpy(&out, &r, sizeof out);
    return out;
}

/* vcvtne2ps2bf16: b's 16 values in the low half, a's in the high. */
static inline __m512bh emu_cvtne2ps_pbh(__m512 a, __m512 b)
{
    emu_i16x32 r;
    for (int i = 0; i < 16; i++) {
        r[i] = (int16_t)emu_bf16(b[i]);
        r[i + 16] = (int16_t)emu_bf16(a[i]);
    }
    __m512bh out;
    memcpy(&out, &r, sizeof out);
    return out;
}

/* vreduceps with imm 0x09 (round down, 0 fraction bits kept): t - floor(t). */
static inline __m512 emu_reduce_ps(__m512 a, int imm)
{
    (void)imm;
    __m512 r;
    for (int i = 0; i < 16; i++) r[i] = a[i] - floorf(a[i]);
    return r;
}

static inline void emu_mask_storeu_ps(void *p, __mmask16 k, __m512 a)
{
    for (int i = 0; i < 16; i++)
        if (k >> i & 1) memcpy((float *)p + i, &a[i], 4);
}

static inline __m512 emu_maskz_loadu_ps(__mmask16 k, const void *p)
{
    __m512 r = { 0 };
    for (int i = 0; i < 16; i++)
        if (k >> i & 1) memcpy(&r[i], (const float *)p + i, 4);
    return r;
}

static inline __m256i emu_maskz_loadu_epi16(__mmask16 k, const void *p)
{
    emu_i16x16 r = { 0 };
    for (int i = 0; i < 16; i++)
        if (k >> i & 1) memcpy(&r[i], (const int16_t *)p + i, 2);
    __m256i out;
    memcpy(&out, &r, sizeof out);
    return out;
}

static inline void emu_mask_storeu_epi16(void *p, __mmask16 k, __m256i a)
{
    emu_i16x16 v;
    memcpy(&v, &a, sizeof v);
    for (int i = 0; i < 16; i++)
        if (k >> i & 1) memcpy((int16_t *)p + i, &v[i], 2);
}

typedef int8_t emu_i8x16 __attribute__((vector_size(16)));
typedef int32_t emu_i32x16 __attribute__((vector_size(64)));

/* vpmovsxbd: 16 signed bytes widened to 16 dwords. */
static inline __m512i emu_cvtepi8_epi32(__m128i a)
{
    emu_i8x16 v;
    emu_i32x16 r;
    memcpy(&v, &a, sizeof v);
    for (int i = 0; i < 16; i++) r[i] = v[i];
    __m512i out;
    memcpy(&out, &r, sizeof out);
    return out;
}

static inline __m512 emu_cvtepi32_ps(__m512i a)
{
    emu_i32x16 v;
    memcpy(&v, &a, sizeof v);
    __m512 r;
    for (int i = 0; i < 16; i++) r[i] = (float)v[i];
    return r;
}

static inline float emu_reduce_add_ps(__m512 a)
{
    float s = 0;
    for (int i = 0; i < 16; i++) s += a[i];
    return s;
}

#define _mm512_reduce_add_ps(a) emu_reduce_add_ps(a)
#define _mm512_cvtepi8_epi32(a) emu_cvtepi8_epi32(a)
#define _mm512_cvtepi32_ps(a) emu_cvtepi32_ps(a)
#define _mm512_cvtneps_pbh(a) emu_cvtneps_pbh(a)
#define _mm512_cvtne2ps_pbh(a, b) emu_cvtne2ps_pbh(a, b)
#define _mm512_reduce_ps(a, imm) emu_reduce_ps(a, imm)
#define _mm512_mask_storeu_ps(p, k, a) emu_mask_storeu_ps(p, k, a)
#define _mm512_maskz_loadu_ps(k, p) emu_maskz_loadu_ps(k, p)
#define _mm256_maskz_loadu_epi16(k, p) emu_maskz_loadu_epi16(k, p)
#define _mm256_mask_storeu_epi16(p, k, a) emu_mask_storeu_epi16(p, k, a)
#endif
