/* cpu_backend.c: the CPU backend object: one oneDNN engine and stream, the
 * primitive cache (one primitive per op and shape, reused every call), and
 * grow-only scratch buffers, so steady-state inference allocates nothing.
 * The ops themselves live in linear.c, conv2d.c, attention.c, elementwise.c. */
#include "backend/cpu_internal.h"
#include "backend/amx.h"
#include <time.h>
#include "core/log.h"
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One of sdw_kernel_name's strings, in a list on the backend. */
struct sdw_kernel_name {
    struct sdw_kernel_name *next;
    const char *kernel, *under;
    char name[];
};

sdw_status sdw_dnnl_fail(dnnl_status_t s, const char *what)
{
    const char *why = "error";
    switch (s) {
    case dnnl_out_of_memory: return sdw_fail(SDW_ERR_NOMEM, "oneDNN %s: out of memory", what);
    case dnnl_invalid_arguments: why = "invalid arguments"; break;
    case dnnl_unimplemented: why = "unimplemented"; break;
    case dnnl_runtime_error: why = "runtime error"; break;
    default: break;
    }
    return sdw_fail(SDW_ERR_BACKEND, "oneDNN %s: %s (status %d)", what, why, (int)s);
}

sdw_status sdw_backend_create(sdw_precision precision, sdw_backend **out)
{
    *out = NULL;
    sdw_backend *be = calloc(1, sizeof *be);
    if (!be) return sdw_fail(SDW_ERR_NOMEM, "backend: out of memory");
    be->precision = sdw_precision_resolve(precision);
    sdw_backend_set_attention_budget(be, 0);
    sdw_backend_set_own_attention(be, true);
    be->table_size = 64;
    be->table = calloc(be->table_size, sizeof *be->table);
    sdw_status st = SDW_OK;
    /* oneDNN has bf16 kernels (native or emulated) from AVX-512 on; below it
     * every bf16 primitive would fail, so say so once, here. */
    unsigned isa = (unsigned)dnnl_get_effective_cpu_isa(), need = (unsigned)dnnl_cpu_isa_avx512_core;
    if (be->precision == SDW_PRECISION_BF16 && (isa & need) != need)
        st = sdw_fail(SDW_ERR_UNSUPPORTED, "bf16 precision needs AVX-512 (this CPU: %s); use f32",
                      sdw_cpu_isa_name());
    else if (!be->table) st = sdw_fail(SDW_ERR_NOMEM, "backend: out of memory");
    else if (dnnl_engine_create(&be->engine, dnnl_cpu, 0) != dnnl_success)
        st = sdw_fail(SDW_ERR_BACKEND, "oneDNN: cannot create the CPU engine");
    else if (dnnl_stream_create(&be->stream, be->engine, dnnl_stream_default_flags) != dnnl_success)
        st = sdw_fail(SDW_ERR_BACKEND, "oneDNN: cannot create a stream");
    if (st != SDW_OK) {
        sdw_backend_free(be);
        return st;
    }
    *out = be;
    return SDW_OK;
}

static void prim_free(sdw_prim *p)
{
    if (p->prim) dnnl_primitive_destroy(p->prim);
    for (int i = 0; i < SDW_ARG_COUNT; i++)
        if (p->mem[i]) dnnl_memory_destroy(p->mem[i]);
    if (p->scratch_mem) dnnl_memory_destroy(p->scratch_mem);
    if (p->wreorder) dnnl_primitive_destroy(p->wreorder);
    if (p->wstored) dnnl_memory_destroy(p->wstored);
    if (p->walt) dnnl_memory_destroy(p->walt);
    free(p);
}

void sdw_backend_free(sdw_backend *be)
{
    if (!be) return;
    for (int i = 0; i < be->n_tstreams; i++) dnnl_stream_destroy(be->tstreams[i]);
    free(be->tstreams);
    for (size_t i = 0; be->table && i < be->table_size; i++) {
        for (sdw_prim *p = be->table[i], *next; p; p = next) {
            next = p->next;
            prim_free(p);
        }
    }
    free(be->table);
    free(be->shapes);
    for (struct sdw_kernel_name *n = be->names, *next; n; n = next) {
        next = n->next;
        free(n);
    }
    for (int i = 0; i < SDW_SCR_COUNT; i++) free(be->scratch[i].p);
    if (be->stream) dnnl_stream_destroy(be->stream);
    if (be->engine) dnnl_engine_destroy(be->engine);
    free(be);
}

