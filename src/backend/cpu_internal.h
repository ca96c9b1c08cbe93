/* cpu_internal.h: what the CPU backend's files share: the backend struct, the
 * primitive cache, grow-only scratch buffers and the vector helpers. Not part
 * of the backend interface; only the backend sources include it. */
#ifndef SDW_BACKEND_CPU_INTERNAL_H
#define SDW_BACKEND_CPU_INTERNAL_H
#include <dnnl.h>
#include <stdint.h>
#include <string.h>
#include "backend/backend.h"
#include "core/error.h"

/* The build targets baseline x86-64 (SSE2); hot loops get AVX-512 (x86-64-v4)
 * and AVX2+FMA (v3) clones picked at load time, so one binary runs everywhere. */
#if defined(__clang__) && __clang_major__ < 16
/* clang before 16 names the dispatcher of a clone set "f.ifunc", so a clone
 * set cannot be called from another file: the clang (fuzz) build goes without. */
#define SDW_VEC
#else
#define SDW_VEC __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif

/* Distinct op shapes sdw_backend_track_shapes keeps; later ones are not counted. */
#define SDW_MAX_SHAPES 512

/* sdw_conv2d_forward_up2x works in bands of rows whose phase output stays
 * under this (the VAE's 512x512 and 1024x1024 levels): a whole 1024x1024
 * decode's would add about 400 MB beside the model's own buffers. */
#define SDW_UP2X_BAND_BYTES ((size_t)32 << 20)

/* Representative sizes for choosing a weights layout at create time. */
#define SDW_LINEAR_LAYOUT_M 4096
#define SDW_CONV_LAYOUT_HW 64
/* Attention scores per block, per thread: about a core's L2, so a block's
 * scores and probabilities stay in cache between the matmuls and the softmax. */
#define SDW_ATTN_BUDGET_PER_THREAD ((size_t)2 << 20)

/* Grow-only scratch buffers, one per use, so nothing is allocated per call
 * once the largest shape has been seen. */
enum {
    SDW_SCR_SRC,      /* bf16 copy of a matmul / conv source, or an f32 one re-laid out (Winograd) */
    SDW_SCR_DST,      /* a conv result in the Winograd kernel's blocked layout */
    SDW_SCR_ONEDNN,   /* oneDNN's own scratchpad (user-managed mode) */
    SDW_SCR_WEIGHTS,  /* weights re-laid out for a shape that rejects the stored layout */
    SDW_SCR_ATT_Q,
    SDW_SCR_ATT_K,
    SDW_SCR_ATT_V,
    SDW_SCR_ATT_S,    /* f32 scores for one block of queries x heads */
    SDW_SCR_ATT_P,    /* bf16 probabilities (bf16 precision only) */
    SDW_SCR_ATT_O,
    SDW_SCR_ATT_L,    /* 1 / softmax row sums */
    SDW_SCR_ATT_OUT,  /* f32 result before it becomes a bf16 activation (no AMX) */
    SDW_SCR_UP2X_IN,  /* the image to upsample as an activation, or upsampled (sdw_conv2d_forward_up2x) */
    SDW_SCR_UP2X_OUT, /* one output phase of it */
    SDW_SCR_LINEAR_TAIL, /* a linear source's last, partial block of rows padded to a whole one (linear_amx.c) */
    SDW_SCR_QUANT,    /* the threads' panels of dequantized weights and result tiles (linear_quant.c) */
    SDW_SCR_BRANCH,   /* a linear's branches: x as f32 and x @ D^T, a chunk of rows (linear_branch.c) */
    SDW_SCR_BRANCH_Y, /* f32 result of a branched linear before it becomes a bf16 activation (linear.c) */
    SDW_SCR_COUNT
};

enum { SDW_OP_LINEAR = 1, SDW_OP_CONV, SDW_OP_MATMUL, SDW_OP_WINO, SDW_OP_REORDER };
enum { SDW_ARG_SRC, SDW_ARG_WEI, SDW_ARG_BIAS, SDW_ARG_DST, SDW_ARG_COUNT };
#define SDW_KEY_MAX 16
/* key[SDW_KEY_FLAGS] of a primitive: SDW_PRIM_SUM adds the result to what dst
 * holds (oneDNN's sum post-op), for residual connections; SDW_PRIM_GELU_TANH
 * takes GELU (tanh form) of the sums before they are written (its eltwise
 * post-op), for the transformers' MLPs. */
