/* test_flux_transformer.c: the FLUX.1 transformer of flux-tiny-dev and
 * flux-tiny-schnell against the reference components (velocity at four
 * timesteps; at t0 every intermediate the reference keeps, RoPE table
 * included), loaded from the BFL file, the all-in-one checkpoint (dev) and
 * the diffusers folder; bf16 against the f32 reference; the configuration
 * read from shapes, the diffusers name mapping, latent packing, and a clear
 * refusal of a file that holds no FLUX transformer. */
#include "testkit.h"
#include "io/json_file.h"
#include "io/safetensors_write.h"
#include "models/flux.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define F32_GATE 1e-5
#define BF16_GATE 3e-2

typedef enum { FROM_BFL, FROM_ALLINONE, FROM_DIFFUSERS } source;
static const char *const source_names[] = { "bfl", "allinone", "diffusers" };

static sdw_safetensors *open_source(const char *variant, source src, const char **prefix, sdw_name_layout *names,
                                    cJSON **cfg)
{
    char path[512];
    *prefix = "";
    *names = SDW_NAMES_LDM;
    *cfg = NULL;
    if (src == FROM_BFL) snprintf(path, sizeof path, "flux/models/flux-tiny-%s/flux1-%s.safetensors", variant, variant);
    if (src == FROM_ALLINONE) {
        snprintf(path, sizeof path, "flux/models/flux-tiny-%s/flux1-%s-allinone.safetensors", variant, variant);
        *prefix = "model.diffusion_model.";
    }
    if (src == FROM_DIFFUSERS) {
        snprintf(path, sizeof path, "flux/models/flux-tiny-%s/diffusers/transformer/config.json", variant);
        assert_int_equal(sdw_json_load_file(test_data_path(path), cfg), SDW_OK);
        snprintf(path, sizeof path, "flux/models/flux-tiny-%s/diffusers/transformer/diffusion_pytorch_model.safetensors",
                 variant);
        *names = SDW_NAMES_DIFFUSERS;
    }
    return test_open_st(path);
}

static sdw_flux *load(sdw_backend *be, const char *variant, source src)
{
    const char *prefix;
    sdw_name_layout names;
    cJSON *cfg;
    sdw_safetensors *st = open_source(variant, src, &prefix, &names, &cfg);
    sdw_flux_config c;
    assert_true(sdw_flux_present(st, prefix));
    if (sdw_flux_config_from_tensors(st, prefix, names, cfg, &c) != SDW_OK) fail_msg("%s", sdw_last_error());
    sdw_flux *f = NULL;
    if (sdw_flux_load(be, st, prefix, names, &c, &f) != SDW_OK) fail_msg("%s", sdw_last_error());
    cJSON_Delete(cfg);
    sdw_st_close(st);
    return f;
}

typedef struct {
    const sdw_safetensors *ref;
    double gate;
    const char *tag;
    int checked;
} tap_ctx;

static void tap(void *user, const char *name, const float *x, int rows, int cols)
{
    tap_ctx *t = user;
    char key[128], what[256];
    snprintf(key, sizeof key, "t0.intermediate.%s", name);
    const sdw_st_tensor *r = sdw_st_find(t->ref, key);
    if (!r) fail_msg("tap %s: no reference %s", name, key);
    if (r->numel != (int64_t)rows * cols) fail_msg("tap %s: %d x %d, reference has %lld", name, rows, cols,
                                                    (long long)r->numel);
    float *ref = test_load_f32(t->ref, key, NULL);
    snprintf(what, sizeof what, "%s %s", t->tag, name);
    test_check_close(what, x, ref, (size_t)rows * cols, t->gate);
    t->checked++;
    free(ref);
}

