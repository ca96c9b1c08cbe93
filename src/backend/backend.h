/* backend.h: the compute operations a model needs, behind one interface.
 *
 * Activations are f32, channels-last (NHWC; a token sequence is [B, T, C]).
 * Weights are prepared once at load into an opaque object that holds them in
 * the compute precision and in the layout the primitive prefers; the caller's
 * f32 copy can then be released. Convolutions and matmuls run on oneDNN: in
 * BF16 precision their inputs and weights are bf16 and they accumulate in f32;
 * everything else (norms, activations, softmax, elementwise) is f32 C.
 *
 * A backend is used by one thread at a time (the thread that owns the model),
 * and not from inside an OpenMP parallel region: the ops parallelise
 * themselves (linear / conv2d fail with SDW_ERR_INVALID_ARG there). Layers
 * are freed before the backend that made them. */
#ifndef SDW_BACKEND_H
#define SDW_BACKEND_H
#include "sdw.h"

typedef struct sdw_backend sdw_backend;

/* precision AUTO resolves here (sdw_precision_resolve). */
sdw_status sdw_backend_create(sdw_precision precision, sdw_backend **out);
void sdw_backend_free(sdw_backend *be);
sdw_precision sdw_backend_precision(const sdw_backend *be);
/* FLOPs (2 x multiply-adds) run by convolutions and matmuls since the last reset. */
double sdw_backend_flops(const sdw_backend *be);
void sdw_backend_reset_flops(sdw_backend *be);

/* Where the time goes: seconds, FLOPs and calls per kind of heavy op since
 * the backend was created (bench subtracts two readings). */
typedef enum { SDW_OPK_CONV, SDW_OPK_LINEAR, SDW_OPK_ATTENTION, SDW_OPK_COUNT } sdw_op_kind;
typedef struct {
    double seconds[SDW_OPK_COUNT], flops[SDW_OPK_COUNT];
    long calls[SDW_OPK_COUNT];
} sdw_op_stats;
void sdw_backend_op_stats(const sdw_backend *be, sdw_op_stats *out);
/* The same by shape and kernel, to find the slow ones (off by default: it
 * costs a table lookup per op). dims: conv N, H, W, cin, cout, kernel,
 * stride; matmul M, in, out; attention B, Tq, Tk, heads, head_dim, causal. */
#define SDW_OP_DIMS 7
typedef struct {
    sdw_op_kind kind;
    int dims[SDW_OP_DIMS];
    const char *path;   /* the kernel that ran: oneDNN's implementation name, or ours */
    double seconds, flops;
    long calls;
} sdw_op_shape;
/* Starts (clearing what was tracked) or stops tracking shapes. */
sdw_status sdw_backend_track_shapes(sdw_backend *be, bool on);
/* Up to max tracked shapes, slowest first; returns how many were tracked.
 * path stays valid while the backend lives. */
int sdw_backend_shapes(const sdw_backend *be, sdw_op_shape *out, int max);
/* Bytes of attention scores (f32 scores + bf16 probabilities) the threads'
 * blocks of queries x heads may use together, split evenly between the
 * OpenMP threads; 0 = the default, 2 MiB (about a core's L2) per thread.
 * Tests shrink it to exercise the block loops. */
void sdw_backend_set_attention_budget(sdw_backend *be, size_t bytes);
/* Attention on our own kernel where one exists for this precision and CPU
 * (bf16 with AMX or AVX-512-BF16: attention_bf16.c; f32 with AVX2 or
 * AVX-512: attention_flash.c), on by default; off, or elsewhere, on oneDNN matmuls
 * with a C softmax. Returns whether our kernel is in use. */
bool sdw_backend_set_own_attention(sdw_backend *be, bool on);

/* Small-image convolutions (the UNet's 16x16 and 8x8 levels) on our AMX
 * kernel where the CPU has one (bf16), on by default; off, on oneDNN.
 * Returns whether our kernel can now run. */
bool sdw_backend_set_own_conv(sdw_backend *be, bool on);

