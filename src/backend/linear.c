/* linear.c: y[M, out] = x[M, in] @ W^T + b on oneDNN: in bf16 its inner
 * product, in f32 its matmul. On AMX the inner product's brgemm kernels ran
 * 1.05-1.95x as fast as the matmul's at the UNet's shapes (interleaved, in
 * one process); in f32 it was 0.77-1.08x, so f32 keeps the matmul. The
 * weights are reordered once, at create, into the layout the primitive
 * prefers for a representative M; every later shape is created against
 * that stored layout. Where the CPU has AMX, 32 rows or more run on
 * linear_amx.c, which reads that same layout (on AVX-512-BF16 without AMX,
 * the GEGLU projection of 16 rows or more on linear_dp.c, over its layout
 * there); in f32 on AVX2, calls of few
 * rows run on linear_avx2.c, over the matmul's plain [in, out] weights.
 * A layer made from compact
 * weights (sdw_linear_create_quant) keeps them as they are and runs on
 * linear_quant.c. Any layer may also carry low-rank branches (a LoRA kept
 * beside compact weights), added to its f32 result by linear_branch.c. */
#include "backend/cpu_internal.h"
#include "backend/amx.h"
#include "backend/linear_amx.h"
#include "backend/linear_avx2.h"
#include "backend/linear_dp.h"
#include "backend/linear_branch.h"
#include "backend/linear_quant.h"
#include <stdlib.h>

struct sdw_linear {
    int in, out;
    dnnl_data_type_t dt;        /* of the weights and of the source */
    dnnl_memory_desc_t wmd;     /* stored layout: [out, in] (inner product) or [in, out] (matmul) */
    void *w;
    size_t wbytes;
    float *bias;                /* f32, or NULL */
    bool amx;                   /* the stored layout also serves linear_amx.c */
    bool dp;                    /* ... or linear_dp.c */
    bool quant;                 /* w holds out rows of row_bytes in format qt (linear_quant.c) */
    sdw_qtype qt;
    size_t row_bytes;
    bool borrowed;              /* w points into the caller's read-only memory (a file mapping) */
    sdw_lbranches *branches;    /* low-rank additions beside w (LoRA, linear_branch.c), or NULL */
};

static dnnl_data_type_t compute_dt(const sdw_backend *be)
{
    return be->precision == SDW_PRECISION_BF16 ? dnnl_bf16 : dnnl_f32;
}

static bool inner_product(const sdw_linear *l) { return l->dt == dnnl_bf16; }

/* PyTorch's [out, in] row-major f32, as the inner product's [out, in]
 * weights or as the matmul's [in, out] matrix. */
static sdw_status user_md(const sdw_linear *l, dnnl_memory_desc_t *md)
{
    const bool ip = inner_product(l);
    dnnl_dims_t dims = { ip ? l->out : l->in, ip ? l->in : l->out }, strides = { ip ? l->in : 1, ip ? 1 : l->in };
    SDW_DNNL(dnnl_memory_desc_init_by_strides(md, 2, dims, dnnl_f32, strides), "linear weights");
    return SDW_OK;
}

typedef union {
    dnnl_inner_product_desc_t ip;
    dnnl_matmul_desc_t mm;
} linear_op;

/* The primitive's descriptor for M rows writing dst_dt; wmd NULL asks for
 * format_tag_any weights. */
static sdw_status linear_desc(const sdw_linear *l, int64_t M, const dnnl_memory_desc_t *wmd,
                              dnnl_data_type_t dst_dt, linear_op *d)
{
    const bool ip = inner_product(l);
    dnnl_memory_desc_t src, wei, bias, dst;
    dnnl_dims_t ds = { M, l->in }, dd = { M, l->out };
    dnnl_dims_t dw = { ip ? l->out : l->in, ip ? l->in : l->out }, db = { ip ? l->out : 1, l->out };
    SDW_DNNL(dnnl_memory_desc_init_by_tag(&src, 2, ds, l->dt, dnnl_ab), "linear src");
    if (wmd) wei = *wmd;
    else SDW_DNNL(dnnl_memory_desc_init_by_tag(&wei, 2, dw, l->dt, dnnl_format_tag_any), "linear weights");
    SDW_DNNL(dnnl_memory_desc_init_by_tag(&bias, ip ? 1 : 2, db, dnnl_f32, ip ? dnnl_a : dnnl_ab), "linear bias");
    SDW_DNNL(dnnl_memory_desc_init_by_tag(&dst, 2, dd, dst_dt, dnnl_ab), "linear dst");
    const dnnl_memory_desc_t *b = l->bias ? &bias : NULL;
    if (ip)
        SDW_DNNL(dnnl_inner_product_forward_desc_init(&d->ip, dnnl_forward_inference, &src, &wei, b, &dst),
                 "linear inner product");
    else
        SDW_DNNL(dnnl_matmul_desc_init(&d->mm, &src, &wei, b, &dst), "linear matmul");
    return SDW_OK;
}