static void run_variant(sdw_backend *be, sdw_arena *arena, const char *variant, double gate)
{
    char path[256];
    snprintf(path, sizeof path, "flux/components_flux-tiny-%s.safetensors", variant);
    sdw_safetensors *ref = test_open_st(path);
    const sdw_st_tensor *ti = sdw_st_find(ref, "in.img"), *tt = sdw_st_find(ref, "in.txt");
    int n_img = (int)ti->shape[1], C = (int)ti->shape[2], n_txt = (int)tt->shape[1];
    float *img = test_load_f32(ref, "in.img", NULL), *img_ids = test_load_f32(ref, "in.img_ids", NULL);
    float *txt = test_load_f32(ref, "in.txt", NULL), *txt_ids = test_load_f32(ref, "in.txt_ids", NULL);
    float *y = test_load_f32(ref, "in.y", NULL), *out = malloc((size_t)n_img * C * sizeof *out);
    bool dev = !strcmp(variant, "dev");
    for (source src = FROM_BFL; src <= FROM_DIFFUSERS; src++) {
        if (src == FROM_ALLINONE && !dev) continue;   /* only dev has an all-in-one file */
        sdw_flux *f = load(be, variant, src);
        assert_int_equal(sdw_flux_get_config(f)->guidance_embed, dev);
        char tag[64];
        snprintf(tag, sizeof tag, "%s/%s", variant, source_names[src]);
        for (int k = 0; k < 4; k++) {
            char key[64], what[256];
            snprintf(key, sizeof key, "t%d.t", k);
            float *t = test_load_f32(ref, key, NULL), g = 0;
            if (dev) {
                snprintf(key, sizeof key, "t%d.guidance", k);
                float *gp = test_load_f32(ref, key, NULL);
                g = gp[0];
                free(gp);
            }
            tap_ctx tc = { ref, gate, tag, 0 };
            sdw_flux_input in = { img, n_img, img_ids, txt, n_txt, txt_ids, t[0], g, y, k == 0 ? tap : NULL, &tc };
            if (sdw_flux_forward(be, arena, f, &in, out) != SDW_OK) fail_msg("%s", sdw_last_error());
            /* time_in, vector_in, pe_embedder, img_in, txt_in, 2 x 2 double, 2 single, final (+ guidance_in) */
            if (k == 0) assert_int_equal(tc.checked, 12 + dev);
            snprintf(key, sizeof key, "t%d.out", k);
            float *r = test_load_f32(ref, key, NULL);
            snprintf(what, sizeof what, "%s t=%g g=%g out", tag, t[0], g);
            test_check_close(what, out, r, (size_t)n_img * C, gate);
            free(r);
            free(t);
        }
        sdw_flux_free(f);
    }
    free(img); free(img_ids); free(txt); free(txt_ids); free(y); free(out);
    sdw_st_close(ref);
}

static void run(sdw_precision prec, double gate)
{
    if (!test_precision_runs(prec)) return;
    sdw_backend *be;
    assert_int_equal(sdw_backend_create(prec, &be), SDW_OK);
    printf("precision %s, cpu isa %s\n", sdw_precision_name(prec), sdw_cpu_isa_name());
    sdw_arena arena = { 0 };
    run_variant(be, &arena, "dev", gate);
    run_variant(be, &arena, "schnell", gate);
    sdw_arena_free(&arena);
    sdw_backend_free(be);
}

static void flux_f32(void **state) { (void)state; run(SDW_PRECISION_F32, F32_GATE); }
static void flux_bf16(void **state) { (void)state; run(SDW_PRECISION_BF16, BF16_GATE); }

static void config_from_shapes(void **state)
{
    (void)state;
    for (source src = FROM_BFL; src <= FROM_DIFFUSERS; src++)
        for (int with_json = 0; with_json <= 1; with_json++) {
            const char *prefix;
            sdw_name_layout names;
            cJSON *cfg;
            sdw_safetensors *st = open_source("dev", src, &prefix, &names, &cfg);
            sdw_flux_config c;
            if (sdw_flux_config_from_tensors(st, prefix, names, with_json ? cfg : NULL, &c) != SDW_OK)
                fail_msg("%s", sdw_last_error());
            assert_int_equal(c.in_channels, 64);
            assert_int_equal(c.hidden, 32);
            assert_int_equal(c.heads, 2);
            assert_int_equal(c.head_dim, 16);
            assert_int_equal(c.axes_dim[0], 4);
            assert_int_equal(c.axes_dim[1], 6);
            assert_int_equal(c.axes_dim[2], 6);
            assert_int_equal(c.depth, 2);
            assert_int_equal(c.depth_single, 2);
            assert_int_equal(c.mlp_hidden, 128);
            assert_int_equal(c.context_dim, 32);
            assert_int_equal(c.vec_dim, 8);
            assert_true(c.theta == 10000.0f);
            assert_true(c.guidance_embed);
            assert_true(c.qkv_bias);
            cJSON_Delete(cfg);
            sdw_st_close(st);
        }
    sdw_safetensors *st = test_open_st("flux/models/flux-tiny-schnell/flux1-schnell.safetensors");
    sdw_flux_config c;
    assert_int_equal(sdw_flux_config_from_tensors(st, "", SDW_NAMES_LDM, NULL, &c), SDW_OK);
    assert_false(c.guidance_embed);
    sdw_st_close(st);
}