/* Linear layers on our own kernels where the CPU has one, on by default:
 * bf16 of 32 rows or more on AMX (linear_amx.c), f32 of 6 to 160 rows (256
 * for large layers) on AVX2 without AVX-512 (linear_avx2.c); off, on
 * oneDNN. Returns whether ours can now run. */
bool sdw_backend_set_own_linear(sdw_backend *be, bool on);

/* f32 3x3 convolutions of the larger layers on oneDNN's Winograd kernels
 * (conv_wino.c: AVX-512 only), on by default; off, direct. Returns whether
 * they can now run (f32 precision on a CPU that has them). */
bool sdw_backend_set_winograd(sdw_backend *be, bool on);
/* Bytes one Winograd call may work in (scratchpad and re-laid-out images);
 * larger images run in bands of rows. 0 = the default, 256 MiB. Tests
 * shrink it to exercise the bands. */
void sdw_backend_set_winograd_budget(sdw_backend *be, size_t bytes);
/* sdw_conv2d_forward_up2x's phases, on by default; off, it upsamples and
 * runs the 3x3 convolution (tests, A/B runs). */
void sdw_backend_set_upsample_phases(sdw_backend *be, bool on);
/* Bytes of one phase's output it works in (bands of rows past it); 0 = the
 * default, 32 MiB. Tests shrink it to exercise the bands. */
void sdw_backend_set_up2x_band_bytes(sdw_backend *be, size_t bytes);
/* Bytes of weights copies the layers made at first use (Winograd, upsampling phases),
 * on top of what creating them stored. */
size_t sdw_backend_derived_bytes(const sdw_backend *be);

/* The weight format models loaded on this backend store their large linear
 * layers in (sdw_weight_type; every loader reads it, sdw_wl_init). */
void sdw_backend_set_weight_type(sdw_backend *be, sdw_weight_type t);
sdw_weight_type sdw_backend_weight_type(const sdw_backend *be);

/* ---- linear: y[M, out] = x[M, in] @ W^T + b ---- */
typedef struct sdw_linear sdw_linear;
/* w is PyTorch's [out, in] row-major, bias [out] or NULL. Both are copied. */
sdw_status sdw_linear_create(sdw_backend *be, int in, int out, const float *w, const float *bias,
                             sdw_linear **out_layer);
/* y must not alias x. M may be anything; each new M creates (and caches) a primitive. */
sdw_status sdw_linear_forward(sdw_backend *be, const sdw_linear *l, const float *x, int64_t M, float *y);
/* y += x @ W^T + b in one pass (residual connections): y is read, not overwritten. */
sdw_status sdw_linear_forward_add(sdw_backend *be, const sdw_linear *l, const float *x, int64_t M, float *y);
/* Whether M rows run on our kernel (sdw_backend_set_own_linear). */
bool sdw_linear_uses_own_kernel(const sdw_backend *be, const sdw_linear *l, int64_t M);
int sdw_linear_in(const sdw_linear *l);
int sdw_linear_out(const sdw_linear *l);
size_t sdw_linear_bytes(const sdw_linear *l);   /* bytes of weights held */
void sdw_linear_free(sdw_linear *l);
/* For merging adapters (LoRA): the weights as PyTorch's [out, in] f32, read
 * back from or written into the stored layout; and the stored bytes
 * themselves, which a caller may copy and copy back to restore exactly. */
sdw_status sdw_linear_get_weights(sdw_backend *be, const sdw_linear *l, float *w);
sdw_status sdw_linear_set_weights(sdw_backend *be, sdw_linear *l, const float *w);
void *sdw_linear_stored(sdw_linear *l, size_t *bytes);

/* ---- linear layers whose weights stay in a compact format ----
 * GGUF's blocks (32 elements: Q4_0 ... Q8_0; 256: the K-quants Q2_K ...
 * Q6_K), the two float8s (1 element, 1 byte) and bf16 (for f32 precision,
 * where dense weights would take 4 bytes). A row of `in` weights is
 * in / block blocks; the layer holds the blocks and expands a panel of rows
 * at a time inside the matmul (linear_quant.c), in f32 or bf16 as the
 * precision says, so every sdw_linear_forward* entry point takes it. */
