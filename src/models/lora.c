/* lora.c: applying a set of adapters to a model's layers and undoing it
 * exactly.
 *
 * Dense layers (f32 or bf16 in oneDNN's layout) take the change merged:
 * every layer a set touches has its stored bytes copied once before the
 * first change; undo copies them back, so the base weights return bit for
 * bit whatever rounding the merge did. Merging a layer reads its weights
 * back as f32, adds each module's delta to its rows (q, k and v share one
 * stacked layer) and writes them into the stored layout.
 *
 * Compact layers (GGUF blocks, float8, bf16 under f32 precision:
 * sdw_linear_quant_type) are not merged: re-encoding W + delta rounds most
 * of a trained LoRA away (a change of 1% of W kept 2% of itself in Q4_0, 8%
 * in Q5_1, 27% in float8 E4M3, and Q8_0 added noise 0.37x the change), and
 * their rows may be a read-only file mapping. Each module becomes a branch
 * beside the layer instead (sdw_linear_add_branch: y[:, its rows] +=
 * (x @ D^T) @ U^T in f32), so the layer computes x @ (dequant(W) +
 * delta)^T to f32 rounding. Plain LoRA, LoHa and LoKr without Tucker cores
 * factor exactly (rank r, r1 r2, p q: sdw_lora_factor_rank); the rest
 * (DoRA, Tucker cores) and factors no thinner than the layer become a dense
 * branch holding the change's rows in f32 (DoRA's from the dequantized
 * weights plus the earlier modules on the layer). A plain LoRA's branch
 * holds just its file's factors, at any rank; any other branch may hold at
 * most DENSE_BRANCH_MAX values (16 MiB). Past that it would cost more
 * memory than compact weights save (a dense 3072 x 3072 FLUX layer: 36 MiB;
 * a rank 32 x 32 LoHa on it: 24 MiB), so that layer is merged and
 * re-encoded as before, with a warning naming it: DoRA and full-rank LoKr
 * on FLUX-sized layers go this way. Undo drops the branches. Which way a
 * layer went shows only in accuracy: the same modules count as applied
 * either way.
 *
 * Module keys (lora_keys.h) are matched against every name a model's layers
 * go by: SD's UNet by diffusers and LDM names, FLUX's transformer by BFL,
 * diffusers and XLabs names (lora_flux.h), SD3's by Stability and diffusers
 * names (lora_sd3.h), text encoders by transformers names ("0:" CLIP-L /
 * ViT-L, "1:" SDXL's or SD3's CLIP-G or FLUX's T5, "2:" T5 as sd-scripts'
 * lora_te3_). A LoRA for another family is refused (lora_family.h). */
#include "models/lora.h"
#include "core/error.h"
#include "core/log.h"
#include "io/safetensors.h"
#include "models/lora_delta.h"
#include "models/lora_family.h"
#include "models/lora_flux.h"
#include "models/lora_sd3.h"
#include "models/model.h"
#include "models/sd3_text.h"
#include "models/t5.h"
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    char key[320];
    char comp;                      /* 'u', '0', '1', '2' */
    const sdw_named_layer *layer;
    bool swap_halves;               /* the name's rows are the layer's halves swapped (lora_flux.h, lora_sd3.h) */
} target;

typedef struct {
    const sdw_named_layer *layer;
    void *copy;                     /* its stored bytes before any LoRA */
} saved;

typedef struct {
    char *path;
    float te, unet;
    struct stat st;
} applied_lora;

/* A dense branch (a change that does not factor) holds its rows in f32;
 * past this many values a layer is merged into its compact weights instead
 * (tests lower it: sdw_lora_set_dense_branch_max). */
#define DENSE_BRANCH_MAX ((size_t)1 << 22)
static size_t dense_branch_max = DENSE_BRANCH_MAX;

void sdw_lora_set_dense_branch_max(size_t values) { dense_branch_max = values ? values : DENSE_BRANCH_MAX; }

struct sdw_lora_state {
    target *targets;                /* sorted by key */
    int n_targets;
    sdw_layer_list aliases;         /* FLUX / SD3 layers under names the model does not list */
    saved *saved;
    int n_saved, cap_saved;
    sdw_linear **branched;          /* compact layers holding branches */
    int n_branched, cap_branched;
    applied_lora *set;              /* what the weights hold now */
    int n_set;
    sdw_lora_report *reports;
};

/* One module of one LoRA file, with its parts. */
typedef struct {
    char key[320];
    const sdw_st_tensor *part[SDW_LORA_ROLE_COUNT];
    bool known;                     /* under a prefix we understand */
    bool has_unknown_part;
    const target *t;                /* matched layer, or NULL */
    int lora;                       /* index in the request */
} module;

