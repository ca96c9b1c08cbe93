/* vae_tiled.c: the VAE decode in overlapping tiles; see vae.h. */
#include "models/vae.h"
#include "core/error.h"
#include <stdlib.h>
#include <string.h>

/* Tile starts along one axis of n latents: as few tiles as cover it with at
 * least `overlap` shared, spread evenly. Returns the count. */
static int tile_starts(int n, int tile, int overlap, int *starts, int max)
{
    if (n <= tile) {
        starts[0] = 0;
        return 1;
    }
    int k = 2;
    while (k < max && (int64_t)(k - 1) * (tile - overlap) + tile < n) k++;
    for (int i = 0; i < k; i++) starts[i] = (int)((int64_t)i * (n - tile) / (k - 1));
    return k;
}

/* Weight of pixel i of a tile edge-ramped over `ramp` pixels on the sides
 * that overlap a neighbour (lo / hi), 1 elsewhere; never 0. */
static float ramp_weight(int i, int len, int ramp, bool lo, bool hi)
{
    float wgt = 1.0f;
    if (lo && i < ramp) wgt = (i + 0.5f) / ramp;
    if (hi && len - 1 - i < ramp) {
        float r = (len - 1 - i + 0.5f) / ramp;
        if (r < wgt) wgt = r;
    }
    return wgt;
}

sdw_status sdw_vae_decode_tiled(sdw_backend *be, sdw_arena *arena, const sdw_vae *v, const float *z, int h, int w,
                                int tile, int overlap, float *img)
{
    if (h < 1 || w < 1 || tile < 8 || overlap < 0 || overlap >= tile)
        return sdw_fail(SDW_ERR_INVALID_ARG, "VAE tiling: bad tile %d / overlap %d for %dx%d latents", tile, overlap,
                        w, h);
    enum { MAX_TILES = 256 };
    int ys[MAX_TILES], xs[MAX_TILES];
    int ny = tile_starts(h, tile, overlap, ys, MAX_TILES), nx = tile_starts(w, tile, overlap, xs, MAX_TILES);
    if ((int64_t)(ny - 1) * (tile - overlap) + tile < h || (int64_t)(nx - 1) * (tile - overlap) + tile < w)
        return sdw_fail(SDW_ERR_INVALID_ARG, "VAE tiling: too many tiles for %dx%d latents", w, h);
    const sdw_vae_config *c = sdw_vae_get_config(v);
    int th = h < tile ? h : tile, tw = w < tile ? w : tile, lc = c->latent_channels, f = 1 << (c->n_levels - 1);
    int H = h * f, W = w * f, TH = th * f, TW = tw * f, ramp = overlap * f;
    float *zt = malloc((size_t)th * tw * lc * sizeof *zt), *out = malloc((size_t)TH * TW * 3 * sizeof *out);
    float *wsum = calloc((size_t)H * W, sizeof *wsum);
    sdw_status st = zt && out && wsum ? SDW_OK : sdw_fail(SDW_ERR_NOMEM, "out of memory in the tiled VAE decode");
    if (st == SDW_OK) memset(img, 0, (size_t)H * W * 3 * sizeof *img);
    for (int ty = 0; ty < ny && st == SDW_OK; ty++)
        for (int tx = 0; tx < nx && st == SDW_OK; tx++) {
            int y0 = ys[ty], x0 = xs[tx];
            for (int y = 0; y < th; y++)
                memcpy(zt + (size_t)y * tw * lc, z + ((size_t)(y0 + y) * w + x0) * lc, (size_t)tw * lc * sizeof *zt);
            sdw_arena_mark m = sdw_arena_save(arena);
            st = sdw_vae_decode(be, arena, v, zt, 1, th, tw, out);
            sdw_arena_restore(arena, m);
            for (int y = 0; y < TH && st == SDW_OK; y++) {
                float wy = ramp_weight(y, TH, ramp, ty > 0, ty < ny - 1);
                for (int x = 0; x < TW; x++) {
                    float wgt = wy * ramp_weight(x, TW, ramp, tx > 0, tx < nx - 1);
                    size_t o = (size_t)(y0 * f + y) * W + (size_t)x0 * f + x;
                    const float *src = out + ((size_t)y * TW + x) * 3;
                    for (int c = 0; c < 3; c++) img[o * 3 + c] += wgt * src[c];
                    wsum[o] += wgt;
                }
            }
        }
    if (st == SDW_OK)
        for (size_t i = 0; i < (size_t)H * W; i++)
            for (int c = 0; c < 3; c++) img[i * 3 + c] /= wsum[i];
    free(zt);
    free(out);
    free(wsum);
    return st;
}