typedef enum {
    SDW_QT_Q4_0, SDW_QT_Q4_1, SDW_QT_Q5_0, SDW_QT_Q5_1, SDW_QT_Q8_0,
    SDW_QT_Q2_K, SDW_QT_Q3_K, SDW_QT_Q4_K, SDW_QT_Q5_K, SDW_QT_Q6_K,
    SDW_QT_F8_E4M3, SDW_QT_F8_E5M2, SDW_QT_BF16,
    SDW_QT_COUNT
} sdw_qtype;
const char *sdw_qtype_name(sdw_qtype t);   /* "q4_0", ..., "f8_e4m3", "bf16" */
/* Elements per block (32, 256 or 1), and the bytes of one in *block_bytes
 * (may be NULL); 0 for a value out of range. */
int sdw_qtype_block(sdw_qtype t, size_t *block_bytes);
/* Bytes of a row of n weights; 0 unless n is a positive multiple of the block. */
size_t sdw_qtype_row_bytes(sdw_qtype t, int n);
/* One row of n weights (a multiple of the block) from / into its blocks.
 * Decoding equals llama.cpp's reference dequantizers and torch's float8
 * casts bit for bit. Encoding follows llama.cpp's reference quantizers for
 * the 32-element blocks, a simpler min / max + least-squares fit for the
 * K-quants, and rounds to nearest even for float8 (saturating) and bf16. */
void sdw_qtype_dequantize_row(sdw_qtype t, const void *src, float *dst, int n);
void sdw_qtype_quantize_row(sdw_qtype t, const float *src, void *dst, int n);
/* A linear layer on out rows of blocks (rows: out * sdw_qtype_row_bytes(t,
 * in) bytes, PyTorch's [out, in] order) and bias [out] or NULL; both are
 * copied. sdw_linear_bytes counts the blocks; get_weights decodes them;
 * set_weights encodes into the same type, so the layer keeps its size (the
 * weights get_weights gave come back exactly, or for Q5_K / Q6_K within
 * 0.3% / 0.03% rel L2; but a LoRA delta smaller than the format's step is
 * mostly rounded away: a 1% delta keeps about 60% of itself in Q8_0, almost
 * none in 4-bit formats, see tests/test_linear_quant.c); sdw_linear_stored
 * returns the blocks, which copied back restore the layer exactly. */
sdw_status sdw_linear_create_quant(sdw_backend *be, int in, int out, sdw_qtype t, const void *rows,
                                   const float *bias, sdw_linear **out_layer);
/* Whether l holds compact weights, and their type in *t (may be NULL). */
bool sdw_linear_quant_type(const sdw_linear *l, sdw_qtype *t);
/* The same layer on rows it does not copy: they stay in the caller's
 * (read-only) memory, a file mapping that outlives the layer, so the system
 * pages them in on use and may drop them again. A layer about to be written
 * (set_weights, sdw_linear_stored) takes its own copy first. */
sdw_status sdw_linear_create_quant_borrowed(sdw_backend *be, int in, int out, sdw_qtype t, const void *rows,
                                            const float *bias, sdw_linear **out_layer);
bool sdw_linear_borrows(const sdw_linear *l);
/* sdw_linear_bytes less the borrowed rows: what the layer itself allocated. */
size_t sdw_linear_held_bytes(const sdw_linear *l);
/* Low-rank branches beside a layer's weights (linear_branch.c), how a LoRA
 * stays exact on compact weights: after the layer's product, every
 * sdw_linear_forward* entry point adds
 *   y[:, row0 : row0 + rows] += (x @ D^T) @ U^T
 * in f32 whatever the precision (for an activation or GEGLU result, before
 * the rounding to bf16 / the GEGLU). D is [r, in], U [rows, r] (any scale
 * folded in), both f32 and copied; U NULL makes a dense branch: D is then
 * the change's rows themselves, [rows, in], and r must equal rows. A layer
 * may hold several, at any rows, overlapping or not; FLOPs are counted
 * ("lora_branch"). get_weights / stored show the weights without them. */
