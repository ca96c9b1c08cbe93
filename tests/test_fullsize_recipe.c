/* test_fullsize_recipe.c: the full-size random-weight recipe
 * (tools/fullsize, tests/data/fullsize/README.md section 1): the README's
 * test vectors, the float16 rounding, the tensor lists against the README's
 * table, and for sd15 (plus the const tensors of sd21-v / sdxl) the f16 bytes
 * of a sample of tensors against <family>.seed1.sha256.txt. Whole files are
 * checked by tests/fullsize/check_sha.sh (too big for the default run). */
#include "testkit.h"
#include "../tools/fullsize/fullsize_recipe.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- a small SHA-256 (FIPS 180-4): the reference hashes are SHA-256 ---- */

typedef struct {
    uint32_t h[8];
    uint64_t bytes;
    uint8_t buf[64];
    size_t used;
} sha256;

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static uint32_t ror32(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void sha_block(uint32_t h[8], const uint8_t *p)
{
    uint32_t w[64], v[8];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++)
        w[i] = w[i - 16] + (ror32(w[i - 15], 7) ^ ror32(w[i - 15], 18) ^ (w[i - 15] >> 3)) + w[i - 7] +
               (ror32(w[i - 2], 17) ^ ror32(w[i - 2], 19) ^ (w[i - 2] >> 10));
    memcpy(v, h, sizeof v);
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = v[7] + (ror32(v[4], 6) ^ ror32(v[4], 11) ^ ror32(v[4], 25)) + ((v[4] & v[5]) ^ (~v[4] & v[6])) +
                      K256[i] + w[i];
        uint32_t t2 = (ror32(v[0], 2) ^ ror32(v[0], 13) ^ ror32(v[0], 22)) +
                      ((v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]));
        memmove(v + 1, v, 7 * sizeof v[0]);
        v[4] += t1;
        v[0] = t1 + t2;
    }
    for (int i = 0; i < 8; i++) h[i] += v[i];
}

static void sha_init(sha256 *c)
{
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(c->h, iv, sizeof iv);
    c->bytes = 0;
    c->used = 0;
}

static void sha_update(sha256 *c, const void *data, size_t len)
{
    const uint8_t *p = data;
    c->bytes += len;
    while (len) {
        if (c->used == 0 && len >= 64) {
            sha_block(c->h, p);
            p += 64, len -= 64;
            continue;
        }
        size_t take = 64 - c->used < len ? 64 - c->used : len;
        memcpy(c->buf + c->used, p, take);
        c->used += take, p += take, len -= take;
        if (c->used == 64) {
            sha_block(c->h, c->buf);
            c->used = 0;
        }
    }
}

/* Lowercase hex of the digest into hex[65]. */
static void sha_final_hex(sha256 *c, char hex[65])
{
    uint64_t bits = c->bytes * 8;
    uint8_t pad[72] = {0x80};
    size_t padlen = (c->used < 56 ? 56 : 120) - c->used;
    for (int i = 0; i < 8; i++) pad[padlen + (size_t)i] = (uint8_t)(bits >> (56 - 8 * i));
    sha_update(c, pad, padlen + 8);
    for (int i = 0; i < 32; i++) sprintf(hex + 2 * i, "%02x", (unsigned)(c->h[i / 4] >> (24 - 8 * (i % 4))) & 0xFFu);
}

static void sha_hex(const void *data, size_t len, char hex[65])
{
    sha256 c;
    sha_init(&c);
    sha_update(&c, data, len);
    sha_final_hex(&c, hex);
}

/* ------------------------------------------------------------- helpers */

static const char *list_path(const char *family)
{
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/../../tools/fullsize/%s.tensors.txt", SDW_TEST_DATA, family);
    return buf;
}

static void load_list(const char *family, fs_list *l)
{
    char err[512];
    if (fs_list_load(list_path(family), l, err, sizeof err)) fail_msg("%s", err);
}