sdw_precision sdw_backend_precision(const sdw_backend *be) { return be->precision; }
void sdw_backend_set_weight_type(sdw_backend *be, sdw_weight_type t) { be->weight_type = t; }
sdw_weight_type sdw_backend_weight_type(const sdw_backend *be) { return be->weight_type; }
double sdw_backend_flops(const sdw_backend *be) { return be->flops; }
void sdw_backend_op_stats(const sdw_backend *be, sdw_op_stats *out) { *out = be->ops; }

double sdw_be_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

void sdw_count_op(sdw_backend *be, sdw_op_kind k, double t0, double flops, const char *path,
                  const int dims[SDW_OP_DIMS])
{
    const double dt = sdw_be_now() - t0;
    be->flops += flops;
    be->ops.flops[k] += flops;
    be->ops.seconds[k] += dt;
    be->ops.calls[k]++;
    if (!be->shapes) return;
    int i = 0;
    for (; i < be->n_shapes; i++) {
        const sdw_op_shape *e = &be->shapes[i];
        if (e->kind == k && e->path == path && !memcmp(e->dims, dims, sizeof e->dims)) break;
    }
    if (i == be->n_shapes) {
        if (i == SDW_MAX_SHAPES) return;
        be->shapes[be->n_shapes++] = (sdw_op_shape){ .kind = k, .path = path };
        memcpy(be->shapes[i].dims, dims, sizeof be->shapes[i].dims);
    }
    be->shapes[i].seconds += dt;
    be->shapes[i].flops += flops;
    be->shapes[i].calls++;
}

const char *sdw_kernel_name(sdw_backend *be, const char *kernel, const char *under)
{
    if (!be->shapes || !under) return kernel;
    struct sdw_kernel_name *n = be->names;
    while (n && !(strcmp(n->kernel, kernel) == 0 && strcmp(n->under, under) == 0)) n = n->next;
    if (n) return n->name;
    const size_t len = strlen(kernel) + 2 + strlen(under) + 1;
    if (!(n = malloc(sizeof *n + len))) return kernel;
    snprintf(n->name, len, "%s: %s", kernel, under);
    n->kernel = kernel; /* a literal */
    n->under = n->name + strlen(kernel) + 2; /* under's text: under itself may not outlive the call */
    n->next = be->names;
    be->names = n;
    return n->name;
}

sdw_status sdw_backend_track_shapes(sdw_backend *be, bool on)
{
    free(be->shapes);
    be->shapes = NULL;
    be->n_shapes = 0;
    if (on && !(be->shapes = calloc(SDW_MAX_SHAPES, sizeof *be->shapes)))
        return sdw_fail(SDW_ERR_NOMEM, "backend: out of memory");
    return SDW_OK;
}

static int slower_first(const void *a, const void *b)
{
    const double x = ((const sdw_op_shape *)a)->seconds, y = ((const sdw_op_shape *)b)->seconds;
    return x < y ? 1 : x > y ? -1 : 0;
}

int sdw_backend_shapes(const sdw_backend *be, sdw_op_shape *out, int max)
{
    if (!be->shapes) return 0;
    qsort(be->shapes, (size_t)be->n_shapes, sizeof *be->shapes, slower_first);
    for (int i = 0; i < be->n_shapes && i < max; i++) out[i] = be->shapes[i];
    return be->n_shapes;
}
void sdw_backend_reset_flops(sdw_backend *be) { be->flops = 0; }

void sdw_backend_set_attention_budget(sdw_backend *be, size_t bytes)
{
    size_t threads = (size_t)omp_get_max_threads();
    be->attn_budget = bytes ? bytes : SDW_ATTN_BUDGET_PER_THREAD * (threads < 32 ? threads : 32);
}

bool sdw_backend_set_own_attention(sdw_backend *be, bool on)
{
    /* In bf16, oneDNN's ISA cap (ONEDNN_MAX_CPU_ISA) applies here too, so
     * one setting makes a machine without AMX (dot products) or without
     * AVX-512-BF16 (oneDNN's matmuls) of this one. In f32, below
     * AVX2 + FMA attention_flash.c would run the clone whose multiply-adds
     * are libm calls, far slower than the oneDNN path. */
    if (be->precision == SDW_PRECISION_F32)
        be->own_attention = on && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    else
        be->own_attention = on && (sdw_amx_usable() || sdw_cpu_has_native_bf16());
    return be->own_attention;
}