sdw_status sdw_linear_add_branch(sdw_linear *l, int row0, int rows, int r, const float *D, const float *U);
void sdw_linear_clear_branches(sdw_linear *l);
size_t sdw_linear_branch_bytes(const sdw_linear *l);   /* held by the branches */

/* ---- conv2d: x [N, H, W, Cin] -> y [N, Ho, Wo, Cout] (NHWC) ---- */
typedef struct sdw_conv2d sdw_conv2d;
/* w is PyTorch's [Cout, Cin, kh, kw], bias [Cout] or NULL. Both are copied.
 * Ho = (H + 2*pad - kh) / stride + 1, likewise Wo. */
sdw_status sdw_conv2d_create(sdw_backend *be, int cin, int cout, int kh, int kw, int stride, int pad,
                             const float *w, const float *bias, sdw_conv2d **out_layer);
/* Asymmetric padding (the VAE encoder's downsample pads only bottom and right):
 * Ho = (H + pad_t + pad_b - kh) / stride + 1, Wo = (W + pad_l + pad_r - kw) / stride + 1. */
sdw_status sdw_conv2d_create_padded(sdw_backend *be, int cin, int cout, int kh, int kw, int stride, int pad_t,
                                    int pad_l, int pad_b, int pad_r, const float *w, const float *bias,
                                    sdw_conv2d **out_layer);
/* y must not alias x; Ho and Wo may be NULL. */
sdw_status sdw_conv2d_forward(sdw_backend *be, const sdw_conv2d *c, const float *x, int N, int H, int W,
                              float *y, int *Ho, int *Wo);
/* An activation already in the compute type of this backend's convolutions
 * (bf16 in BF16 precision, else f32), so the kernel producing it writes what
 * the convolution reads and no conversion pass runs in between. */
size_t sdw_act_bytes(const sdw_backend *be, size_t n);
/* silu(group_norm(x)) written as such an activation. */
void sdw_group_norm_silu_act(const sdw_backend *be, const float *x, int N, int64_t HW, int C, int groups,
                             const float *gamma, const float *beta, float eps, void *act);
/* The same of x + shift[n, c] (a ResNet's time embedding), at no extra pass. */
void sdw_group_norm_silu_shift_act(const sdw_backend *be, const float *x, const float *shift, int N, int64_t HW,
                                   int C, int groups, const float *gamma, const float *beta, float eps, void *act);
/* group_norm(x), layer_norm(x) and GEGLU(in) written as such activations,
 * for the matmul after them (sdw_linear_forward_act). */
void sdw_group_norm_act(const sdw_backend *be, const float *x, int N, int64_t HW, int C, int groups,
                        const float *gamma, const float *beta, float eps, void *act);
void sdw_layer_norm_act(const sdw_backend *be, const float *x, int64_t rows, int C, const float *gamma,
                        const float *beta, float eps, void *act);
/* sdw_geglu_act reads its input as an activation too (a matmul's, from
 * sdw_linear_forward_to_act). */
void sdw_geglu_act(const sdw_backend *be, const void *in_act, int64_t rows, int inner, void *act);
/* y = act @ W^T + b, or y += that when accumulate. */
sdw_status sdw_linear_forward_act(sdw_backend *be, const sdw_linear *l, const void *act, int64_t M, float *y,
                                  bool accumulate);
/* out = act @ W^T + b written as an activation, for the attention or GEGLU
 * after it (half the bytes of f32 to store in bf16). */
sdw_status sdw_linear_forward_to_act(sdw_backend *be, const sdw_linear *l, const void *act, int64_t M,
                                     void *out_act);
/* out = GELU(act @ W^T + b), tanh form, as an activation: oneDNN takes
 * the GELU as it writes the sums, our own kernels in a pass after. */
sdw_status sdw_linear_forward_gelu_act(sdw_backend *be, const sdw_linear *l, const void *act, int64_t M,
                                       void *out_act);