static int cmp_target(const void *a, const void *b) { return strcmp(((const target *)a)->key, ((const target *)b)->key); }

static sdw_status add_target(target **v, int *n, int *cap, char comp, const char *name, const sdw_named_layer *l)
{
    if (*n == *cap) {
        int c = *cap ? 2 * *cap : 512;
        target *p = realloc(*v, (size_t)c * sizeof *p);
        if (!p) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
        *v = p;
        *cap = c;
    }
    target *t = &(*v)[(*n)++];
    sdw_lora_layer_key(comp, name, t->key, sizeof t->key);
    t->comp = comp;
    t->layer = l;
    t->swap_halves = false;
    return SDW_OK;
}

static sdw_status add_list(target **v, int *n, int *cap, char comp, const sdw_layer_list *l)
{
    for (int i = 0; i < l->n; i++) SDW_TRY(add_target(v, n, cap, comp, l->v[i].name, &l->v[i]));
    return SDW_OK;
}

/* The LDM name of each UNet layer besides its diffusers one. */
static sdw_status add_unet(target **v, int *n, int *cap, const sdw_unet *u)
{
    const sdw_layer_list *ul = sdw_unet_layers(u);
    const sdw_unet_config *uc = sdw_unet_get_config(u);
    static const char ldm_prefix[] = "model.diffusion_model.";
    SDW_TRY(add_list(v, n, cap, 'u', ul));
    for (int i = 0; i < ul->n; i++) {
        const sdw_named_layer *l = &ul->v[i];
        char with_suffix[400], ldm[512];
        snprintf(with_suffix, sizeof with_suffix, "%s.weight", l->name);
        sdw_unet_ldm_name(uc, with_suffix, ldm, sizeof ldm);
        size_t len = strlen(ldm);
        if (strncmp(ldm, ldm_prefix, sizeof ldm_prefix - 1) || len < 7 + sizeof ldm_prefix) continue;
        ldm[len - 7] = 0;   /* ".weight" */
        SDW_TRY(add_target(v, n, cap, 'u', ldm + sizeof ldm_prefix - 1, l));
    }
    return SDW_OK;
}

/* Every layer under each name a LoRA may use for it. */
static sdw_status build_targets(sdw_model *m, struct sdw_lora_state *s)
{
    int cap = 0;
    target **v = &s->targets;
    int *n = &s->n_targets;
    if (m->text.te1) SDW_TRY(add_list(v, n, &cap, '0', &m->text.te1->layers));
    if (m->text.te2) SDW_TRY(add_list(v, n, &cap, '1', &m->text.te2->layers));
    if (m->t5) {
        /* FLUX's T5 is diffusers' text_encoder_2 and sd-scripts' lora_te3_. */
        if (!m->text.te2) SDW_TRY(add_list(v, n, &cap, '1', sdw_t5_layers(m->t5)));
        SDW_TRY(add_list(v, n, &cap, '2', sdw_t5_layers(m->t5)));
    }
    if (m->unet) SDW_TRY(add_unet(v, n, &cap, m->unet));
    if (m->sd3_text) {
        /* sd-scripts' lora_te1_ / te2_ / te3_, diffusers' text_encoder / _2 / _3. */
        const sdw_sd3_text *tx = m->sd3_text;
        if (tx->clip_l) SDW_TRY(add_list(v, n, &cap, '0', &tx->clip_l->layers));
        if (tx->clip_g) SDW_TRY(add_list(v, n, &cap, '1', &tx->clip_g->layers));
        if (tx->t5) SDW_TRY(add_list(v, n, &cap, '2', sdw_t5_layers(tx->t5)));
    }
    if (m->mmdit) {
        SDW_TRY(add_list(v, n, &cap, 'u', sdw_mmdit_layers(m->mmdit)));
        SDW_TRY(sdw_lora_sd3_aliases(m->mmdit, &s->aliases));
        SDW_TRY(add_list(v, n, &cap, 'u', &s->aliases));
        for (int i = *n - s->aliases.n; i < *n; i++) (*v)[i].swap_halves = true;
    }
    if (m->flux) {
        SDW_TRY(add_list(v, n, &cap, 'u', sdw_flux_layers(m->flux)));
        /* The alias list is complete before targets point into it. */
        SDW_TRY(sdw_lora_flux_aliases(m->flux, &s->aliases));
        SDW_TRY(add_list(v, n, &cap, 'u', &s->aliases));
        for (int i = *n - s->aliases.n; i < *n; i++)
            (*v)[i].swap_halves = !strcmp((*v)[i].layer->name, SDW_LORA_FLUX_SWAPPED);
    }
    qsort(s->targets, (size_t)s->n_targets, sizeof *s->targets, cmp_target);
    return SDW_OK;
}

