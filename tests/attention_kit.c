/* attention_kit.c: the attention tests' cases, inputs and reference
 * (attention_kit.h). */
#include "attention_kit.h"
#include "testkit.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* A thread's block takes budget / (Tk x 6) rows x heads; under 64 rows of
 * all heads, blocks take fewer heads (or, at one head, fewer rows). */
const attn_case attn_cases[] = {
    { 1, 77, 77, 4, 16, true, 2 * 64, 2 * 64, 0, false },   /* CLIP: causal, rows of a fused qkv */
    { 2, 77, 77, 3, 20, true, 0, 0, 77 * 6 * 60, false },   /* causal, 1 head x 48 rows blocks */
    { 2, 300, 77, 3, 40, false, 5, 0, 3 * 77 * 6 * 64, false }, /* cross-attention, 3 heads x 64 rows */
    { 1, 100, 50, 3, 8, true, 0, 0, 2 * 64 * 50 * 6, false }, /* 2 heads + 1, Tq > Tk causal */
    { 1, 256, 256, 2, 64, false, 0, 7, 0, false },
    { 1, 128, 50, 3, 8, false, 0, 0, 50 * 6 * 32, false },  /* 1 head x 32 rows */
    { 1, 300, 300, 2, 64, false, 0, 0, 0, false },
    { 1, 160, 160, 1, 512, false, 0, 0, 160 * 6 * 48, false }, /* VAE mid-block: one wide head */
    { 1, 5, 3, 1, 7, false, 1, 2, 0, false },               /* odd and tiny */
    { 1, 9, 13, 2, 3, true, 0, 0, 13 * 6 * 2, false },      /* causal Tq < Tk, 2 queries a block */
    { 1, 70, 1000, 2, 40, false, 8, 0, 0, false },          /* SD1's head: key blocks and a ragged tail */
    { 1, 300, 300, 2, 80, true, 0, 0, 0, false },           /* causal over several key blocks */
    { 1, 50, 4133, 2, 40, false, 3, 5, 0, false },          /* long: dozens of key blocks, a ragged tail */
    { 2, 64, 1000, 2, 40, false, 0, 0, 0, true },           /* rising scores: rows rescaled block after block */
    { 1, 40, 700, 1, 64, true, 0, 0, 0, true },             /* the same, causal */
    { 1, 96, 260, 3, 128, false, 0, 0, 0, false },          /* FLUX's and SD3's head */
};
const size_t attn_n_cases = sizeof attn_cases / sizeof attn_cases[0];

static void ref_attention(const attn_case *c, const float *q, int64_t qs, const float *k, const float *v,
                          int64_t kvs, float *out)
{
    double *p = malloc(sizeof(double) * (size_t)c->Tk);
    assert_non_null(p);
    const double scale = 1.0 / sqrt((double)c->D);
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < c->H; h++)
            for (int i = 0; i < c->Tq; i++) {
                const float *qi = q + ((int64_t)b * c->Tq + i) * qs + (int64_t)h * c->D;
                double m = -INFINITY, s = 0;
                for (int j = 0; j < c->Tk; j++) {
                    const float *kj = k + ((int64_t)b * c->Tk + j) * kvs + (int64_t)h * c->D;
                    double d = 0;
                    for (int e = 0; e < c->D; e++) d += (double)qi[e] * kj[e];
                    p[j] = (c->causal && j > i) ? -INFINITY : d * scale;
                    if (p[j] > m) m = p[j];
                }
                for (int j = 0; j < c->Tk; j++) s += (p[j] = exp(p[j] - m));
                for (int e = 0; e < c->D; e++) {
                    double o = 0;
                    for (int j = 0; j < c->Tk; j++)
                        o += p[j] * v[((int64_t)b * c->Tk + j) * kvs + (int64_t)h * c->D + e];
                    out[(((int64_t)b * c->Tq + i) * c->H + h) * c->D + e] = (float)(o / s);
                }
            }
    free(p);
}

attn_data attn_data_make(const attn_case *c)
{
    attn_data d = { 0 };
    const int64_t HD = (int64_t)c->H * c->D;
    d.qs = HD + c->q_extra;
    d.kvs = HD + c->kv_extra;
    d.nq = (size_t)c->B * c->Tq * d.qs;
    d.nkv = (size_t)c->B * c->Tk * d.kvs;
    d.no = (size_t)c->B * c->Tq * HD;
    d.q = malloc(d.nq * sizeof *d.q);
    d.k = malloc(d.nkv * sizeof *d.k);
    d.v = malloc(d.nkv * sizeof *d.v);
    d.ref = malloc(d.no * sizeof *d.ref);
    assert_true(d.q && d.k && d.v && d.ref);
    test_fill(d.q, d.nq, 101);
    test_fill(d.k, d.nkv, 102);
    test_fill(d.v, d.nkv, 103);
    for (size_t i = 0; i < d.nq; i++) d.q[i] *= 3.0f; /* peakier softmax than uniform noise gives */
    for (int j = 0; c->rising && j < c->B * c->Tk; j++) {
        const int key = j % c->Tk;
        const float grow = key == c->Tk - 3 ? 12.0f : 0.25f + 3.0f * (float)key / (float)c->Tk;
        for (int64_t e = 0; e < HD; e++) d.k[(int64_t)j * d.kvs + e] *= grow;
    }
    ref_attention(c, d.q, d.qs, d.k, d.v, d.kvs, d.ref);
    return d;
}

void attn_data_free(attn_data *d)
{
    free(d->q), free(d->k), free(d->v), free(d->ref);
    *d = (attn_data){ 0 };
}

void attn_case_name(char *buf, size_t n, const attn_case *c, const attn_data *d)
{
    snprintf(buf, n, "B%d Tq%d Tk%d H%d D%d%s qs%lld kvs%lld%s%s", c->B, c->Tq, c->Tk, c->H, c->D,
             c->causal ? " causal" : "", (long long)d->qs, (long long)d->kvs, c->budget ? " blocked" : "",
             c->rising ? " rising" : "");
}