/* bias [out] or NULL into l->bias. */
static sdw_status copy_bias(sdw_linear *l, const float *bias)
{
    if (!bias) return SDW_OK;
    l->bias = malloc(sizeof(float) * (size_t)l->out);
    if (!l->bias) return sdw_fail(SDW_ERR_NOMEM, "linear: out of memory");
    memcpy(l->bias, bias, sizeof(float) * (size_t)l->out);
    return SDW_OK;
}

static sdw_status choose_layout(sdw_backend *be, sdw_linear *l)
{
    linear_op d;
    SDW_TRY(linear_desc(l, SDW_LINEAR_LAYOUT_M, NULL, dnnl_f32, &d));
    dnnl_primitive_desc_t pd;
    SDW_DNNL(dnnl_primitive_desc_create(&pd, &d, NULL, be->engine, NULL), "linear layout");
    l->wmd = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    dnnl_primitive_desc_destroy(pd);
    return SDW_OK;
}

sdw_status sdw_linear_create(sdw_backend *be, int in, int out, const float *w, const float *bias,
                             sdw_linear **out_layer)
{
    *out_layer = NULL;
    if (in <= 0 || out <= 0 || !w) return sdw_fail(SDW_ERR_INVALID_ARG, "linear: bad shape %d -> %d", in, out);
    sdw_linear *l = calloc(1, sizeof *l);
    if (!l) return sdw_fail(SDW_ERR_NOMEM, "linear: out of memory");
    l->in = in;
    l->out = out;
    l->dt = compute_dt(be);
    sdw_status st = copy_bias(l, bias);
    if (st == SDW_OK) st = choose_layout(be, l);
    if (st == SDW_OK) {
        dnnl_memory_desc_t user;
        st = user_md(l, &user);
        if (st == SDW_OK) st = sdw_reorder_weights(be, &user, w, &l->wmd, &l->w, &l->wbytes);
    }
    if (st == SDW_OK && inner_product(l)) {
        l->amx = sdw_linear_amx_fits(&l->wmd, in, out);
        l->dp = sdw_linear_dp_fits(&l->wmd, in, out);
    }
    if (st != SDW_OK) {
        sdw_linear_free(l);
        return sdw_fail_context(st, "linear %d -> %d", in, out);
    }
    *out_layer = l;
    return SDW_OK;
}

static sdw_status create_quant(sdw_backend *be, int in, int out, sdw_qtype t, const void *rows, const float *bias,
                               bool borrow, sdw_linear **out_layer)
{
    *out_layer = NULL;
    const size_t rb = sdw_qtype_row_bytes(t, in);
    if (out <= 0 || !rows || !rb)
        return sdw_fail(SDW_ERR_INVALID_ARG, "linear: %s weights cannot make a layer %d -> %d (in must be a "
                        "multiple of %d)", sdw_qtype_name(t), in, out, sdw_qtype_block(t, NULL));
    sdw_linear *l = calloc(1, sizeof *l);
    if (!l) return sdw_fail(SDW_ERR_NOMEM, "linear: out of memory");
    *l = (sdw_linear){ .in = in, .out = out, .dt = compute_dt(be), .quant = true, .qt = t, .row_bytes = rb,
                       .wbytes = rb * (size_t)out, .borrowed = borrow };
    l->w = borrow ? (void *)rows : malloc(l->wbytes);
    sdw_status st = l->w ? copy_bias(l, bias) : sdw_fail(SDW_ERR_NOMEM, "linear: out of memory");
    if (st != SDW_OK) {
        sdw_linear_free(l);
        return sdw_fail_context(st, "linear %d -> %d", in, out);
    }
    if (!borrow) memcpy(l->w, rows, l->wbytes);
    *out_layer = l;
    return SDW_OK;
}

sdw_status sdw_linear_create_quant(sdw_backend *be, int in, int out, sdw_qtype t, const void *rows,
                                   const float *bias, sdw_linear **out_layer)
{
    return create_quant(be, in, out, t, rows, bias, false, out_layer);
}

sdw_status sdw_linear_create_quant_borrowed(sdw_backend *be, int in, int out, sdw_qtype t, const void *rows,
                                            const float *bias, sdw_linear **out_layer)
{
    return create_quant(be, in, out, t, rows, bias, true, out_layer);
}