static const target *find_target(const struct sdw_lora_state *s, const char *key)
{
    target probe;
    snprintf(probe.key, sizeof probe.key, "%s", key);
    return bsearch(&probe, s->targets, (size_t)s->n_targets, sizeof *s->targets, cmp_target);
}

static void *layer_ptr(const sdw_named_layer *l) { return l->linear ? (void *)l->linear : (void *)l->conv; }

static void *stored(const sdw_named_layer *l, size_t *bytes)
{
    return l->linear ? sdw_linear_stored(l->linear, bytes) : sdw_conv2d_stored(l->conv, bytes);
}

static sdw_status save_once(struct sdw_lora_state *s, const sdw_named_layer *l)
{
    for (int i = 0; i < s->n_saved; i++)
        if (layer_ptr(s->saved[i].layer) == layer_ptr(l)) return SDW_OK;
    if (s->n_saved == s->cap_saved) {
        int c = s->cap_saved ? 2 * s->cap_saved : 256;
        saved *p = realloc(s->saved, (size_t)c * sizeof *p);
        if (!p) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
        s->saved = p;
        s->cap_saved = c;
    }
    size_t bytes;
    void *data = stored(l, &bytes);
    if (!data) return sdw_fail(SDW_ERR_NOMEM, "out of memory copying weights for LoRA");
    void *copy = malloc(bytes);
    if (!copy) return sdw_fail(SDW_ERR_NOMEM, "out of memory saving weights for LoRA");
    memcpy(copy, data, bytes);
    s->saved[s->n_saved++] = (saved){ l, copy };
    return SDW_OK;
}

/* Back to the base weights, bit for bit. */
static void restore(struct sdw_lora_state *s)
{
    for (int i = 0; i < s->n_saved; i++) {
        size_t bytes;
        void *dst = stored(s->saved[i].layer, &bytes);
        memcpy(dst, s->saved[i].copy, bytes);
        free(s->saved[i].copy);
    }
    s->n_saved = 0;
    for (int i = 0; i < s->n_branched; i++) sdw_linear_clear_branches(s->branched[i]);
    s->n_branched = 0;
    for (int i = 0; i < s->n_set; i++) free(s->set[i].path);
    free(s->set);
    free(s->reports);
    s->set = NULL;
    s->reports = NULL;
    s->n_set = 0;
}

void sdw_lora_state_free(struct sdw_lora_state *s)
{
    if (!s) return;
    restore(s);
    free(s->saved);
    free(s->branched);
    free(s->targets);
    sdw_layer_list_free(&s->aliases);
    free(s);
}

static bool same_set(const struct sdw_lora_state *s, const sdw_lora_spec *l, int n)
{
    if (n != s->n_set) return false;
    for (int i = 0; i < n; i++) {
        struct stat st;
        const applied_lora *a = &s->set[i];
        if (strcmp(a->path, l[i].path) || a->te != l[i].te_strength || a->unet != l[i].unet_strength ||
            stat(l[i].path, &st) || st.st_ino != a->st.st_ino || st.st_size != a->st.st_size ||
            st.st_mtim.tv_sec != a->st.st_mtim.tv_sec || st.st_mtim.tv_nsec != a->st.st_mtim.tv_nsec)
            return false;
    }
    return true;
}

static void stem_of(const char *path, char *out, size_t n)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    snprintf(out, n, "%s", b);
    char *dot = strrchr(out, '.');
    if (dot && dot != out) *dot = 0;
}

/* A1111's LoRA hash: SHA-256 of everything after the safetensors header. */
static void addnet_hash(const sdw_safetensors *st, char out[16])
{
    out[0] = 0;
    if (!st->map || st->map_size < 8) return;
    const unsigned char *p = st->map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | p[i];
    if (hlen > st->map_size - 8) return;
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (!EVP_Digest(p + 8 + hlen, st->map_size - 8 - hlen, md, &mdlen, EVP_sha256(), NULL)) return;
    for (int i = 0; i < 6; i++) snprintf(out + 2 * i, 3, "%02x", md[i]);
}

char *sdw_lora_hashes(const sdw_lora_report *r, int n)
{
    size_t cap = 1;
    for (int i = 0; i < n; i++) cap += strlen(r[i].name) + strlen(r[i].hash12) + 4;
    char *s = malloc(cap);
    if (!s) return NULL;
    s[0] = 0;
    for (int i = 0; i < n; i++) {
        if (i) strcat(s, ", ");
        strcat(s, r[i].name);
        strcat(s, ": ");
        strcat(s, r[i].hash12);
    }
    return s;
}

static int cmp_module(const void *a, const void *b) { return strcmp(((const module *)a)->key, ((const module *)b)->key); }