/* The real model's head_dim 128 gives BFL's axes (16, 56, 56): a file with
 * just the tensors the configuration is read from, at hidden 256. */
static void config_head_dim_128(void **state)
{
    (void)state;
    static const int64_t s_img[] = { 256, 64 }, s_txt[] = { 256, 4096 }, s_vec[] = { 256, 768 },
                         s_time[] = { 256, 256 }, s_qkv[] = { 768, 256 }, s_mlp[] = { 1024, 256 }, s_qn[] = { 128 };
    float *zeros = calloc(4096 * 256, sizeof *zeros);
    const sdw_st_out t[] = {
        { "img_in.weight", 2, s_img, zeros },
        { "txt_in.weight", 2, s_txt, zeros },
        { "vector_in.in_layer.weight", 2, s_vec, zeros },
        { "time_in.in_layer.weight", 2, s_time, zeros },
        { "double_blocks.0.img_attn.qkv.weight", 2, s_qkv, zeros },
        { "double_blocks.0.img_mlp.0.weight", 2, s_mlp, zeros },
        { "double_blocks.0.img_attn.norm.query_norm.scale", 1, s_qn, zeros },
    };
    char path[] = "/tmp/sdw_flux_cfgXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(sdw_st_write_f32(path, t, (int)(sizeof t / sizeof *t)), SDW_OK);
    sdw_safetensors *st;
    assert_int_equal(sdw_st_open(path, &st), SDW_OK);
    sdw_flux_config c;
    assert_int_equal(sdw_flux_config_from_tensors(st, "", SDW_NAMES_LDM, NULL, &c), SDW_OK);
    assert_int_equal(c.heads, 2);
    assert_int_equal(c.head_dim, 128);
    assert_int_equal(c.axes_dim[0], 16);
    assert_int_equal(c.axes_dim[1], 56);
    assert_int_equal(c.axes_dim[2], 56);
    assert_int_equal(c.depth, 1);
    assert_int_equal(c.depth_single, 0);
    assert_int_equal(c.mlp_hidden, 1024);
    assert_false(c.guidance_embed);
    assert_false(c.qkv_bias);
    sdw_st_close(st);
    unlink(path);
    free(zeros);
}

