/* cond_list.c: see cond_list.h. The arithmetic follows ComfyUI's float32
 * tensors: mult = float(strength), then each feathered row or column times
 * float((1 / rr) * (t + 1)) (a Python float applied to a float32 tensor),
 * rows before columns; counts start at float(1e-37); out += output * mult. */
#include "pipeline/cond_list.h"
#include "pipeline/denoiser.h"
#include "pipeline/pipeline_comfy.h"
#include "core/error.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FEATHER 8   /* ComfyUI's fuzz: latent pixels an inner area edge fades over */

/* An entry of one side before the crop is clamped: ComfyUI compares the areas as given. */
typedef struct {
    int src;
    float strength;
    bool area;
    int x, y, w, h;
    bool ranged;
    float start, end;
} item;

static const char *side_name(int side) { return side == SDW_COND_POS ? "positive" : "negative"; }

const sdw_cond_entry *sdw_cond_source(const sdw_pipeline_params *p, int src)
{
    return src < p->n_positive ? &p->positive[src] : &p->negative[src - p->n_positive];
}

static sdw_status check_entry(const sdw_cond_entry *e, int side, int i, int h, int w)
{
    if (!(isfinite(e->strength) && e->strength >= 0))
        return sdw_fail(SDW_ERR_INVALID_ARG, "conditioning %s[%d]: strength must be a number >= 0 (got %g)",
                        side_name(side), i, e->strength);
    if (!isfinite(e->guidance))
        return sdw_fail(SDW_ERR_INVALID_ARG, "conditioning %s[%d]: guidance is not a number", side_name(side), i);
    if (e->area_w == 0 && e->area_h == 0) return SDW_OK;
    if (e->area_w <= 0 || e->area_h <= 0 || e->area_x < 0 || e->area_y < 0)
        return sdw_fail(SDW_ERR_INVALID_ARG, "conditioning %s[%d]: area %dx%d at %d,%d (latent pixels) needs a size "
                        "> 0 and an origin >= 0", side_name(side), i, e->area_w, e->area_h, e->area_x, e->area_y);
    if (e->area_x >= w || e->area_y >= h)
        return sdw_fail(SDW_ERR_INVALID_ARG, "conditioning %s[%d]: area origin %d,%d is outside the %dx%d latent",
                        side_name(side), i, e->area_x, e->area_y, w, h);
    return SDW_OK;
}

/* ComfyUI's area_inside: a lies within b. */
static bool inside(const item *a, const item *b)
{
    return a->y >= b->y && a->x >= b->x && a->y + a->h <= b->y + b->h && a->x + a->w <= b->x + b->w;
}

/* create_cond_with_same_area_if_none(list, c): unless the list has an entry
 * of c's very area, append one with c's area and strength and the
 * conditioning of the list's smallest entry holding c's area (else of its
 * first entry without an area; none of either: nothing). */
static void opposite(item *list, int *n, const item *c)
{
    if (!c->area) return;
    int s = -1;
    for (int i = 0; i < *n; i++) {
        const item *x = &list[i];
        if (x->area) {
            if (!inside(c, x)) continue;
            if (s < 0 || !list[s].area || (int64_t)list[s].h * list[s].w > (int64_t)x->h * x->w) s = i;
        } else if (s < 0) {
            s = i;
        }
    }
    if (s < 0) return;
    const item *sm = &list[s];
    if (sm->area && sm->x == c->x && sm->y == c->y && sm->w == c->w && sm->h == c->h) return;
    item out = *c;
    out.src = sm->src;
    list[(*n)++] = out;
}

/* get_area_and_mult's mult over the crop [e->h, e->w] of an [h, w] latent. */
static void make_mult(sdw_cond_eval *e, int h, int w)
{
    for (int i = 0; i < e->h * e->w; i++) e->mult[i] = e->strength;
    if (!e->area) return;
    /* Rows (dim 0), then columns (dim 1), as ComfyUI's loop over dims. */
    for (int dim = 0; dim < 2; dim++) {
        const int size = dim ? e->w : e->h, off = dim ? e->x : e->y, full = dim ? w : h;
        const int rr = size / 4 < FEATHER ? size / 4 : FEATHER;
        for (int edge = 0; edge < 2; edge++) {
            if (edge == 0 ? off == 0 : size + off >= full) continue;
            for (int t = 0; t < rr; t++) {
                const float f = (float)((1.0 / rr) * (t + 1));
                const int at = edge == 0 ? t : size - 1 - t;
                if (dim == 0)
                    for (int j = 0; j < e->w; j++) e->mult[at * e->w + j] *= f;
                else
                    for (int i = 0; i < e->h; i++) e->mult[i * e->w + at] *= f;
            }
        }
    }
}

static sdw_status nomem(void) { return sdw_fail(SDW_ERR_NOMEM, "out of memory laying out the conditioning lists"); }