/* Groups a file's tensors by module key. */
static sdw_status read_modules(const sdw_safetensors *st, module **out, int *n_out)
{
    module *v = calloc((size_t)st->n_tensors + 1, sizeof *v);
    if (!v) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    int n = 0;
    for (int i = 0; i < st->n_tensors; i++) {
        module cur = { 0 };
        sdw_lora_role role;
        cur.known = sdw_lora_split_name(st->tensors[i].name, cur.key, sizeof cur.key, &role);
        if (!cur.known) {
            snprintf(cur.key, sizeof cur.key, "?:%s", st->tensors[i].name);
            char *dot = strrchr(cur.key, '.');
            if (dot) *dot = 0;
        }
        module *m = NULL;
        for (int k = n - 1; k >= 0 && k >= n - 32 && !m; k--)   /* a module's parts sit together when sorted */
            if (!strcmp(v[k].key, cur.key)) m = &v[k];
        if (!m) {
            m = &v[n++];
            *m = cur;
        }
        if (role == SDW_LORA_UNKNOWN) m->has_unknown_part = true;
        else m->part[role] = &st->tensors[i];
    }
    qsort(v, (size_t)n, sizeof *v, cmp_module);
    /* Neighbours with equal keys (parts that sorted apart) are merged. */
    int w = 0;
    for (int i = 0; i < n; i++) {
        if (w && !strcmp(v[w - 1].key, v[i].key)) {
            for (int r = 0; r < SDW_LORA_ROLE_COUNT; r++)
                if (v[i].part[r]) v[w - 1].part[r] = v[i].part[r];
            v[w - 1].has_unknown_part |= v[i].has_unknown_part;
        } else v[w++] = v[i];
    }
    *out = v;
    *n_out = w;
    return SDW_OK;
}

static bool mergeable(const module *m)
{
    for (int r = 0; r < SDW_LORA_ROLE_COUNT; r++)
        if (m->part[r] && r != SDW_LORA_ALPHA && r != SDW_LORA_DORA_SCALE) return true;
    return false;
}

static sdw_lora_target_shape shape_of(const sdw_named_layer *l)
{
    if (l->linear) return (sdw_lora_target_shape){ l->rows, sdw_linear_in(l->linear), 1, 1 };
    int cin, cout, kh, kw;
    sdw_conv2d_shape(l->conv, &cin, &cout, &kh, &kw);
    return (sdw_lora_target_shape){ l->rows, cin, kh, kw };
}

static void free_parts(sdw_lora_parts *p)
{
    for (int r = 0; r < SDW_LORA_ROLE_COUNT; r++) free(p->t[r]);
    memset(p, 0, sizeof *p);
}

static sdw_status load_parts(const sdw_safetensors *st, const module *m, sdw_lora_parts *p)
{
    memset(p, 0, sizeof *p);
    for (int r = 0; r < SDW_LORA_ROLE_COUNT; r++) {
        const sdw_st_tensor *t = m->part[r];
        if (!t) continue;
        if (t->numel <= 0 || t->numel > ((int64_t)1 << 31) || t->ndim > 4) {
            free_parts(p);
            return sdw_fail(SDW_ERR_FORMAT, "LoRA module %s: tensor %s has an unusable shape", m->key, t->name);
        }
        p->t[r] = malloc((size_t)t->numel * sizeof(float));
        if (!p->t[r]) {
            free_parts(p);
            return sdw_fail(SDW_ERR_NOMEM, "out of memory");
        }
        sdw_status s = sdw_st_read_f32(st, t, p->t[r]);
        if (s != SDW_OK) {
            free_parts(p);
            return s;
        }
        p->numel[r] = t->numel;
        p->ndim[r] = t->ndim;
        for (int d = 0; d < t->ndim; d++) p->shape[r][d] = t->shape[d];
    }
    return SDW_OK;
}

/* One layer's work: the modules (of any of the LoRAs) that patch it. */
typedef struct {
    const module *m;
    const sdw_safetensors *st;
    float strength;
} patch;

static int cmp_patch(const void *a, const void *b)
{
    const patch *x = a, *y = b;
    uintptr_t px = (uintptr_t)layer_ptr(x->m->t->layer), py = (uintptr_t)layer_ptr(y->m->t->layer);
    if (px != py) return px < py ? -1 : 1;
    return x->m->lora - y->m->lora;   /* LoRAs apply in the order given */
}

/* Grow-only f32 buffers shared by every layer of one merge. */
typedef struct {
    float *W, *delta, *work;
    size_t n;
} buffers;