sdw_status sdw_check_not_parallel(const char *op)
{
    /* Inside a parallel region oneDNN runs a primitive on one thread, and one
     * made for several then computes only the first thread's share. */
    if (omp_in_parallel()) return sdw_fail(SDW_ERR_INVALID_ARG, "%s: called inside an OpenMP parallel region", op);
    return SDW_OK;
}

void *sdw_scratch(sdw_backend *be, int slot, size_t bytes)
{
    sdw_buf *b = &be->scratch[slot];
    if (b->bytes >= bytes && b->p) return b->p;
    free(b->p);
    size_t sz = (bytes + 63) & ~(size_t)63;
    b->p = aligned_alloc(64, sz ? sz : 64);
    b->bytes = b->p ? sz : 0;
    if (!b->p) sdw_fail(SDW_ERR_NOMEM, "backend: cannot allocate %zu bytes of scratch", bytes);
    return b->p;
}

/* ---- primitive cache ---- */

static uint64_t key_hash(const int64_t key[SDW_KEY_MAX])
{
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < SDW_KEY_MAX; i++) {
        h ^= (uint64_t)key[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static bool key_match(const sdw_prim *p, const int64_t key[SDW_KEY_MAX], const dnnl_memory_desc_t *wmd)
{
    if (memcmp(p->key, key, sizeof p->key) != 0 || p->has_wmd != (wmd != NULL)) return false;
    return !wmd || dnnl_memory_desc_equal(&p->wmd, wmd);
}

static sdw_status table_insert(sdw_backend *be, sdw_prim *p)
{
    if (be->count + 1 > be->table_size) {
        size_t n = be->table_size * 2;
        sdw_prim **t = calloc(n, sizeof *t);
        if (!t) return sdw_fail(SDW_ERR_NOMEM, "backend: out of memory");
        for (size_t i = 0; i < be->table_size; i++) {
            for (sdw_prim *q = be->table[i], *next; q; q = next) {
                next = q->next;
                size_t b = key_hash(q->key) & (n - 1);
                q->next = t[b];
                t[b] = q;
            }
        }
        free(be->table);
        be->table = t;
        be->table_size = n;
    }
    size_t b = key_hash(p->key) & (be->table_size - 1);
    p->next = be->table[b];
    be->table[b] = p;
    be->count++;
    return SDW_OK;
}

static bool is_ref(dnnl_primitive_desc_t pd)
{
    const char *impl = NULL;
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    return impl && strncmp(impl, "ref", 3) == 0;
}

/* The attributes every primitive gets: the scratchpad from our grow-only
 * buffer, not a per-call allocation; with SDW_PRIM_SUM, the result added to
 * what dst holds; with SDW_PRIM_GELU_TANH, GELU of it. */
static dnnl_status_t make_attr(int64_t flags, dnnl_primitive_attr_t *out)
{
    dnnl_primitive_attr_t attr;
    dnnl_post_ops_t po = NULL;
    dnnl_status_t s = dnnl_primitive_attr_create(&attr);
    if (s != dnnl_success) return s;
    s = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (s == dnnl_success && (flags & (SDW_PRIM_SUM | SDW_PRIM_GELU_TANH))) {
        s = dnnl_post_ops_create(&po);
        if (s == dnnl_success && (flags & SDW_PRIM_SUM)) s = dnnl_post_ops_append_sum(po, 1.0f);
        if (s == dnnl_success && (flags & SDW_PRIM_GELU_TANH))
            s = dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_gelu_tanh, 0.0f, 0.0f);
        if (s == dnnl_success) s = dnnl_primitive_attr_set_post_ops(attr, po);
        if (po) dnnl_post_ops_destroy(po);
    }
    if (s != dnnl_success) dnnl_primitive_attr_destroy(attr);
    else *out = attr;
    return s;
}

static sdw_status make_pd(sdw_backend *be, const void *desc, int64_t flags, dnnl_primitive_desc_t *pd)
{
    dnnl_primitive_attr_t attr;
    *pd = NULL;
    SDW_DNNL(make_attr(flags, &attr), "attribute");
    dnnl_status_t s = dnnl_primitive_desc_create(pd, desc, attr, be->engine, NULL);
    dnnl_primitive_attr_destroy(attr);
    if (s != dnnl_success) *pd = NULL;
    return s == dnnl_success ? SDW_OK : sdw_dnnl_fail(s, "primitive descriptor");
}

static sdw_status make_mem(sdw_backend *be, const dnnl_memory_desc_t *md, dnnl_memory_t *m)
{
    *m = NULL;
    if (!md || md->ndims == 0) return SDW_OK;
    SDW_DNNL(dnnl_memory_create(m, md, be->engine, DNNL_MEMORY_NONE), "memory");
    return SDW_OK;
}

static sdw_status prim_build(sdw_backend *be, sdw_prim *p, dnnl_primitive_desc_t pd, const dnnl_memory_desc_t *wmd)
{
    SDW_DNNL(dnnl_primitive_create(&p->prim, pd), "primitive");
    /* Ask the primitive's own descriptor: the name must outlive pd. */
    const_dnnl_primitive_desc_t own;
    if (dnnl_primitive_get_primitive_desc(p->prim, &own) == dnnl_success)
        dnnl_primitive_desc_query(own, dnnl_query_impl_info_str, 0, &p->impl);
    static const dnnl_query_t q[SDW_ARG_COUNT] = { dnnl_query_src_md, dnnl_query_weights_md,
                                                   dnnl_query_weights_md, dnnl_query_dst_md };
    static const int idx[SDW_ARG_COUNT] = { 0, 0, 1, 0 };
    for (int i = 0; i < SDW_ARG_COUNT; i++)
        SDW_TRY(make_mem(be, dnnl_primitive_desc_query_md(pd, q[i], idx[i]), &p->mem[i]));
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    SDW_TRY(make_mem(be, smd, &p->scratch_mem));
    p->scratch_bytes = p->scratch_mem ? dnnl_memory_desc_get_size(smd) : 0;

    const dnnl_memory_desc_t *want = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    if (wmd && !dnnl_memory_desc_equal(want, wmd)) {
        dnnl_primitive_desc_t rpd;
        SDW_DNNL(dnnl_reorder_primitive_desc_create(&rpd, wmd, be->engine, want, be->engine, NULL),
                 "weights reorder");
        dnnl_status_t s = dnnl_primitive_create(&p->wreorder, rpd);
        dnnl_primitive_desc_destroy(rpd);
        if (s != dnnl_success) return sdw_dnnl_fail(s, "weights reorder");
        SDW_TRY(make_mem(be, wmd, &p->wstored));
        SDW_TRY(make_mem(be, want, &p->walt));
        p->walt_bytes = dnnl_memory_desc_get_size(want);
    }
    return SDW_OK;
}

sdw_prim *sdw_prim_find(sdw_backend *be, const int64_t key[SDW_KEY_MAX], const dnnl_memory_desc_t *wmd)
{
    size_t b = key_hash(key) & (be->table_size - 1);
    for (sdw_prim *p = be->table[b]; p; p = p->next)
        if (key_match(p, key, wmd)) return p;
    return NULL;
}

static sdw_status prim_insert(sdw_backend *be, const int64_t key[SDW_KEY_MAX], const dnnl_memory_desc_t *wmd,
                              dnnl_primitive_desc_t pd, sdw_prim **out);

sdw_status sdw_prim_create(sdw_backend *be, const int64_t key[SDW_KEY_MAX], const dnnl_memory_desc_t *wmd,
                           const void *desc, const void *desc_any, sdw_prim **out)
{
    /* The stored layout was chosen for a representative size; a few shapes
     * (e.g. bf16 convs at 256x256 and up) only have a reference kernel for
     * it. Those get the layout they prefer and a per-call weights reorder,
     * which is far cheaper than the reference kernel. */
    dnnl_primitive_desc_t pd = NULL, pd_any = NULL;
    sdw_status st = make_pd(be, desc, key[SDW_KEY_FLAGS], &pd);
    if ((st != SDW_OK || is_ref(pd)) && desc_any && make_pd(be, desc_any, key[SDW_KEY_FLAGS], &pd_any) == SDW_OK) {
        if (!is_ref(pd_any) || !pd) {
            if (pd) dnnl_primitive_desc_destroy(pd);
            pd = pd_any;
            pd_any = NULL;
        }
    }
    if (pd_any) dnnl_primitive_desc_destroy(pd_any);
    if (!pd) return st;
    sdw_clear_error();
    return prim_insert(be, key, wmd, pd, out);
}

sdw_status sdw_prim_create_reorder(sdw_backend *be, const int64_t key[SDW_KEY_MAX], const dnnl_memory_desc_t *from,
                                   const dnnl_memory_desc_t *to, sdw_prim **out)
{
    dnnl_primitive_attr_t attr;
    dnnl_primitive_desc_t pd = NULL;
    SDW_DNNL(make_attr(key[SDW_KEY_FLAGS], &attr), "attribute");
    dnnl_status_t s = dnnl_reorder_primitive_desc_create(&pd, from, be->engine, to, be->engine, attr);
    dnnl_primitive_attr_destroy(attr);
    if (s != dnnl_success) return sdw_dnnl_fail(s, "reorder");
    return prim_insert(be, key, NULL, pd, out);
}

sdw_status sdw_prim_mark_unsupported(sdw_backend *be, const int64_t key[SDW_KEY_MAX], sdw_prim **out)
{
    sdw_prim *p = calloc(1, sizeof *p);
    if (!p) return sdw_fail(SDW_ERR_NOMEM, "backend: out of memory");
    memcpy(p->key, key, sizeof p->key);
    sdw_status st = table_insert(be, p);
    if (st != SDW_OK) free(p);
    else *out = p;
    return st;
}

/* Builds the primitive of pd (which it destroys) and caches it under key. */
static sdw_status prim_insert(sdw_backend *be, const int64_t key[SDW_KEY_MAX], const dnnl_memory_desc_t *wmd,
                              dnnl_primitive_desc_t pd, sdw_prim **out)
{
    sdw_status st;
    sdw_prim *p = calloc(1, sizeof *p);
    if (!p) {
        dnnl_primitive_desc_destroy(pd);
        return sdw_fail(SDW_ERR_NOMEM, "backend: out of memory");
    }
    memcpy(p->key, key, sizeof p->key);
    p->has_wmd = wmd != NULL;
    if (wmd) p->wmd = *wmd;
    st = prim_build(be, p, pd, wmd);
    dnnl_primitive_desc_destroy(pd);
    if (st == SDW_OK) st = table_insert(be, p);
    if (st != SDW_OK) {
        prim_free(p);
        return st;
    }
    static const char *const op_name[] = { "?", "linear", "conv", "matmul", "winograd conv", "reorder" };
    SDW_DEBUG("backend: %s primitive %s%s", op_name[key[0] >= 1 && key[0] <= SDW_OP_REORDER ? key[0] : 0],
              p->impl ? p->impl : "?",
              p->wreorder ? " (weights reordered per call)" : "");
    *out = p;
    return SDW_OK;
}

static sdw_status set_handle(dnnl_memory_t m, const void *ptr)
{
    /* oneDNN takes a non-const handle; primitives never write their inputs. */
    SDW_DNNL(dnnl_memory_set_data_handle(m, (void *)(uintptr_t)ptr), "set data handle");
    return SDW_OK;
}

sdw_status sdw_prim_exec(sdw_backend *be, sdw_prim *p, const void *src, const void *wei, const void *bias,
                         void *dst)
{
    dnnl_exec_arg_t args[SDW_ARG_COUNT + 1];
    static const int arg_id[SDW_ARG_COUNT] = { DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_BIAS, DNNL_ARG_DST };
    const void *ptr[SDW_ARG_COUNT] = { src, wei, bias, dst };
    int n = 0;
    if (p->wreorder) {
        void *alt = sdw_scratch(be, SDW_SCR_WEIGHTS, p->walt_bytes);
        if (!alt) return SDW_ERR_NOMEM;
        SDW_TRY(set_handle(p->wstored, wei));
        SDW_TRY(set_handle(p->walt, alt));
        dnnl_exec_arg_t rargs[2] = { { DNNL_ARG_FROM, p->wstored }, { DNNL_ARG_TO, p->walt } };
        SDW_DNNL(dnnl_primitive_execute(p->wreorder, be->stream, 2, rargs), "weights reorder");
        ptr[SDW_ARG_WEI] = alt;
    }
    for (int i = 0; i < SDW_ARG_COUNT; i++) {
        if (!p->mem[i]) continue;
        SDW_TRY(set_handle(p->mem[i], ptr[i]));
        args[n++] = (dnnl_exec_arg_t){ arg_id[i], p->mem[i] };
    }
    if (p->scratch_mem) {
        void *s = sdw_scratch(be, SDW_SCR_ONEDNN, p->scratch_bytes);
        if (!s) return SDW_ERR_NOMEM;
        SDW_TRY(set_handle(p->scratch_mem, s));
        args[n++] = (dnnl_exec_arg_t){ DNNL_ARG_SCRATCHPAD, p->scratch_mem };
    }
    SDW_DNNL(dnnl_primitive_execute(p->prim, be->stream, n, args), "execute");
    SDW_DNNL(dnnl_stream_wait(be->stream), "stream wait");
    return SDW_OK;
}

sdw_status sdw_backend_thread_streams(sdw_backend *be, int n)
{
    if (n <= be->n_tstreams) return SDW_OK;
    dnnl_stream_t *t = realloc(be->tstreams, sizeof *t * (size_t)n);
    if (!t) return sdw_fail(SDW_ERR_NOMEM, "backend: out of memory");
    be->tstreams = t;
    for (; be->n_tstreams < n; be->n_tstreams++)
        SDW_DNNL(dnnl_stream_create(&t[be->n_tstreams], be->engine, dnnl_stream_default_flags), "stream");
    return SDW_OK;
}

sdw_status sdw_prim_exec_thread(sdw_backend *be, const sdw_prim *p, int tid, void *scratchpad, const void *src,
                                const void *wei, void *dst)
{
    /* Memory objects of its own: the cached ones are shared by all threads. */
    const void *ptr[SDW_ARG_COUNT] = { src, wei, NULL, dst };
    static const int arg_id[SDW_ARG_COUNT] = { DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_BIAS, DNNL_ARG_DST };
    dnnl_exec_arg_t args[SDW_ARG_COUNT + 1];
    int n = 0;
    dnnl_status_t s = dnnl_success;
    for (int i = 0; i < SDW_ARG_COUNT + 1 && s == dnnl_success; i++) {
        dnnl_memory_t shared = i < SDW_ARG_COUNT ? p->mem[i] : p->scratch_mem;
        if (!shared) continue;
        const dnnl_memory_desc_t *md;
        s = dnnl_memory_get_memory_desc(shared, &md);
        if (s != dnnl_success) break;
        void *h = i < SDW_ARG_COUNT ? (void *)(uintptr_t)ptr[i] : scratchpad;
        s = dnnl_memory_create(&args[n].memory, md, be->engine, h);
        if (s == dnnl_success) args[n++].arg = i < SDW_ARG_COUNT ? arg_id[i] : DNNL_ARG_SCRATCHPAD;
    }
    if (s == dnnl_success) s = dnnl_primitive_execute(p->prim, be->tstreams[tid], n, args);
    if (s == dnnl_success) s = dnnl_stream_wait(be->tstreams[tid]);
    for (int i = 0; i < n; i++) dnnl_memory_destroy(args[i].memory);
    return s == dnnl_success ? SDW_OK : sdw_dnnl_fail(s, "execute");
}

sdw_status sdw_reorder_into(sdw_backend *be, const dnnl_memory_desc_t *src_md, const void *src,
                            const dnnl_memory_desc_t *dst_md, void *dst)
{
    dnnl_primitive_desc_t rpd = NULL;
    dnnl_primitive_t r = NULL;
    dnnl_memory_t ms = NULL, md = NULL;
    dnnl_status_t s = dnnl_reorder_primitive_desc_create(&rpd, src_md, be->engine, dst_md, be->engine, NULL);
    if (s == dnnl_success) s = dnnl_primitive_create(&r, rpd);
    if (s == dnnl_success) s = dnnl_memory_create(&ms, src_md, be->engine, (void *)(uintptr_t)src);
    if (s == dnnl_success) s = dnnl_memory_create(&md, dst_md, be->engine, dst);
    if (s == dnnl_success) {
        dnnl_exec_arg_t args[2] = { { DNNL_ARG_FROM, ms }, { DNNL_ARG_TO, md } };
        s = dnnl_primitive_execute(r, be->stream, 2, args);
        if (s == dnnl_success) s = dnnl_stream_wait(be->stream);
    }
    if (md) dnnl_memory_destroy(md);
    if (ms) dnnl_memory_destroy(ms);
    if (r) dnnl_primitive_destroy(r);
    if (rpd) dnnl_primitive_desc_destroy(rpd);
    return s == dnnl_success ? SDW_OK : sdw_dnnl_fail(s, "weights reorder");
}

sdw_status sdw_reorder_weights(sdw_backend *be, const dnnl_memory_desc_t *src_md, const float *src,
                               const dnnl_memory_desc_t *dst_md, void **out, size_t *bytes)
{
    *out = NULL;
    size_t sz = dnnl_memory_desc_get_size(dst_md);
    void *buf = aligned_alloc(64, (sz + 63) & ~(size_t)63);
    if (!buf) return sdw_fail(SDW_ERR_NOMEM, "weights: cannot allocate %zu bytes", sz);
    sdw_status st = sdw_reorder_into(be, src_md, src, dst_md, buf);
    if (st != SDW_OK) {
        free(buf);
        return st;
    }
    *out = buf;
    *bytes = sz;
    return SDW_OK;
}