#define SDW_KEY_FLAGS (SDW_KEY_MAX - 1)
#define SDW_PRIM_SUM 1
#define SDW_PRIM_GELU_TANH 2

/* One cached primitive: created once per shape, its memory objects made once
 * and pointed at the caller's buffers on every call. */
typedef struct sdw_prim {
    int64_t key[SDW_KEY_MAX];
    bool has_wmd;
    dnnl_memory_desc_t wmd;            /* the stored weights layout it was made for */
    dnnl_primitive_t prim;
    dnnl_memory_t mem[SDW_ARG_COUNT];  /* NULL where the primitive takes no such argument */
    dnnl_memory_t scratch_mem;
    size_t scratch_bytes;
    /* Set when this shape rejects the stored layout: weights are reordered
     * into SDW_SCR_WEIGHTS before each call (rare; see sdw_prim_create). */
    dnnl_primitive_t wreorder;
    dnnl_memory_t wstored, walt;
    size_t walt_bytes;
    const char *impl;
    struct sdw_prim *next;
} sdw_prim;

typedef struct {
    void *p;
    size_t bytes;
} sdw_buf;

struct sdw_backend {
    sdw_precision precision;
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    double flops;
    sdw_op_stats ops;
    sdw_prim **table;   /* hash buckets, chained */
    size_t table_size, count;
    sdw_buf scratch[SDW_SCR_COUNT];
    size_t attn_budget;
    bool own_attention; /* attention on our kernels (attention_bf16.c, attention_flash.c), not oneDNN matmuls */
    bool no_own_conv;   /* small-image convolutions on oneDNN too, not conv_amx.c (tests) */
    bool no_own_linear; /* linear layers on oneDNN only, not linear_amx.c (tests, A/B runs) */
    bool no_winograd;   /* f32 3x3 convolutions always direct, never conv_wino.c (tests, A/B) */
    size_t derived_bytes;  /* weights copies made at first use (Winograd), held by live layers */
    size_t wino_budget;    /* bytes a Winograd call may work in; 0 = SDW_WINO_BUDGET */
    bool no_up2x;          /* sdw_conv2d_forward_up2x always upsamples and runs the 3x3 (tests, A/B) */
    size_t up2x_band_bytes; /* its band budget; 0 = SDW_UP2X_BAND_BYTES */
    sdw_op_shape *shapes;  /* sdw_backend_track_shapes: SDW_MAX_SHAPES entries, or NULL when off */
    int n_shapes;
    struct sdw_kernel_name *names; /* sdw_kernel_name's strings, freed with the backend */
    dnnl_stream_t *tstreams;  /* one per OpenMP thread, for sdw_prim_exec_thread */
    int n_tstreams;
    sdw_weight_type weight_type;  /* for the model loaders (sdw_backend_set_weight_type) */
};

sdw_status sdw_dnnl_fail(dnnl_status_t s, const char *what);
/* Monotonic seconds, and the accounting of one heavy op that began at t0. */
double sdw_be_now(void);
void sdw_count_op(sdw_backend *be, sdw_op_kind k, double t0, double flops, const char *path,
                  const int dims[SDW_OP_DIMS]);
/* "kernel: under" (a kernel of ours and the primitive it runs on, such as
 * the upsampling's phases on oneDNN's convolution) as one string that
 * lives as long as be, the same pointer for the same pair, so that
 * sdw_count_op keeps them apart by pointer. Only while shapes are tracked
 * (else, or out of memory, kernel itself). */
const char *sdw_kernel_name(sdw_backend *be, const char *kernel, const char *under);
#define SDW_DNNL(call, what)                                               \
    do {                                                                   \
        dnnl_status_t ds_ = (call);                                        \
        if (ds_ != dnnl_success) return sdw_dnnl_fail(ds_, what);          \
    } while (0)

/* Fails unless called outside any OpenMP parallel region (linear, conv2d). */
sdw_status sdw_check_not_parallel(const char *op);
/* A 64-byte aligned buffer of at least bytes, valid until the next call for
 * the same slot; NULL (with the error set) when allocation fails. */