static void rejects_other_files(void **state)
{
    (void)state;
    sdw_safetensors *st = test_open_st("flux/models/flux-tiny-common/t5xxl.safetensors");
    sdw_flux_config c;
    assert_false(sdw_flux_present(st, ""));
    assert_int_equal(sdw_flux_config_from_tensors(st, "", SDW_NAMES_LDM, NULL, &c), SDW_ERR_FORMAT);
    printf("  t5xxl as BFL: %s\n", sdw_last_error());
    assert_non_null(strstr(sdw_last_error(), "not a FLUX transformer"));
    assert_int_equal(sdw_flux_config_from_tensors(st, "", SDW_NAMES_DIFFUSERS, NULL, &c), SDW_ERR_FORMAT);
    assert_non_null(strstr(sdw_last_error(), "not a FLUX transformer"));
    sdw_st_close(st);
    /* The all-in-one file holds it only under its prefix; the BFL file is not diffusers-named. */
    st = test_open_st("flux/models/flux-tiny-dev/flux1-dev-allinone.safetensors");
    assert_false(sdw_flux_present(st, ""));
    assert_true(sdw_flux_present(st, "model.diffusion_model."));
    assert_int_equal(sdw_flux_config_from_tensors(st, "", SDW_NAMES_LDM, NULL, &c), SDW_ERR_FORMAT);
    sdw_st_close(st);
    st = test_open_st("flux/models/flux-tiny-dev/flux1-dev.safetensors");
    assert_int_equal(sdw_flux_config_from_tensors(st, "", SDW_NAMES_DIFFUSERS, NULL, &c), SDW_ERR_FORMAT);
    /* A config that does not match the file fails on the tensor it misses. */
    assert_int_equal(sdw_flux_config_from_tensors(st, "", SDW_NAMES_LDM, NULL, &c), SDW_OK);
    c.depth = 3;
    sdw_backend *be;
    sdw_flux *f = NULL;
    assert_int_equal(sdw_backend_create(SDW_PRECISION_F32, &be), SDW_OK);
    assert_int_equal(sdw_flux_load(be, st, "", SDW_NAMES_LDM, &c, &f), SDW_ERR_FORMAT);
    assert_non_null(strstr(sdw_last_error(), "double_blocks.2."));
    assert_null(f);
    sdw_st_close(st);
    /* A diffusers config.json whose heads disagree with the shapes. */
    const char *prefix;
    sdw_name_layout names;
    cJSON *cfg;
    st = open_source("dev", FROM_DIFFUSERS, &prefix, &names, &cfg);
    cJSON_ReplaceItemInObject(cfg, "num_attention_heads", cJSON_CreateNumber(4));
    assert_int_equal(sdw_flux_config_from_tensors(st, prefix, names, cfg, &c), SDW_ERR_FORMAT);
    cJSON_Delete(cfg);
    sdw_st_close(st);
    sdw_backend_free(be);
}

static const sdw_named_layer *find_layer(const sdw_layer_list *l, const char *name)
{
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->v[i].name, name)) return &l->v[i];
    return NULL;
}

static void layers_and_names(void **state)
{
    (void)state;
    sdw_backend *be;
    assert_int_equal(sdw_backend_create(SDW_PRECISION_F32, &be), SDW_OK);
    static const source both[] = { FROM_BFL, FROM_DIFFUSERS };
    for (int s = 0; s < 2; s++) {
        sdw_flux *f = load(be, "dev", both[s]);
        const sdw_layer_list *l = sdw_flux_layers(f);
        /* Either layout: BFL names, 8 embedder linears + 2 blocks x 2 streams x 5 + 2 single x 3 + 2
         * final = 36; diffusers aliases, 8 + 2 x 2 x 7 (q, k, v apart) + 2 x 6 (q, k, v, mlp apart)
         * + proj_out = 49 */
        const sdw_named_layer *qkv = find_layer(l, "double_blocks.1.txt_attn.qkv");
        const sdw_named_layer *lin1 = find_layer(l, "single_blocks.0.linear1");
        assert_non_null(qkv);
        assert_non_null(lin1);
        assert_int_equal(qkv->row0, 0);
        assert_int_equal(qkv->rows, 96);
        assert_int_equal(lin1->rows, 224);
        assert_non_null(find_layer(l, "final_layer.adaLN_modulation.1"));
        assert_non_null(find_layer(l, "guidance_in.out_layer"));
        const sdw_named_layer *k = find_layer(l, "transformer_blocks.1.attn.add_k_proj");
        const sdw_named_layer *mlp = find_layer(l, "single_transformer_blocks.0.proj_mlp");
        assert_non_null(k);
        assert_non_null(mlp);
        assert_ptr_equal(k->linear, qkv->linear);
        assert_int_equal(k->row0, 32);
        assert_int_equal(k->rows, 32);
        assert_ptr_equal(mlp->linear, lin1->linear);
        assert_int_equal(mlp->row0, 96);
        assert_int_equal(mlp->rows, 128);
        assert_non_null(find_layer(l, "transformer_blocks.0.norm1_context.linear"));
        assert_null(find_layer(l, "norm_out.linear"));
        assert_int_equal(l->n, 36 + 49);
        assert_int_equal(sdw_flux_bytes(f), 134528 * 4 + test_linear_padding(l, 4));   /* every parameter, f32, and the layout's padding */
        sdw_flux_free(f);
    }
    sdw_backend_free(be);
    /* The mapping on its own. */
    sdw_flux_config c = { .hidden = 32, .mlp_hidden = 128 };
    sdw_flux_part p[SDW_FLUX_MAX_PARTS];
    assert_int_equal(sdw_flux_diffusers_parts("final_layer.adaLN_modulation.1", &c, 64, p), 2);
    assert_string_equal(p[0].name, "norm_out.linear");
    assert_int_equal(p[0].src_row0, 32);
    assert_int_equal(p[0].dst_row0, 0);
    assert_int_equal(p[1].src_row0, 0);
    assert_int_equal(p[1].dst_row0, 32);
    assert_int_equal(sdw_flux_diffusers_parts("double_blocks.11.img_attn.norm.key_norm", &c, 16, p), 1);
    assert_string_equal(p[0].name, "transformer_blocks.11.attn.norm_k");
    assert_int_equal(sdw_flux_diffusers_parts("single_blocks.3.linear2", &c, 32, p), 1);
    assert_string_equal(p[0].name, "single_transformer_blocks.3.proj_out");
    assert_int_equal(sdw_flux_diffusers_parts("double_blocks.0.bogus", &c, 32, p), 0);
    assert_int_equal(sdw_flux_diffusers_parts("img_out", &c, 32, p), 0);
}