bool sdw_linear_borrows(const sdw_linear *l) { return l->borrowed; }

/* A layer about to be written takes its own copy of borrowed rows. */
static sdw_status own_rows(sdw_linear *l)
{
    if (!l->borrowed) return SDW_OK;
    void *w = malloc(l->wbytes);
    if (!w) return sdw_fail(SDW_ERR_NOMEM, "linear: out of memory copying %zu bytes of weights", l->wbytes);
    memcpy(w, l->w, l->wbytes);
    l->w = w;
    l->borrowed = false;
    return SDW_OK;
}

bool sdw_linear_quant_type(const sdw_linear *l, sdw_qtype *t)
{
    if (l->quant && t) *t = l->qt;
    return l->quant;
}

static sdw_status kernel_product(sdw_backend *be, const sdw_linear *l, const void *x, bool x_is_act, int64_t M,
                                 void *y, bool y_is_act, int64_t flags, bool *gelu_after);

/* x is f32, or already in the compute type when x_is_act; y is f32, or
 * written in the compute type when y_is_act (half the bytes to store in
 * bf16, and what the attention or GEGLU after it reads). flags: SDW_PRIM_SUM
 * and SDW_PRIM_GELU_TANH, the second taken by oneDNN's primitive as it
 * writes, by a pass over y after our own kernels. */
static sdw_status product(sdw_backend *be, const sdw_linear *l, const void *x, bool x_is_act, int64_t M, void *y,
                          bool y_is_act, int64_t flags)
{
    bool gelu_after = false;
    const sdw_status s = kernel_product(be, l, x, x_is_act, M, y, y_is_act, flags, &gelu_after);
    if (s == SDW_OK && gelu_after && M > 0) {
        const size_t n = (size_t)M * (size_t)l->out;
        if (y_is_act) sdw_gelu_tanh_act(be, y, n);
        else sdw_gelu_tanh(y, n);
    }
    return s;
}

static sdw_status kernel_product(sdw_backend *be, const sdw_linear *l, const void *x, bool x_is_act, int64_t M,
                                 void *y, bool y_is_act, int64_t flags, bool *gelu_after)
{
    *gelu_after = (flags & SDW_PRIM_GELU_TANH) != 0; /* until oneDNN takes it */
    if (M < 0) return sdw_fail(SDW_ERR_INVALID_ARG, "linear: M = %lld", (long long)M);
    if (M == 0) return SDW_OK;
    SDW_TRY(sdw_check_not_parallel("linear"));
    double t0 = sdw_be_now();
    const int dims[SDW_OP_DIMS] = { (int)M, l->in, l->out };
    const double flops = 2.0 * (double)M * l->in * l->out;
    const void *src = x;
    if (l->dt == dnnl_bf16 && !x_is_act) { /* both kernels read a bf16 source */
        uint16_t *xb = sdw_scratch(be, SDW_SCR_SRC, sizeof(uint16_t) * (size_t)M * (size_t)l->in);
        if (!xb) return SDW_ERR_NOMEM;
        sdw_cvt_bf16(xb, x, (size_t)M * (size_t)l->in);
        src = xb;
    }
    if (l->quant) {
        const sdw_qlinear_args a = { l->qt, l->w, l->row_bytes, l->bias, M, l->in, l->out, src, y,
                                     y_is_act && l->dt == dnnl_bf16, (flags & SDW_PRIM_SUM) != 0 };
        SDW_TRY(sdw_qlinear_forward(be, &a));
        sdw_count_op(be, SDW_OPK_LINEAR, t0, flops, sdw_qlinear_path(be, &a), dims);
        return SDW_OK;
    }
    if (!l->quant && !be->no_own_linear && sdw_linear_avx2_suits(be, &l->wmd, l->in, l->out, M)) {
        SDW_TRY(sdw_linear_avx2(be, src, M, l->in, l->out, l->w, l->bias, y, (flags & SDW_PRIM_SUM) != 0));
        sdw_count_op(be, SDW_OPK_LINEAR, t0, flops, "linear_avx2 (6x16 tiles)", dims);
        return SDW_OK;
    }
    if (sdw_linear_uses_own_kernel(be, l, M)) {
        const sdw_linear_bf16_args a = { src, M, l->in, l->out, l->w, l->bias, y_is_act ? NULL : y,
                                         y_is_act ? y : NULL, (flags & SDW_PRIM_SUM) != 0, false };
        SDW_TRY(sdw_linear_amx(be, &a));
        sdw_count_op(be, SDW_OPK_LINEAR, t0, flops, "linear_amx", dims);
        return SDW_OK;
    }
    const dnnl_data_type_t dst_dt = y_is_act ? l->dt : dnnl_f32;
    *gelu_after = false;
    int64_t key[SDW_KEY_MAX] = { SDW_OP_LINEAR, l->dt, M, l->in, l->out, l->bias != NULL, dst_dt };
    key[SDW_KEY_FLAGS] = flags;
    sdw_prim *p = sdw_prim_find(be, key, &l->wmd);
    if (!p) {
        linear_op d, d_any;
        SDW_TRY(linear_desc(l, M, &l->wmd, dst_dt, &d));
        SDW_TRY(linear_desc(l, M, NULL, dst_dt, &d_any));
        SDW_TRY(sdw_prim_create(be, key, &l->wmd, &d, &d_any, &p));
    }
    SDW_TRY(sdw_prim_exec(be, p, src, l->w, l->bias, y));
    sdw_count_op(be, SDW_OPK_LINEAR, t0, flops, p->impl, dims);
    return SDW_OK;
}

