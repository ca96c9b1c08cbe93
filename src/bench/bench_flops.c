/* bench_flops.c: the FLOPs of one denoiser evaluation counted from the
 * architecture (bench.h: sdw_bench_unet_flops, sdw_bench_flux_flops,
 * sdw_bench_sd3_flops), as the
 * backend counts them while running: 2 x multiply-adds of every convolution
 * and linear, 4 Tq Tk D per attention head. `sd-worker bench` prints them
 * beside the counted figure; tests/test_bench.c holds the two equal. */
#include "bench/bench.h"

static double lin_f(double M, double in, double out) { return 2.0 * M * in * out; }
static double conv_f(double N, double px, double cin, double cout, double k) { return 2.0 * N * px * cin * cout * k * k; }

static double resnet_f(const sdw_unet_config *c, double N, double px, int cin, int cout)
{
    return conv_f(N, px, cin, cout, 3) + lin_f(N, c->time_embed_dim, cout) + conv_f(N, px, cout, cout, 3) +
           (cin != cout ? conv_f(N, px, cin, cout, 1) : 0);
}

static double transformer_f(double N, double T, double C, int depth, double n_ctx)
{
    double rows = N * T;
    double block = lin_f(rows, C, 3 * C)               /* self-attention q, k, v */
                   + 4.0 * N * T * T * C               /* q k^T and p v over all heads */
                   + lin_f(rows, C, C)                 /* its output */
                   + lin_f(rows, C, C)                 /* cross-attention q (k, v: once per image) */
                   + 4.0 * N * T * n_ctx * C
                   + lin_f(rows, C, C)
                   + lin_f(rows, C, 8 * C)             /* GEGLU in */
                   + lin_f(rows, 4 * C, C);            /* feed-forward out */
    return 2 * lin_f(rows, C, C) + depth * block;      /* proj_in, proj_out */
}

double sdw_bench_unet_flops(const sdw_unet_config *c, int N, int h, int w, int n_ctx)
{
    int nl = c->n_levels, L = c->layers_per_block, te = c->time_embed_dim, c0 = c->block_out[0];
    double n = N, H = h, W = w, f = 0;
    f += lin_f(n, c0, te) + lin_f(n, te, te);
    if (c->adm_in) f += lin_f(n, c->adm_in, te) + lin_f(n, te, te);
    f += conv_f(n, H * W, c->in_channels, c0, 3);
    int skip[SDW_UNET_MAX_LEVELS * 4 + 1], ns = 0, ch = c0;
    skip[ns++] = c0;
    for (int i = 0; i < nl; i++) {
        for (int j = 0; j < L; j++) {
            f += resnet_f(c, n, H * W, ch, c->block_out[i]);
            ch = c->block_out[i];
            if (c->depth[i]) f += transformer_f(n, H * W, ch, c->depth[i], n_ctx);
            skip[ns++] = ch;
        }
        if (i < nl - 1) {
            H /= 2;
            W /= 2;
            f += conv_f(n, H * W, ch, ch, 3);
            skip[ns++] = ch;
        }
    }
    int top = c->block_out[nl - 1];
    f += 2 * resnet_f(c, n, H * W, top, top) + transformer_f(n, H * W, top, c->mid_depth, n_ctx);
    ch = top;
    for (int i = 0; i < nl; i++) {
        int d = nl - 1 - i;
        for (int j = 0; j <= L; j++) {
            f += resnet_f(c, n, H * W, ch + skip[--ns], c->block_out[d]);
            ch = c->block_out[d];
            if (c->depth[d]) f += transformer_f(n, H * W, ch, c->depth[d], n_ctx);
        }
        if (i < nl - 1) {
            H *= 2;
            W *= 2;
            f += conv_f(n, H * W, ch, ch, 3);
        }
    }
    f += conv_f(n, H * W, c0, c->out_channels, 3);
    return f;
}

double sdw_bench_unet_context_flops(const sdw_unet_config *c, int N, int n_ctx)
{
    const int L = c->layers_per_block, top = c->block_out[c->n_levels - 1];
    double blocks_c = c->mid_depth * (double)top; /* sum of C over every transformer block */
    for (int i = 0; i < c->n_levels; i++) blocks_c += (2.0 * L + 1) * c->depth[i] * c->block_out[i];
    return lin_f((double)N * n_ctx, c->context_dim, 2 * blocks_c);
}

double sdw_bench_flux_flops(const sdw_flux_config *c, int n_img, int n_txt)
{
    double H = c->hidden, M = c->mlp_hidden, N = n_img, T = n_txt, L = N + T;
    /* The M = 1 part: time, guidance and pooled-text embedders, every modulation. */
    double f = lin_f(1, 256, H) + lin_f(1, H, H) + lin_f(1, c->vec_dim, H) + lin_f(1, H, H);
    if (c->guidance_embed) f += lin_f(1, 256, H) + lin_f(1, H, H);
    f += c->depth * 2 * lin_f(1, H, 6 * H) + c->depth_single * lin_f(1, H, 3 * H) + lin_f(1, H, 2 * H);
    f += lin_f(T, c->context_dim, H) + lin_f(N, c->in_channels, H);
    /* Double blocks: each stream's qkv, projection and MLP over its own
     * tokens (together: over all L), attention over the joint sequence. */
    f += c->depth * (lin_f(L, H, 3 * H) + 4.0 * L * L * H + lin_f(L, H, H) + lin_f(L, H, M) + lin_f(L, M, H));
    /* Single blocks: q|k|v|mlp from one linear, cat(attention, mlp) back. */
    f += c->depth_single * (lin_f(L, H, 3 * H + M) + 4.0 * L * L * H + lin_f(L, H + M, H));
    return f + lin_f(N, H, c->in_channels);
}

int sdw_bench_sd3_context(int t5_len) { return SDW_CLIP_CONTEXT + (t5_len > 0 ? t5_len : SDW_CLIP_CONTEXT); }

/* One stream's attention projections and MLP over its rows tokens. */
static double sd3_stream_f(double rows, double H)
{
    return lin_f(rows, H, 3 * H) + lin_f(rows, H, H) + lin_f(rows, H, 4 * H) + lin_f(rows, 4 * H, H);
}

double sdw_bench_sd3_flops(const sdw_mmdit_config *c, int n_img, int n_ctx)
{
    double H = c->hidden, N = n_img, T = n_ctx, L = N + T;
    /* The M = 1 part: time and pooled-text embedders, then the final modulation. */
    double f = lin_f(1, 256, H) + lin_f(1, H, H) + lin_f(1, c->pooled_dim, H) + lin_f(1, H, H) + lin_f(1, H, 2 * H);
    f += lin_f(N, (double)c->in_channels * c->patch * c->patch, H) + lin_f(T, c->joint_dim, H);
    for (int i = 0; i < c->depth; i++) {
        const bool last = i == c->depth - 1;
        f += lin_f(1, H, (c->dual[i] ? 9 : 6) * H) + lin_f(1, H, (last ? 2 : 6) * H);
        f += sd3_stream_f(N, H);
        /* Both streams' queries attend over all L tokens; the last block's context only lends k and v. */
        if (last) f += lin_f(T, H, 3 * H) + 4.0 * N * L * H;
        else f += sd3_stream_f(T, H) + 4.0 * L * L * H;
        if (c->dual[i]) f += lin_f(N, H, 3 * H) + 4.0 * N * N * H + lin_f(N, H, H);
    }
    return f + lin_f(N, H, (double)c->patch * c->patch * c->out_channels);
}