/* "name hex16" lines of <family>.seed1.sha256.txt; returns the hex or NULL. */
typedef struct {
    char *text;
    char **names, **hex;
    size_t n;
} ref_hashes;

static void load_ref(const char *family, ref_hashes *r)
{
    char rel[256];
    snprintf(rel, sizeof rel, "fullsize/%s.seed1.sha256.txt", family);
    FILE *f = fopen(test_data_path(rel), "rb");
    if (!f) fail_msg("cannot open %s", rel);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    r->text = malloc((size_t)len + 1);
    assert_non_null(r->text);
    assert_int_equal(fread(r->text, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    r->text[len] = 0;
    size_t lines = 0;
    for (long i = 0; i < len; i++) lines += r->text[i] == '\n';
    r->names = calloc(lines + 1, sizeof *r->names);
    r->hex = calloc(lines + 1, sizeof *r->hex);
    assert_true(r->names && r->hex);
    r->n = 0;
    char *save = NULL;
    for (char *line = strtok_r(r->text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *sp = strchr(line, ' ');
        assert_non_null(sp);
        *sp = 0;
        r->names[r->n] = line;
        r->hex[r->n++] = sp + 1;
    }
}

static void free_ref(ref_hashes *r)
{
    free(r->text);
    free(r->names);
    free(r->hex);
}

/* Generates tensor i of the list in memory, as the file holds it, and
 * compares the first 16 hex digits of its SHA-256 with the reference. */
static void check_tensor(const fs_list *l, const ref_hashes *r, size_t i)
{
    const fs_tensor *t = &l->t[i];
    assert_true(i < r->n);
    assert_string_equal(r->names[i], t->name); /* the reference lists the same tensors in the same order */
    uint16_t *buf = malloc(t->numel * sizeof *buf);
    assert_non_null(buf);
    fs_fill(t, 1, 0, (size_t)t->numel, buf);
    fs_to_le16(buf, (size_t)t->numel);
    char hex[65];
    sha_hex(buf, 2 * t->numel, hex);
    free(buf);
    hex[16] = 0;
    if (strcmp(hex, r->hex[i]) != 0)
        fail_msg("%s (%s, %llu elements): sha256 %s..., reference %s...", t->name, fs_init_name(t->init),
                 (unsigned long long)t->numel, hex, r->hex[i]);
}

/* --------------------------------------------------------------- tests */

static void sha256_known_answers(void **state)
{
    (void)state;
    char hex[65];
    sha_hex("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sha_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"; /* 56 bytes: two-block padding */
    sha_hex(m, strlen(m), hex);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void readme_vectors(void **state)
{
    (void)state;
    assert_int_equal(fs_selftest(NULL), 0);
    assert_true(fs_fnv1a64("a", 1) == 0xaf63dc4c8601ec8cULL);
    const char *w = "model.diffusion_model.input_blocks.0.0.weight";
    assert_true(fs_key(1, w) == 0x12bdc913b69eeb7dULL);
    assert_int_equal(fs_k(0x12bdc913b69eeb7dULL, 1), 12631507);
    assert_true(fs_value(FS_WEIGHT, 36, 7332845) == -0.020976126194000244);
    assert_true(fs_value(FS_NORM, 0, 12931823) == 1.0541593432426453);
    assert_true(fs_value(FS_EMB, 0, 8469155) == 0.00033262132739365186);
    assert_true(fs_value(FS_BIAS, 0, 310003) == -0.019260895252227784);
    /* seed * G wraps modulo 2^64 */
    assert_true(fs_key(UINT64_MAX, w) == (fs_fnv1a64(w, strlen(w)) ^ (0 - FS_GOLDEN)));
}

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static void f16_rounding(void **state)
{
    (void)state;
    assert_int_equal(fs_f32_to_f16(0.0f), 0x0000);
    assert_int_equal(fs_f32_to_f16(-0.0f), 0x8000);
    assert_int_equal(fs_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(fs_f32_to_f16(-2.0f), 0xc000);
    assert_int_equal(fs_f32_to_f16(65504.0f), 0x7bff);
    assert_int_equal(fs_f32_to_f16(65519.99f), 0x7bff);
    assert_int_equal(fs_f32_to_f16(65520.0f), 0x7c00); /* tie to even overflows */
    assert_int_equal(fs_f32_to_f16(1e10f), 0x7c00);
    assert_int_equal(fs_f32_to_f16(-INFINITY), 0xfc00);
    assert_true((fs_f32_to_f16(NAN) & 0x7c00) == 0x7c00 && (fs_f32_to_f16(NAN) & 0x3ff) != 0);
    /* ties to even in the normal range: 1 + 2^-11 -> 1, 1 + 3*2^-11 -> 1 + 2^-9 */
    assert_int_equal(fs_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);
    assert_int_equal(fs_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);
    assert_int_equal(fs_f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f), 0x3c01);
    /* subnormals are kept: 2^-24 is the smallest, 2^-25 ties to 0, just above rounds up */
    assert_int_equal(fs_f32_to_f16(0x1p-24f), 0x0001);
    assert_int_equal(fs_f32_to_f16(0x1p-25f), 0x0000);
    assert_int_equal(fs_f32_to_f16(bits_f32(0x33000001u)), 0x0001);
    assert_int_equal(fs_f32_to_f16(-3 * 0x1p-25f), 0x8002); /* 1.5 units -> 2 (even) */
    assert_int_equal(fs_f32_to_f16(5 * 0x1p-25f), 0x0002);  /* 2.5 units -> 2 (even) */
    assert_int_equal(fs_f32_to_f16(0x3ffp-24f), 0x03ff);
    assert_int_equal(fs_f32_to_f16(0x1p-14f - 0x1p-26f), 0x0400); /* rounds up into the normals */
    assert_int_equal(fs_f32_to_f16(0x1p-14f), 0x0400);
}

/* The README's table: tensors, parameters, file size (8 + header + data). */
static void lists_match_readme(void **state)
{
    (void)state;
    static const struct {
        const char *family;
        size_t tensors;
        uint64_t params, bytes;
    } fam[] = {
        {"sd15", 1130, 1066235307ULL, 2132625150ULL},
        {"sd15-inpaint", 1130, 1066249707ULL, 2132653950ULL},
        {"sd21-v", 1228, 1303597228ULL, 2607359920ULL},
        {"sdxl", 2514, 3468837868ULL, 6938040400ULL},
    };
    for (size_t f = 0; f < sizeof fam / sizeof fam[0]; f++) {
        fs_list l;
        load_list(fam[f].family, &l);
        assert_int_equal(l.n, fam[f].tensors);
        assert_true(l.params == fam[f].params);
        size_t hlen;
        uint64_t data;
        char *h = fs_header(&l, &hlen, &data);
        assert_non_null(h);
        assert_int_equal(hlen % 8, 0);
        assert_true(data == 2 * fam[f].params);
        if (8 + hlen + data != fam[f].bytes)
            fail_msg("%s: file size %llu, README %llu", fam[f].family, (unsigned long long)(8 + hlen + data),
                     (unsigned long long)fam[f].bytes);
        /* compact JSON, first tensor at offset 0, scalars as [] */
        assert_true(h[0] == '{' && memchr(h, '\n', hlen) == NULL);
        char first[512];
        snprintf(first, sizeof first, "{\"%s\":{\"dtype\":\"F16\",\"shape\":[", l.t[0].name);
        assert_memory_equal(h, first, strlen(first));
        if (strcmp(fam[f].family, "sd15") != 0 && strcmp(fam[f].family, "sd15-inpaint") != 0) {
            char *ls = strstr(h, "logit_scale\":{\"dtype\":\"F16\",\"shape\":[],\"data_offsets\":[");
            assert_non_null(ls);
        }
        free(h);
        fs_list_free(&l);
    }
}

static void sd15_tensor_hashes(void **state)
{
    (void)state;
    fs_list l;
    ref_hashes r;
    load_list("sd15", &l);
    load_ref("sd15", &r);
    assert_int_equal(r.n, l.n);
    size_t checked = 0;
    int seen[5] = {0};
    for (size_t i = 0; i < l.n; i++) {
        /* the first 30 (CLIP: emb, norm, bias, weight, incl. the 38M token
         * embedding), then a spread of the cheaper ones, and the last */
        int pick = i < 30 || (i % 23 == 0 && l.t[i].numel <= (1u << 22)) || i == l.n - 1;
        if (!pick) continue;
        check_tensor(&l, &r, i);
        seen[l.t[i].init]++;
        checked++;
    }
    assert_true(checked > 70);
    assert_true(seen[FS_WEIGHT] && seen[FS_NORM] && seen[FS_BIAS] && seen[FS_EMB]);
    free_ref(&r);
    fs_list_free(&l);
}

/* The const init (open_clip logit_scale) appears only in sd21-v and sdxl. */
static void const_and_small_tensors_other_families(void **state)
{
    (void)state;
    const char *families[] = {"sd15-inpaint", "sd21-v", "sdxl"};
    for (size_t f = 0; f < 3; f++) {
        fs_list l;
        ref_hashes r;
        load_list(families[f], &l);
        load_ref(families[f], &r);
        assert_int_equal(r.n, l.n);
        int consts = 0;
        for (size_t i = 0; i < l.n; i++) {
            int is_const = l.t[i].init == FS_CONST;
            if (is_const || (i % 97 == 0 && l.t[i].numel <= (1u << 20))) check_tensor(&l, &r, i);
            consts += is_const;
        }
        assert_int_equal(consts, f == 0 ? 0 : 1);
        free_ref(&r);
        fs_list_free(&l);
    }
}

/* A hand-edited list must be refused, not silently written in another order. */
static void bad_lists_rejected(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "b F16 2 bias -\na F16 2 bias -\n",         /* not ascending */
        "a F16 2 bias -\na F16 2 bias -\n",         /* duplicate */
        "a F64 2 bias -\n",                         /* dtype (F16, BF16, F32) */
        "a F16 2,0 bias -\n",                       /* zero dim */
        "a F16 2 weight -\n",                       /* weight needs fan_in */
        "a F16 2 norm 3\n",                         /* param must be '-' */
        "a F16 2 gauss -\n",                        /* unknown init */
        "a\"b F16 2 bias -\n",                      /* would need JSON escaping */
        "a F16 2 bias\n",                           /* missing field */
        "# only a comment\n",                       /* empty */
    };
    char path[] = "/tmp/sdw_fullsize_list_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(bad[i], f);
        fclose(f);
        fs_list l;
        char err[256] = "";
        if (fs_list_load(path, &l, err, sizeof err) == 0) fail_msg("list %zu accepted: %s", i, bad[i]);
        assert_true(err[0] != 0);
    }
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("# header\na.s F16 scalar const 4.605170185988092\nb BF16 3,4 weight 4\n", f);
    fclose(f);
    fs_list l;
    char err[256];
    assert_int_equal(fs_list_load(path, &l, err, sizeof err), 0);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.t[0].ndim, 0);
    assert_true(l.t[0].numel == 1 && l.t[0].param == 4.605170185988092);
    assert_true(l.t[1].numel == 12 && l.t[1].param == 4.0 && l.params == 13);
    assert_int_equal(l.t[0].dtype, FS_F16);
    assert_int_equal(l.t[1].dtype, FS_BF16);
    fs_list_free(&l);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sha256_known_answers),
        cmocka_unit_test(readme_vectors),
        cmocka_unit_test(f16_rounding),
        cmocka_unit_test(lists_match_readme),
        cmocka_unit_test(sd15_tensor_hashes),
        cmocka_unit_test(const_and_small_tensors_other_families),
        cmocka_unit_test(bad_lists_rejected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