/* out = GEGLU(act @ W^T + b) [M, out / 2] as an activation, in one pass on
 * our AMX kernel; elsewhere through tmp_act [M, out] and sdw_geglu_act. */
sdw_status sdw_linear_forward_geglu_act(sdw_backend *be, const sdw_linear *l, const void *act, int64_t M,
                                        void *tmp_act, void *out_act);
/* GELU (tanh form) in place on an activation (a matmul's, from
 * sdw_linear_forward_to_act): the transformer families' MLPs. */
void sdw_gelu_tanh_act(const sdw_backend *be, void *act, size_t n);
/* x as an activation: converted in bf16 precision, copied in f32. */
void sdw_to_act(const sdw_backend *be, const float *x, size_t n, void *act);
/* The same on rows of cols elements, x_stride floats apart, into rows
 * act_stride elements apart; with gelu_tanh, GELU (tanh form) of them. */
void sdw_to_act_rows(const sdw_backend *be, const float *x, int64_t rows, int cols, int64_t x_stride, bool gelu_tanh,
                     void *act, int64_t act_stride);
/* y = conv(act), or y += conv(act) when accumulate. */
sdw_status sdw_conv2d_forward_act(sdw_backend *be, const sdw_conv2d *c, const void *act, int N, int H, int W,
                                  float *y, bool accumulate);
/* y [N, 2H, 2W, cout] = conv(upsample_nearest_2x(x)) for a 3x3 layer of
 * stride 1 and padding 1, x f32 [N, H, W, cin]: four 2x2 convolutions of
 * x, one per output phase (16 multiply-adds an output instead of 36;
 * counted as the 3x3 convolution's FLOPs, as Winograd's are). Their
 * weights are made at first use from the layer's and held beside them
 * (16/9 of their size, sdw_backend_derived_bytes), dropped when the
 * layer's weights change; large images run in bands of rows. A layer that
 * takes Winograd (f32) is upsampled and convolved instead. y must not
 * alias x. */
sdw_status sdw_conv2d_forward_up2x(sdw_backend *be, const sdw_conv2d *c, const float *x, int N, int H, int W,
                                   float *y);
/* A decoder's upsampling block with its two buffers, each big enough for
 * the upsampled image: the result of sdw_conv2d_forward_up2x on *x ends in
 * *x (the two may swap). Where the layer keeps its 3x3 (f32 on Winograd)
 * the upsampled input goes to *y instead of a scratch copy. */
sdw_status sdw_conv2d_upsample_block(sdw_backend *be, const sdw_conv2d *c, float **x, float **y, int N, int H,
                                     int W);
/* y += conv(x) in one pass (residual connections). */
sdw_status sdw_conv2d_forward_add(sdw_backend *be, const sdw_conv2d *c, const float *x, int N, int H, int W,
                                  float *y);
/* Whether an N x H x W input runs on our kernel (sdw_backend_set_own_conv). */
bool sdw_conv2d_uses_own_kernel(const sdw_backend *be, const sdw_conv2d *c, int N, int H, int W);
size_t sdw_conv2d_bytes(const sdw_conv2d *c);   /* weights held, the copies made at first use included */
void sdw_conv2d_free(sdw_conv2d *c);
/* As for linear, with PyTorch's [cout, cin, kh, kw] f32 weights. */
sdw_status sdw_conv2d_get_weights(sdw_backend *be, const sdw_conv2d *c, float *w);
sdw_status sdw_conv2d_set_weights(sdw_backend *be, sdw_conv2d *c, const float *w);
void *sdw_conv2d_stored(sdw_conv2d *c, size_t *bytes);   /* drops the layer's Winograd copy, remade at next use */
void sdw_conv2d_shape(const sdw_conv2d *c, int *cin, int *cout, int *kh, int *kw);

/* ---- multi-head attention ----
 * q: [B, Tq, heads*head_dim] with row stride q_stride floats (>= heads*head_dim),
 * k, v: [B, Tk, heads*head_dim] with row stride kv_stride; out: [B, Tq, heads*head_dim]
 * dense. softmax(q k^T / sqrt(head_dim)) v per head; causal masks key j > query i.
 * Memory stays bounded: queries are processed in blocks of rows x heads, never a
 * full heads x Tq x Tk score matrix. out must not alias q, k or v. */