/* A bf16 activation from a layer with branches is made from the f32 sum of
 * both, a chunk of rows of this many bytes at a time. */
#define BRANCH_Y_BYTES ((size_t)32 << 20)

/* The product, then the layer's branches on its f32 result. */
static sdw_status forward(sdw_backend *be, const sdw_linear *l, const void *x, bool x_is_act, int64_t M, void *y,
                          bool y_is_act, int64_t flags)
{
    if (!l->branches || M <= 0) return product(be, l, x, x_is_act, M, y, y_is_act, flags);
    const bool bf = l->dt == dnnl_bf16, x_bf = x_is_act && bf, gelu = (flags & SDW_PRIM_GELU_TANH) != 0;
    flags &= ~(int64_t)SDW_PRIM_GELU_TANH; /* taken after the branches add */
    if (!(y_is_act && bf)) {
        SDW_TRY(product(be, l, x, x_is_act, M, y, y_is_act, flags));
        SDW_TRY(sdw_lbranches_forward(be, l->branches, x, x_bf, M, y, l->out));
        if (gelu) sdw_gelu_tanh(y, (size_t)M * (size_t)l->out);
        return SDW_OK;
    }
    int64_t mc = (int64_t)(BRANCH_Y_BYTES / (sizeof(float) * (size_t)l->out));
    mc = mc < 1 ? 1 : mc > M ? M : mc;
    float *t = sdw_scratch(be, SDW_SCR_BRANCH_Y, sizeof(float) * (size_t)mc * (size_t)l->out);
    if (!t) return SDW_ERR_NOMEM;
    const size_t xsz = x_bf ? sizeof(uint16_t) : sizeof(float);
    for (int64_t m0 = 0; m0 < M; m0 += mc) {
        const int64_t n = M - m0 < mc ? M - m0 : mc;
        const void *xc = (const char *)x + xsz * (size_t)m0 * (size_t)l->in;
        SDW_TRY(product(be, l, xc, x_is_act, n, t, false, 0));
        SDW_TRY(sdw_lbranches_forward(be, l->branches, xc, x_bf, n, t, l->out));
        if (gelu) sdw_gelu_tanh(t, (size_t)n * (size_t)l->out);
        sdw_cvt_bf16((uint16_t *)y + (size_t)m0 * (size_t)l->out, t, (size_t)n * (size_t)l->out);
    }
    return SDW_OK;
}

sdw_status sdw_linear_forward(sdw_backend *be, const sdw_linear *l, const float *x, int64_t M, float *y)
{
    return forward(be, l, x, false, M, y, false, 0);
}

sdw_status sdw_linear_forward_add(sdw_backend *be, const sdw_linear *l, const float *x, int64_t M, float *y)
{
    return forward(be, l, x, false, M, y, false, SDW_PRIM_SUM);
}

sdw_status sdw_linear_forward_act(sdw_backend *be, const sdw_linear *l, const void *act, int64_t M, float *y,
                                  bool accumulate)
{
    return forward(be, l, act, true, M, y, false, accumulate ? SDW_PRIM_SUM : 0);
}

sdw_status sdw_linear_forward_to_act(sdw_backend *be, const sdw_linear *l, const void *act, int64_t M,
                                     void *out_act)
{
    return forward(be, l, act, true, M, out_act, true, 0);
}

sdw_status sdw_linear_forward_gelu_act(sdw_backend *be, const sdw_linear *l, const void *act, int64_t M,
                                       void *out_act)
{
    return forward(be, l, act, true, M, out_act, true, SDW_PRIM_GELU_TANH);
}

