/* attention_kit.h: what the attention tests share: the cases (shapes,
 * strides, causal masks, block budgets), inputs filled for them, and a naive
 * per-head reference in double. test_backend_attention runs them on every
 * path this CPU has; test_attention_emulated runs the AVX-512-BF16 kernel
 * on any CPU through SIMDe. */
#ifndef SDW_TESTS_ATTENTION_KIT_H
#define SDW_TESTS_ATTENTION_KIT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int B, Tq, Tk, H, D;
    bool causal;
    int q_extra, kv_extra;  /* row stride = H*D + extra */
    size_t budget;          /* per thread; 0 = default */
    bool rising;            /* keys grow along Tk, one late key far more: most key blocks raise rows' max */
} attn_case;

extern const attn_case attn_cases[];
extern const size_t attn_n_cases;

/* One case's inputs (q, k, v at their strides) and the reference output
 * [B, Tq, H, D]; attn_data_free releases them. */
typedef struct {
    int64_t qs, kvs;
    size_t nq, nkv, no;
    float *q, *k, *v, *ref;
} attn_data;

attn_data attn_data_make(const attn_case *c);
void attn_data_free(attn_data *d);
/* "B2 Tq77 Tk77 H3 D20 causal qs60 kvs60 blocked" */
void attn_case_name(char *buf, size_t n, const attn_case *c, const attn_data *d);
#endif