/* The two sides' items after process_conds' opposite areas. */
static void make_items(const sdw_pipeline_params *p, item *pos, int *np, item *neg, int *nn)
{
    *np = *nn = 0;
    for (int side = 0; side < 2; side++) {
        const int n = side == SDW_COND_POS ? p->n_positive : p->n_negative;
        for (int i = 0; i < n; i++) {
            const sdw_cond_entry *e = side == SDW_COND_POS ? &p->positive[i] : &p->negative[i];
            item it = { side == SDW_COND_POS ? i : p->n_positive + i, e->strength, e->area_w > 0,
                        e->area_x, e->area_y, e->area_w, e->area_h, e->timestep_range, e->start_percent,
                        e->end_percent };
            if (side == SDW_COND_POS) pos[(*np)++] = it;
            else neg[(*nn)++] = it;
        }
    }
    /* Positive first, appending to the negative list; then the negative
     * list as it now is, appending to the positive one. */
    const int n_pos = *np;
    for (int i = 0; i < n_pos; i++) opposite(neg, nn, &pos[i]);
    const int n_neg = *nn;
    for (int i = 0; i < n_neg; i++) opposite(pos, np, &neg[i]);
}

static sdw_status add_evals(sdw_cond_plan *pl, const item *list, int n, int side)
{
    for (int i = 0; i < n; i++) {
        sdw_cond_eval *e = &pl->evals[pl->n++];
        const item *it = &list[i];
        e->side = side;
        e->src = it->src;
        e->strength = it->strength;
        e->area = it->area;
        e->ranged = it->ranged;
        e->start_percent = it->start;
        e->end_percent = it->end;
        e->active = true;
        pl->any_range |= it->ranged;
        e->x = it->area ? it->x : 0;
        e->y = it->area ? it->y : 0;
        /* get_area_and_mult: area[i] = min(size - offset, area[i]). */
        e->w = it->area ? (it->w < pl->w - it->x ? it->w : pl->w - it->x) : pl->w;
        e->h = it->area ? (it->h < pl->h - it->y ? it->h : pl->h - it->y) : pl->h;
        if (!(e->mult = malloc((size_t)e->h * e->w * sizeof(float)))) return nomem();
        make_mult(e, pl->h, pl->w);
        pl->used[e->src] = true;
        pl->any_area |= e->area;
        float *cnt = pl->cnt[side];
        for (int y = 0; y < e->h; y++)
            for (int x = 0; x < e->w; x++) cnt[(size_t)(e->y + y) * pl->w + e->x + x] += e->mult[y * e->w + x];
    }
    return SDW_OK;
}

sdw_status sdw_cond_plan_make(const sdw_pipeline_params *p, bool cfg, int B, int C, int h, int w, sdw_cond_plan *pl)
{
    memset(pl, 0, sizeof *pl);
    if (p->n_positive < 1 || !p->positive || p->n_negative < 0 || (p->n_negative > 0 && !p->negative))
        return sdw_fail(SDW_ERR_INVALID_ARG, "conditioning lists: %d positive and %d negative entries, lists %s",
                        p->n_positive, p->n_negative, p->positive ? "given" : "missing");
    if (cfg && p->n_negative == 0)
        return sdw_fail(SDW_ERR_INVALID_ARG, "conditioning lists: cfg %g > 1 needs a negative conditioning (the list "
                        "is empty)", p->cfg_scale);
    for (int i = 0; i < p->n_positive; i++) SDW_TRY(check_entry(&p->positive[i], SDW_COND_POS, i, h, w));
    for (int i = 0; i < p->n_negative; i++) SDW_TRY(check_entry(&p->negative[i], SDW_COND_NEG, i, h, w));
    /* Only comfy mode tells the denoisers each evaluation's sigma. */
    for (int i = 0; i < p->n_positive + p->n_negative && !p->comfy; i++)
        if (sdw_cond_source(p, i)->timestep_range)
            return sdw_fail(SDW_ERR_INVALID_ARG, "conditioning %s[%d]: timestep ranges need comfy mode",
                            side_name(i < p->n_positive ? SDW_COND_POS : SDW_COND_NEG),
                            i < p->n_positive ? i : i - p->n_positive);
    pl->n_src = p->n_positive + p->n_negative;
    pl->B = B;
    pl->C = C;
    pl->h = h;
    pl->w = w;
    /* Each side gains at most one entry per entry of the other (its own included on the way back). */
    const int cap = 2 * pl->n_src;
    item *pos = malloc((size_t)cap * sizeof *pos), *neg = malloc((size_t)cap * sizeof *neg);
    pl->evals = calloc((size_t)2 * cap, sizeof *pl->evals);
    pl->used = calloc((size_t)pl->n_src, sizeof *pl->used);
    const size_t hw = (size_t)h * w, n = (size_t)B * C * hw;
    sdw_status s = pos && neg && pl->evals && pl->used ? SDW_OK : nomem();
    for (int side = 0; side < (cfg ? 2 : 1) && s == SDW_OK; side++) {
        pl->cnt[side] = malloc(hw * sizeof(float));
        pl->sum[side] = malloc(n * sizeof(float));
        if (!pl->cnt[side] || !pl->sum[side]) s = nomem();
        else for (size_t i = 0; i < hw; i++) pl->cnt[side][i] = 1e-37f;
    }
    int np = 0, nn = 0;
    if (s == SDW_OK) make_items(p, pos, &np, neg, &nn);
    if (s == SDW_OK) s = add_evals(pl, pos, np, SDW_COND_POS);
    if (s == SDW_OK && cfg) s = add_evals(pl, neg, nn, SDW_COND_NEG);
    free(pos);
    free(neg);
    return s;
}