static sdw_status reserve(buffers *b, size_t n)
{
    if (n <= b->n) return SDW_OK;
    free(b->W);
    free(b->delta);
    free(b->work);
    b->W = malloc(n * sizeof(float));
    b->delta = malloc(n * sizeof(float));
    b->work = malloc(n * sizeof(float));
    b->n = b->W && b->delta && b->work ? n : 0;
    return b->n ? SDW_OK : sdw_fail(SDW_ERR_NOMEM, "out of memory merging a LoRA");
}

/* Exchanges the first and second halves of rows (exactly: a copy, twice undoes it). */
static void swap_halves(float *W, int rows, size_t cols)
{
    size_t h = (size_t)rows / 2 * cols;
    for (size_t i = 0; i < h; i++) {
        float t = W[i];
        W[i] = W[h + i];
        W[h + i] = t;
    }
}

static sdw_status merge_layer(sdw_model *m, struct sdw_lora_state *s, const patch *p, int n, buffers *b)
{
    const sdw_named_layer *l = p[0].m->t->layer;
    SDW_TRY(save_once(s, l));
    int out, in, kh = 1, kw = 1;
    if (l->linear) {
        out = sdw_linear_out(l->linear);
        in = sdw_linear_in(l->linear);
    } else {
        sdw_conv2d_shape(l->conv, &in, &out, &kh, &kw);
    }
    SDW_TRY(reserve(b, (size_t)out * in * kh * kw));
    float *W = b->W;
    SDW_TRY(l->linear ? sdw_linear_get_weights(m->be, l->linear, W) : sdw_conv2d_get_weights(m->be, l->conv, W));
    for (int i = 0; i < n; i++) {
        const sdw_named_layer *li = p[i].m->t->layer;
        sdw_lora_target_shape sh = shape_of(li);
        size_t cols = (size_t)sh.in * sh.kh * sh.kw;
        sdw_lora_parts parts;
        SDW_TRY(load_parts(p[i].st, p[i].m, &parts));
        float *Wl = W + (size_t)li->row0 * cols;
        bool swap = p[i].m->t->swap_halves;
        if (swap) swap_halves(Wl, sh.rows, cols);
        sdw_status st = sdw_lora_merge(&parts, p[i].m->key, sh, p[i].strength, b->delta, Wl, b->work);
        if (swap) swap_halves(Wl, sh.rows, cols);
        free_parts(&parts);
        SDW_TRY(st);
    }
    return l->linear ? sdw_linear_set_weights(m->be, l->linear, W) : sdw_conv2d_set_weights(m->be, l->conv, W);
}

/* ---- compact layers: branches beside the weights ---- */

static bool compact(const sdw_named_layer *l) { return l->linear && sdw_linear_quant_type(l->linear, NULL); }

static sdw_status note_branched(struct sdw_lora_state *s, sdw_linear *l)
{
    for (int i = 0; i < s->n_branched; i++)
        if (s->branched[i] == l) return SDW_OK;
    if (s->n_branched == s->cap_branched) {
        int c = s->cap_branched ? 2 * s->cap_branched : 256;
        sdw_linear **p = realloc(s->branched, (size_t)c * sizeof *p);
        if (!p) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
        s->branched = p;
        s->cap_branched = c;
    }
    s->branched[s->n_branched++] = l;
    return SDW_OK;
}

/* The rank of the factors a module's branch takes, or 0 for a dense one:
 * factors no thinner than the layer's rows would cost more than them. */
static int branch_rank(const sdw_lora_parts *parts, sdw_lora_target_shape sh)
{
    int64_t r = sdw_lora_factor_rank(parts, sh);
    return r * ((int64_t)sh.rows + sh.in) < (int64_t)sh.rows * sh.in ? (int)r : 0;
}

/* f32 values a module's branch of rank r (0: dense) holds, where that is
 * more than the file's own factors: a plain LoRA's branch holds just them,
 * whatever its rank (the user chose that size), LoHa's r1 r2 factors and
 * a dense change's rows may hold far more. */
static size_t branch_excess(const sdw_lora_parts *parts, sdw_lora_target_shape sh, int r)
{
    if (r && parts->t[SDW_LORA_UP]) return 0;
    return (size_t)(r ? r : sh.rows) * (size_t)(r ? sh.rows + sh.in : sh.in);
}

/* The module's change as a dense branch's rows, in the module's row order:
 * strength * delta, or for DoRA what the merge does to W's rows (W: the
 * layer's dequantized weights with the earlier modules merged). */