void *sdw_scratch(sdw_backend *be, int slot, size_t bytes);

/* The cached primitive for key (and stored weights layout wmd), or NULL. */
sdw_prim *sdw_prim_find(sdw_backend *be, const int64_t key[SDW_KEY_MAX], const dnnl_memory_desc_t *wmd);
/* Creates and caches the primitive for key. desc is the op descriptor with the
 * stored weights layout (wmd, NULL when the op has no layer weights);
 * desc_any the same op with format_tag_any weights, used only when this shape
 * rejects the stored layout. */
sdw_status sdw_prim_create(sdw_backend *be, const int64_t key[SDW_KEY_MAX], const dnnl_memory_desc_t *wmd,
                           const void *desc, const void *desc_any, sdw_prim **out);
/* Creates and caches a reorder between two layouts; SDW_PRIM_SUM in
 * key[SDW_KEY_FLAGS] adds into the destination. Run it with sdw_prim_exec
 * (src, NULL, NULL, dst). */
sdw_status sdw_prim_create_reorder(sdw_backend *be, const int64_t key[SDW_KEY_MAX], const dnnl_memory_desc_t *from,
                                   const dnnl_memory_desc_t *to, sdw_prim **out);
/* Caches an entry with a NULL prim under key: oneDNN has no kernel for it,
 * and callers that try one need not ask again. */
sdw_status sdw_prim_mark_unsupported(sdw_backend *be, const int64_t key[SDW_KEY_MAX], sdw_prim **out);
/* Runs p on the given buffers (bias may be NULL when p has none). */
sdw_status sdw_prim_exec(sdw_backend *be, sdw_prim *p, const void *src, const void *wei, const void *bias,
                         void *dst);
/* Makes sure threads 0..n-1 each have a stream (call outside parallel regions). */
sdw_status sdw_backend_thread_streams(sdw_backend *be, int n);
/* Runs p (no bias, no per-call weights reorder) from inside an OpenMP
 * parallel region as thread tid, with its own stream and scratchpad (at least
 * p->scratch_bytes). oneDNN then runs it on the calling thread alone, so
 * independent blocks of work need no barrier between them. */
sdw_status sdw_prim_exec_thread(sdw_backend *be, const sdw_prim *p, int tid, void *scratchpad, const void *src,
                                const void *wei, void *dst);
/* Reorders between two layouts (and data types) into an existing buffer. */
sdw_status sdw_reorder_into(sdw_backend *be, const dnnl_memory_desc_t *src_md, const void *src,
                            const dnnl_memory_desc_t *dst_md, void *dst);
/* Reorders f32 weights given by src_md into a freshly allocated buffer laid
 * out as dst_md (converting the data type); *out is freed with free(). */
sdw_status sdw_reorder_weights(sdw_backend *be, const dnnl_memory_desc_t *src_md, const float *src,
                               const dnnl_memory_desc_t *dst_md, void **out, size_t *bytes);

/* One attention call's inputs: q [B, Tq, H * D] in rows of q_stride
 * elements, k and v [B, Tk, H * D] in rows of kv_stride; f32, or bf16 when
 * bf (activations a projection wrote in bf16 precision). */
typedef struct {
    const void *q, *k, *v;
    int64_t q_stride, kv_stride;
    bool bf;
    int B, Tq, Tk, H, D;
    bool causal;
} sdw_attn_args;

/* f32 -> bf16, round to nearest even (denormals may flush to 0), parallel. */
void sdw_cvt_bf16(uint16_t *dst, const float *src, size_t n);
/* Vector kernels for one span, for callers that parallelise themselves. */
void sdw_cvt_bf16_span(uint16_t *restrict dst, const float *restrict src, size_t n);
void sdw_copy_span(float *restrict dst, const float *restrict src, size_t n);
void sdw_scale_copy_span(float *restrict dst, const float *restrict src, float s, size_t n);
/* Attention softmax of one score row, in place and left unnormalised: the
 * first n_valid entries become exp(scale * (s - max)), the rest 0. Returns
 * 1 / their sum, which the caller applies to P V (D values a row, not Tk). */
float sdw_attn_softmax_row(float *s, int n, int n_valid, float scale);
#endif