sdw_status sdw_attention(sdw_backend *be, const float *q, int64_t q_stride, const float *k, const float *v,
                         int64_t kv_stride, int B, int Tq, int Tk, int heads, int head_dim, bool causal,
                         float *out);

/* sdw_attention on activations (sdw_act_bytes): q, k and v as the
 * projections wrote them (sdw_linear_forward_to_act), out as the output
 * projection reads it. Strides count elements. */
sdw_status sdw_attention_act(sdw_backend *be, const void *q, int64_t q_stride, const void *k, const void *v,
                             int64_t kv_stride, int B, int Tq, int Tk, int heads, int head_dim, bool causal,
                             void *act);
/* Attention with an additive score bias (T5's relative positions):
 * softmax(scale * q k^T + bias[h]) v per head, f32 in every precision.
 * Shapes and strides as sdw_attention; bias [heads, Tq, Tk] is shared by
 * the B batch items, or NULL for none. No mask. out must not alias q, k or v. */
sdw_status sdw_attention_bias(sdw_backend *be, const float *q, int64_t q_stride, const float *k, const float *v,
                              int64_t kv_stride, int B, int Tq, int Tk, int heads, int head_dim, float scale,
                              const float *bias, float *out);
/* ---- memory-bound ops, f32, y may equal x unless said otherwise ---- */
/* x [N, HW, C] NHWC; groups divide C. gamma / beta may be NULL (1 / 0). */
void sdw_group_norm(const float *x, int N, int64_t HW, int C, int groups, const float *gamma,
                    const float *beta, float eps, float *y);
/* silu(group_norm(x)) in one pass over memory (ResNet blocks). */
void sdw_group_norm_silu(const float *x, int N, int64_t HW, int C, int groups, const float *gamma,
                         const float *beta, float eps, float *y);
/* x [rows, C]; gamma / beta may be NULL. */
void sdw_layer_norm(const float *x, int64_t rows, int C, const float *gamma, const float *beta, float eps,
                    float *y);
void sdw_softmax_rows(float *x, int64_t rows, int n);
void sdw_gelu(float *x, size_t n);        /* erf form */
/* GEGLU: in [rows, 2 * inner] = (value, gate) -> out [rows, inner] = value * gelu(gate). */
void sdw_geglu(const float *in, int64_t rows, int inner, float *out);
void sdw_gelu_tanh(float *x, size_t n);   /* tanh approximation (T5, FLUX, SD3) */
/* RMS norm over rows of C (T5, FLUX / SD3 q-k norms): x / sqrt(mean(x^2) + eps)
 * * gamma; gamma may be NULL (1). y may equal x. */
void sdw_rms_norm(const float *x, int64_t rows, int C, const float *gamma, float eps, float *y);
void sdw_quick_gelu(float *x, size_t n);  /* x * sigmoid(1.702 x) */
void sdw_silu(float *x, size_t n);
void sdw_add(float *y, const float *a, const float *b, size_t n);
void sdw_mul(float *y, const float *a, const float *b, size_t n);
/* y[r, :] = x[r, :] + bias for rows of C: broadcasts a per-channel vector. */
void sdw_add_bias(float *x, int64_t rows, int C, const float *bias);
/* x [N, H, W, C] -> y [N, 2H, 2W, C]; y must not alias x. */
void sdw_upsample_nearest2x(const float *x, int N, int H, int W, int C, float *y);
/* The same, written as the next convolution's activation (sdw_act_bytes). */
void sdw_upsample_nearest2x_act(const sdw_backend *be, const float *x, int N, int H, int W, int C, void *act);
/* Channel concat of NHWC tensors: y[r] = [a[r] (Ca), b[r] (Cb)]; y must not alias. */
void sdw_concat_channels(const float *a, int Ca, const float *b, int Cb, int64_t rows, float *y);
#endif