static sdw_status dense_change(const patch *pt, const sdw_lora_parts *parts, sdw_lora_target_shape sh, float *Wl,
                               buffers *b, float *E)
{
    const size_t n = (size_t)sh.rows * sh.in;
    if (!parts->t[SDW_LORA_DORA_SCALE]) {
        SDW_TRY(sdw_lora_delta(parts, pt->m->key, sh, E));
        for (size_t i = 0; i < n; i++) E[i] *= pt->strength;
        return SDW_OK;
    }
    memcpy(E, Wl, n * sizeof *E);
    SDW_TRY(sdw_lora_merge(parts, pt->m->key, sh, pt->strength, b->delta, Wl, b->work));
    for (size_t i = 0; i < n; i++) E[i] = Wl[i] - E[i];
    return SDW_OK;
}

/* One module as a branch of rank r (0: dense). W, when the layer has a
 * DoRA module, follows every module merged, for the norms DoRA takes. */
static sdw_status branch_module(const patch *pt, const sdw_lora_parts *parts, int r, float *W, buffers *b)
{
    const sdw_named_layer *li = pt->m->t->layer;
    const sdw_lora_target_shape sh = shape_of(li);
    const size_t cols = (size_t)sh.in;
    const bool swap = pt->m->t->swap_halves;
    float *Wl = W ? W + (size_t)li->row0 * cols : NULL;
    float *U = r ? malloc((size_t)sh.rows * r * sizeof *U) : NULL;
    float *D = malloc((size_t)(r ? r : sh.rows) * cols * sizeof *D);
    sdw_status st = D && (U || !r) ? SDW_OK : sdw_fail(SDW_ERR_NOMEM, "out of memory for a LoRA branch");
    const bool swapped = st == SDW_OK && Wl && swap;
    if (swapped) swap_halves(Wl, sh.rows, cols);
    if (st == SDW_OK && r) {
        st = sdw_lora_factors(parts, pt->m->key, sh, pt->strength, U, D);
        if (st == SDW_OK && Wl) st = sdw_lora_merge(parts, pt->m->key, sh, pt->strength, b->delta, Wl, b->work);
    } else if (st == SDW_OK) {
        st = dense_change(pt, parts, sh, Wl, b, D);
        if (st == SDW_OK && Wl && !parts->t[SDW_LORA_DORA_SCALE])
            for (size_t i = 0; i < (size_t)sh.rows * cols; i++) Wl[i] += D[i];
    }
    if (swapped) swap_halves(Wl, sh.rows, cols);
    if (st == SDW_OK && swap) {   /* into the layer's row order */
        if (r) swap_halves(U, sh.rows, (size_t)r);
        else swap_halves(D, sh.rows, cols);
    }
    if (st == SDW_OK) st = sdw_linear_add_branch(li->linear, li->row0, sh.rows, r ? r : sh.rows, D, U);
    free(U);
    free(D);
    return st;
}

/* A compact layer's modules as branches beside it; merged and re-encoded
 * as a dense layer's only where one module's branch would hold more than
 * dense_branch_max values beyond its file's own factors. */
static sdw_status branch_layer(sdw_model *m, struct sdw_lora_state *s, const patch *p, int n, buffers *b)
{
    const sdw_named_layer *l = p[0].m->t->layer;
    sdw_lora_parts *parts = calloc((size_t)n, sizeof *parts);
    int *rank = calloc((size_t)n, sizeof *rank);
    sdw_status st = parts && rank ? SDW_OK : sdw_fail(SDW_ERR_NOMEM, "out of memory");
    bool dora = false, too_big = false;
    int big = 0;
    size_t big_values = 0;
    for (int i = 0; i < n && st == SDW_OK; i++) {
        const sdw_lora_target_shape sh = shape_of(p[i].m->t->layer);
        st = load_parts(p[i].st, p[i].m, &parts[i]);
        rank[i] = st == SDW_OK ? branch_rank(&parts[i], sh) : 0;
        dora |= parts[i].t[SDW_LORA_DORA_SCALE] != NULL;
        const size_t values = st == SDW_OK ? branch_excess(&parts[i], sh, rank[i]) : 0;
        if (values > dense_branch_max && !too_big) {
            too_big = true;
            big = i;
            big_values = values;
        }
    }
    float *W = NULL;
    if (st == SDW_OK && !too_big) {
        st = note_branched(s, l->linear);
        const size_t n_w = (size_t)sdw_linear_out(l->linear) * sdw_linear_in(l->linear);
        if (st == SDW_OK && dora && (st = reserve(b, n_w)) == SDW_OK) {
            W = b->W;
            st = sdw_linear_get_weights(m->be, l->linear, W);
        }
    }
    for (int i = 0; i < n && st == SDW_OK && !too_big; i++) st = branch_module(&p[i], &parts[i], rank[i], W, b);
    for (int i = 0; parts && i < n; i++) free_parts(&parts[i]);
    free(parts);
    free(rank);
    if (st != SDW_OK || !too_big) return st;
    sdw_qtype qt;
    sdw_linear_quant_type(l->linear, &qt);
    SDW_WARN("LoRA module %s: kept beside the %s layer %s its change would take %zu f32 values (%.1f MiB: not a "
             "plain LoRA's low-rank factors); merged into the weights instead, which rounds much of it away",
             p[big].m->key + 2, sdw_qtype_name(qt), l->name, big_values,
             (double)big_values * sizeof(float) / (1 << 20));
    return merge_layer(m, s, p, n, b);
}