static void pack_unpack(void **state)
{
    (void)state;
    sdw_safetensors *ref = test_open_st("flux/components_flux-tiny-common.safetensors");
    const sdw_st_tensor *tl = sdw_st_find(ref, "pack.latent");
    int C = (int)tl->shape[1], h = (int)tl->shape[2], w = (int)tl->shape[3];
    size_t n = (size_t)C * h * w, tokens = (size_t)(h / 2) * (w / 2);
    float *lat = test_load_f32(ref, "pack.latent", NULL), *packed_ref = test_load_f32(ref, "pack.packed", NULL);
    float *ids_ref = test_load_f32(ref, "pack.img_ids", NULL);
    float *packed = malloc(n * sizeof *packed), *back = malloc(n * sizeof *back), *ids = malloc(tokens * 3 * sizeof *ids);
    sdw_flux_pack(lat, C, h, w, packed);
    assert_memory_equal(packed, packed_ref, n * sizeof *packed);
    sdw_flux_unpack(packed, C, h, w, back);
    assert_memory_equal(back, lat, n * sizeof *back);
    sdw_flux_img_ids(h, w, ids);
    assert_memory_equal(ids, ids_ref, tokens * 3 * sizeof *ids);
    free(lat); free(packed_ref); free(ids_ref); free(packed); free(back); free(ids);
    sdw_st_close(ref);
}

static void rejects_bad_input(void **state)
{
    (void)state;
    sdw_backend *be;
    assert_int_equal(sdw_backend_create(SDW_PRECISION_F32, &be), SDW_OK);
    sdw_flux *f = load(be, "schnell", FROM_BFL);
    sdw_arena arena = { 0 };
    float img[64] = { 0 }, ids[3] = { 0 }, y[8] = { 0 }, out[64];
    sdw_flux_input in = { img, 0, ids, NULL, 0, NULL, 0.5f, 0, y, NULL, NULL };
    assert_int_equal(sdw_flux_forward(be, &arena, f, &in, out), SDW_ERR_INVALID_ARG);
    in.n_img = 1;
    in.n_txt = 4;   /* no text given */
    assert_int_equal(sdw_flux_forward(be, &arena, f, &in, out), SDW_ERR_INVALID_ARG);
    in.n_txt = 0;   /* image tokens alone run */
    assert_int_equal(sdw_flux_forward(be, &arena, f, &in, out), SDW_OK);
    sdw_arena_free(&arena);
    sdw_flux_free(f);
    sdw_backend_free(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(flux_f32),
        cmocka_unit_test(flux_bf16),
        cmocka_unit_test(config_from_shapes),
        cmocka_unit_test(config_head_dim_128),
        cmocka_unit_test(rejects_other_files),
        cmocka_unit_test(layers_and_names),
        cmocka_unit_test(pack_unpack),
        cmocka_unit_test(rejects_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