void sdw_cond_plan_free(sdw_cond_plan *pl)
{
    if (pl->evals)
        for (int k = 0; k < pl->n; k++) free(pl->evals[k].mult);
    free(pl->evals);
    free(pl->used);
    for (int side = 0; side < 2; side++) {
        free(pl->cnt[side]);
        free(pl->sum[side]);
    }
    memset(pl, 0, sizeof *pl);
}

sdw_status sdw_cond_check_crops(const sdw_cond_plan *pl, int mult, const char *what)
{
    for (int k = 0; k < pl->n; k++) {
        const sdw_cond_eval *e = &pl->evals[k];
        if (e->area && (e->w % mult || e->h % mult))
            return sdw_fail(SDW_ERR_UNSUPPORTED, "ConditioningSetArea: %s runs on areas of multiples of %d latent "
                            "pixels (%d image pixels); an area of the %s conditioning is %dx%d at %d,%d (latent "
                            "pixels, clamped to the image)", what, mult, mult * 8, side_name(e->side), e->w, e->h,
                            e->x, e->y);
    }
    return SDW_OK;
}

void sdw_cond_select(sdw_cond_plan *pl, const struct sdw_run *r)
{
    if (!pl->any_range) return;
    if (!pl->have_sigmas) {
        /* calculate_start_end_timesteps, once: the model sampling is fixed for the run */
        for (int k = 0; k < pl->n; k++) {
            sdw_cond_eval *e = &pl->evals[k];
            if (!e->ranged) continue;
            e->sigma_hi = (float)sdw_comfy_percent_to_sigma(r->m, r->p, e->start_percent);
            e->sigma_lo = (float)sdw_comfy_percent_to_sigma(r->m, r->p, e->end_percent);
        }
        pl->have_sigmas = true;
    }
    const float sigma = r->comfy_sigma;
    const size_t hw = (size_t)pl->h * pl->w;
    for (int side = 0; side < 2; side++)
        if (pl->cnt[side])
            for (size_t i = 0; i < hw; i++) pl->cnt[side][i] = 1e-37f;
    for (int k = 0; k < pl->n; k++) {
        sdw_cond_eval *e = &pl->evals[k];
        /* get_area_and_mult: None when timestep > timestep_start or < timestep_end */
        e->active = !e->ranged || !(sigma > e->sigma_hi || sigma < e->sigma_lo);
        if (!e->active) continue;
        float *cnt = pl->cnt[e->side];
        for (int y = 0; y < e->h; y++)
            for (int x = 0; x < e->w; x++) cnt[(size_t)(e->y + y) * pl->w + e->x + x] += e->mult[y * e->w + x];
    }
}

void sdw_cond_crop(const sdw_cond_plan *pl, int k, const float *x, int C, float *crop)
{
    const sdw_cond_eval *e = &pl->evals[k];
    for (int c = 0; c < C; c++)
        for (int y = 0; y < e->h; y++)
            memcpy(crop + ((size_t)c * e->h + y) * e->w, x + ((size_t)c * pl->h + e->y + y) * pl->w + e->x,
                   (size_t)e->w * sizeof *crop);
}

void sdw_cond_reset(sdw_cond_plan *pl)
{
    const size_t n = (size_t)pl->B * pl->C * pl->h * pl->w;
    for (int side = 0; side < 2; side++)
        if (pl->sum[side]) memset(pl->sum[side], 0, n * sizeof(float));
}

void sdw_cond_add(sdw_cond_plan *pl, int k, int b, const float *out)
{
    const sdw_cond_eval *e = &pl->evals[k];
    if (!e->active) return;
    const size_t hw = (size_t)pl->h * pl->w;
    float *sum = pl->sum[e->side] + (size_t)b * pl->C * hw;
    for (int c = 0; c < pl->C; c++)
        for (int y = 0; y < e->h; y++) {
            float *dst = sum + c * hw + (size_t)(e->y + y) * pl->w + e->x;
            const float *src = out + ((size_t)c * e->h + y) * e->w, *m = e->mult + (size_t)y * e->w;
            for (int x = 0; x < e->w; x++) dst[x] += src[x] * m[x];
        }
}

void sdw_cond_result(const sdw_cond_plan *pl, int side, int b, float *out)
{
    const size_t hw = (size_t)pl->h * pl->w;
    const float *sum = pl->sum[side] + (size_t)b * pl->C * hw, *cnt = pl->cnt[side];
    for (int c = 0; c < pl->C; c++)
        for (size_t i = 0; i < hw; i++) out[c * hw + i] = sum[c * hw + i] / cnt[i];
}