/* A LoRA whose module names belong to another architecture (SD's UNet on
 * FLUX, FLUX's or SD3's transformer or T5 on SD, ...) is refused naming both:
 * it could still match the text encoder they share (CLIP-L), which would
 * hide it. */
static sdw_status check_architecture(const sdw_model *m, const module *mods, int n, const char *name)
{
    const char **keys = malloc((size_t)(n ? n : 1) * sizeof *keys);
    if (!keys) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    for (int k = 0; k < n; k++) keys[k] = mods[k].known ? mods[k].key : NULL;
    sdw_status st = sdw_lora_check_names(m, keys, n, name);
    free(keys);
    return st;
}

/* A plain LoRA's width against its layer, for the diffusers names FLUX and
 * SD3 share ("transformer_blocks.0.attn.to_q"): such a file matches either
 * model by name, and only its widths say it is for the other one. */
static sdw_status check_width(const sdw_model *m, const module *md, const char *name)
{
    const sdw_st_tensor *up = md->part[SDW_LORA_UP], *down = md->part[SDW_LORA_DOWN];
    if (!up || !down || md->part[SDW_LORA_MID] || sdw_lora_key_archs(md->key) != (SDW_ARCH_FLUX | SDW_ARCH_SD3))
        return SDW_OK;
    const sdw_lora_target_shape sh = shape_of(md->t->layer);
    const int64_t cols = (int64_t)sh.in * sh.kh * sh.kw;
    if (up->ndim >= 1 && down->ndim >= 1 && down->shape[0] > 0 && up->shape[0] == sh.rows &&
        down->numel == down->shape[0] * cols)
        return SDW_OK;
    const unsigned arch = sdw_lora_model_arch(m), other = arch == SDW_ARCH_FLUX ? SDW_ARCH_SD3 : SDW_ARCH_FLUX;
    return sdw_fail(SDW_ERR_UNSUPPORTED, "LoRA %s does not fit the model, %s (%s): module %s is %lld x %lld where "
                    "the layer is %d x %lld. FLUX.1 and SD3 / SD3.5 share these diffusers names: is it for %s?",
                    name, sdw_family_name(m->info.family), sdw_lora_arch_name(arch), md->key + 2,
                    (long long)up->shape[0], (long long)(down->shape[0] > 0 ? down->numel / down->shape[0] : 0),
                    sh.rows, (long long)cols, sdw_lora_arch_name(other));
}

/* Matches every LoRA's modules to layers and fills the reports. */
static sdw_status match_all(sdw_model *m, struct sdw_lora_state *s, const sdw_lora_spec *loras, int n,
                            sdw_safetensors **files, module **mods, int *n_mods, sdw_lora_report *rep)
{
    for (int i = 0; i < n; i++) {
        SDW_TRY(sdw_st_open(loras[i].path, &files[i]));
        stem_of(loras[i].path, rep[i].name, sizeof rep[i].name);
        SDW_TRY(sdw_lora_check_meta(m, files[i], rep[i].name));
        SDW_TRY(read_modules(files[i], &mods[i], &n_mods[i]));
        SDW_TRY(check_architecture(m, mods[i], n_mods[i], rep[i].name));
        addnet_hash(files[i], rep[i].hash12);
        rep[i].keys_total = n_mods[i];
        bool second_te = false;
        for (int k = 0; k < n_mods[i]; k++) {
            module *md = &mods[i][k];
            md->lora = i;
            md->t = md->known && mergeable(md) ? find_target(s, md->key) : NULL;
            /* A second CLIP (SDXL's, SD3's), unmatched; on FLUX "1:" is T5, whose names differ. */
            second_te |= md->key[0] == '1' && !md->t && (!m->t5 || !strncmp(md->key, "1:encoder_layers_", 17));
            if (md->t) SDW_TRY(check_width(m, md, rep[i].name));
            if (md->t) rep[i].keys_applied++;
        }
        if (second_te && !m->text.te2 && !(m->sd3_text && m->sd3_text->clip_g))
            return sdw_fail(SDW_ERR_UNSUPPORTED, "LoRA %s is for SDXL or SD3 / SD3.5 (it patches a second CLIP text "
                            "encoder); the model is %s", rep[i].name, sdw_family_name(m->info.family));
        if (rep[i].keys_applied == 0)
            return sdw_fail(SDW_ERR_UNSUPPORTED, "LoRA %s matched 0 of %d keys: is it for another model family?",
                            rep[i].name, rep[i].keys_total);
    }
    return SDW_OK;
}