sdw_status sdw_linear_forward_geglu_act(sdw_backend *be, const sdw_linear *l, const void *act, int64_t M,
                                        void *tmp_act, void *out_act)
{
    if (l->out % 2) return sdw_fail(SDW_ERR_INVALID_ARG, "linear: GEGLU of an odd width %d", l->out);
    const bool dp = !be->no_own_linear && l->dp && sdw_linear_dp_suits(M);
    if (!(sdw_linear_uses_own_kernel(be, l, M) || dp) || l->branches) {   /* branches add before the GEGLU */
        SDW_TRY(sdw_linear_forward_to_act(be, l, act, M, tmp_act));
        sdw_geglu_act(be, tmp_act, M, l->out / 2, out_act);
        return SDW_OK;
    }
    SDW_TRY(sdw_check_not_parallel("linear"));
    const double t0 = sdw_be_now();
    const sdw_linear_bf16_args a = { act, M, l->in, l->out, l->w, l->bias, NULL, out_act, false, true };
    SDW_TRY(dp ? sdw_linear_dp(&a) : sdw_linear_amx(be, &a));
    const int dims[SDW_OP_DIMS] = { (int)M, l->in, l->out };
    sdw_count_op(be, SDW_OPK_LINEAR, t0, 2.0 * (double)M * l->in * l->out,
                 dp ? "linear_dp+geglu (6x64 tiles)" : "linear_amx+geglu", dims);
    return SDW_OK;
}

sdw_status sdw_linear_get_weights(sdw_backend *be, const sdw_linear *l, float *w)
{
    if (l->quant) {
#pragma omp parallel for schedule(static) if (l->wbytes > 65536)
        for (int r = 0; r < l->out; r++)
            sdw_qtype_dequantize_row(l->qt, (const uint8_t *)l->w + (size_t)r * l->row_bytes, w + (size_t)r * l->in,
                                     l->in);
        return SDW_OK;
    }
    dnnl_memory_desc_t md;
    SDW_TRY(user_md(l, &md));
    return sdw_reorder_into(be, &l->wmd, l->w, &md, w);
}

sdw_status sdw_linear_set_weights(sdw_backend *be, sdw_linear *l, const float *w)
{
    if (l->quant) { /* requantized into the layer's own type, so it keeps its size */
        SDW_TRY(own_rows(l));
#pragma omp parallel for schedule(static) if (l->wbytes > 65536)
        for (int r = 0; r < l->out; r++)
            sdw_qtype_quantize_row(l->qt, w + (size_t)r * l->in, (uint8_t *)l->w + (size_t)r * l->row_bytes, l->in);
        return SDW_OK;
    }
    dnnl_memory_desc_t md;
    SDW_TRY(user_md(l, &md));
    return sdw_reorder_into(be, &md, w, &l->wmd, l->w);
}

void *sdw_linear_stored(sdw_linear *l, size_t *bytes)
{
    *bytes = l->wbytes;
    return own_rows(l) == SDW_OK ? l->w : NULL;
}

bool sdw_linear_uses_own_kernel(const sdw_backend *be, const sdw_linear *l, int64_t M)
{
    return l->amx && !be->no_own_linear && sdw_linear_amx_suits(M);
}

bool sdw_backend_set_own_linear(sdw_backend *be, bool on)
{
    be->no_own_linear = !on;
    if (be->precision == SDW_PRECISION_F32) {
        dnnl_memory_desc_t plain;
        dnnl_dims_t dims = { 16, 16 }, strides = { 16, 1 };
        return on && dnnl_memory_desc_init_by_strides(&plain, 2, dims, dnnl_f32, strides) == dnnl_success &&
               sdw_linear_avx2_suits(be, &plain, 16, 16, 77);
    }
    return on && (sdw_amx_usable() || sdw_cpu_has_native_bf16());
}

sdw_lbranches **sdw_linear_branch_slot(sdw_linear *l) { return &l->branches; }
const sdw_lbranches *sdw_linear_branch_set(const sdw_linear *l) { return l->branches; }

int sdw_linear_in(const sdw_linear *l) { return l->in; }
int sdw_linear_out(const sdw_linear *l) { return l->out; }
size_t sdw_linear_bytes(const sdw_linear *l) { return l->wbytes + (l->bias ? sizeof(float) * (size_t)l->out : 0); }
size_t sdw_linear_held_bytes(const sdw_linear *l)
{
    return l ? sdw_linear_bytes(l) - (l->borrowed ? l->wbytes : 0) : 0;
}

void sdw_linear_free(sdw_linear *l)
{
    if (!l) return;
    sdw_lbranches_free(l->branches);
    if (!l->borrowed) free(l->w);
    free(l->bias);
    free(l);
}