static sdw_status apply_all(sdw_model *m, struct sdw_lora_state *s, const sdw_lora_spec *loras, int n,
                            sdw_safetensors **files, module **mods, const int *n_mods)
{
    int total = 0;
    for (int i = 0; i < n; i++) total += n_mods[i];
    patch *p = malloc((size_t)(total ? total : 1) * sizeof *p);
    if (!p) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    int np = 0;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < n_mods[i]; k++) {
            const module *md = &mods[i][k];
            float w = md->key[0] == 'u' ? loras[i].unet_strength : loras[i].te_strength;
            if (md->t && w != 0.0f) p[np++] = (patch){ md, files[i], w };
        }
    qsort(p, (size_t)np, sizeof *p, cmp_patch);
    sdw_status st = SDW_OK;
    buffers b = { 0 };
    for (int i = 0, j; i < np && st == SDW_OK; i = j) {
        for (j = i + 1; j < np && layer_ptr(p[j].m->t->layer) == layer_ptr(p[i].m->t->layer); j++) {}
        const sdw_named_layer *l = p[i].m->t->layer;
        st = compact(l) ? branch_layer(m, s, p + i, j - i, &b) : merge_layer(m, s, p + i, j - i, &b);
    }
    free(b.W);
    free(b.delta);
    free(b.work);
    free(p);
    return st;
}

static sdw_status remember(struct sdw_lora_state *s, const sdw_lora_spec *loras, int n, const sdw_lora_report *rep)
{
    s->set = calloc((size_t)n, sizeof *s->set);
    s->reports = malloc((size_t)n * sizeof *s->reports);
    if (!s->set || !s->reports) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    s->n_set = n;
    for (int i = 0; i < n; i++) {
        s->set[i] = (applied_lora){ strdup(loras[i].path), loras[i].te_strength, loras[i].unet_strength, { 0 } };
        if (!s->set[i].path || stat(loras[i].path, &s->set[i].st))
            return sdw_fail(SDW_ERR_IO, "LoRA %s: cannot stat", loras[i].path);
        s->reports[i] = rep[i];
    }
    return SDW_OK;
}

sdw_status sdw_model_set_loras(sdw_model *m, const sdw_lora_spec *loras, int n, sdw_lora_report *reports)
{
    if (n < 0 || (n > 0 && !loras)) return sdw_fail(SDW_ERR_INVALID_ARG, "LoRA: bad arguments");
    if (!m->lora) {
        if (n == 0) return SDW_OK;
        if (!(m->lora = calloc(1, sizeof *m->lora))) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
        sdw_status st = build_targets(m, m->lora);
        if (st != SDW_OK) {
            sdw_lora_state_free(m->lora);
            m->lora = NULL;
            return st;
        }
    }
    struct sdw_lora_state *s = m->lora;
    if (same_set(s, loras, n)) {
        if (reports && n) memcpy(reports, s->reports, (size_t)n * sizeof *reports);
        return SDW_OK;
    }
    restore(s);
    if (n == 0) return SDW_OK;

    sdw_safetensors **files = calloc((size_t)n, sizeof *files);
    module **mods = calloc((size_t)n, sizeof *mods);
    int *n_mods = calloc((size_t)n, sizeof *n_mods);
    sdw_lora_report *rep = calloc((size_t)n, sizeof *rep);
    sdw_status st = files && mods && n_mods && rep ? SDW_OK : sdw_fail(SDW_ERR_NOMEM, "out of memory");
    if (st == SDW_OK) st = match_all(m, s, loras, n, files, mods, n_mods, rep);
    if (st == SDW_OK) st = apply_all(m, s, loras, n, files, mods, n_mods);
    if (st == SDW_OK) st = remember(s, loras, n, rep);
    if (st == SDW_OK) {
        for (int i = 0; i < n; i++)
            SDW_INFO("LoRA %s (te %g, unet %g): applied %d of %d keys", rep[i].name, loras[i].te_strength,
                     loras[i].unet_strength, rep[i].keys_applied, rep[i].keys_total);
        if (reports) memcpy(reports, rep, (size_t)n * sizeof *reports);
    } else {
        restore(s);   /* a failed set leaves the base weights */
    }
    for (int i = 0; files && i < n; i++) sdw_st_close(files[i]);
    for (int i = 0; mods && i < n; i++) free(mods[i]);
    free(files);
    free(mods);
    free(n_mods);
    free(rep);
    return st;
}
