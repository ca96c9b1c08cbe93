/* test_safetensors_malformed.c: the safetensors reader on hand-built byte
 * images, good and bad. Every malformed image must be rejected, through
 * sdw_st_parse and through sdw_st_open on a temporary file, with the expected
 * status and a message that names the file and (where there is one) the
 * tensor; nothing may crash or leak. */
#include "testkit.h"
#include "core/error.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- building images ---- */

typedef struct {
    uint8_t *buf;
    size_t size;
} image;

/* 8-byte little-endian header length (hlen, or the JSON's length when
 * hlen == USE_JSON_LEN) + JSON + data. */
#define USE_JSON_LEN UINT64_MAX
static image make_image_hlen(const char *json, const void *data, size_t data_len, uint64_t hlen)
{
    size_t jlen = strlen(json);
    if (hlen == USE_JSON_LEN) hlen = jlen;
    image im = { .size = 8 + jlen + data_len };
    im.buf = malloc(im.size);
    assert_non_null(im.buf);
    for (int i = 0; i < 8; i++) im.buf[i] = (uint8_t)(hlen >> (8 * i));
    memcpy(im.buf + 8, json, jlen);
    if (data_len) memcpy(im.buf + 8 + jlen, data, data_len);
    return im;
}

static image make_image(const char *json, const void *data, size_t data_len)
{
    return make_image_hlen(json, data, data_len, USE_JSON_LEN);
}

static image raw_image(const void *bytes, size_t n)
{
    image im = { .buf = malloc(n ? n : 1), .size = n };
    assert_non_null(im.buf);
    if (n) memcpy(im.buf, bytes, n);
    return im;
}

static const uint8_t zeros[256];

/* ---- running a case both ways ---- */

static char *write_temp(const image *im)
{
    char *path = strdup("/tmp/sdw_st_malformed_XXXXXX");
    assert_non_null(path);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t off = 0;
    while (off < im->size) {
        ssize_t w = write(fd, im->buf + off, im->size - off);
        assert_true(w > 0);
        off += (size_t)w;
    }
    close(fd);
    return path;
}

static void expect_message(const char *what, const char *via, const char *file, const char *tensor,
                           const char *substr)
{
    const char *msg = sdw_last_error();
    printf("  %-34s %-5s %s\n", what, via, msg);
    if (!strstr(msg, file)) fail_msg("%s (%s): message \"%s\" does not name the file %s", what, via, msg, file);
    if (tensor && !strstr(msg, tensor))
        fail_msg("%s (%s): message \"%s\" does not name the tensor %s", what, via, msg, tensor);
    if (substr && !strstr(msg, substr))
        fail_msg("%s (%s): message \"%s\" lacks \"%s\"", what, via, msg, substr);
}

/* Expects the image to be rejected with status want; frees it. */
static void reject(const char *what, image im, sdw_status want, const char *tensor, const char *substr)
{
    const char *name = "case.safetensors";
    sdw_safetensors *st = (sdw_safetensors *)&st;   /* must be reset to NULL */
    sdw_clear_error();
    sdw_status s = sdw_st_parse(im.buf, im.size, name, &st);
    if (s != want)
        fail_msg("%s (parse): status %s, want %s (%s)", what, sdw_status_name(s), sdw_status_name(want),
                 sdw_last_error());
    assert_null(st);
    expect_message(what, "parse", name, tensor, substr);

    char *path = write_temp(&im);
    st = (sdw_safetensors *)&st;
    sdw_clear_error();
    s = sdw_st_open(path, &st);
    if (s != want)
        fail_msg("%s (open): status %s, want %s (%s)", what, sdw_status_name(s), sdw_status_name(want),
                 sdw_last_error());
    assert_null(st);
    expect_message(what, "open", path, tensor, substr);
    unlink(path);
    free(path);
    free(im.buf);
}

/* ---- the cases ---- */

static void too_short(void **state)
{
    (void)state;
    reject("empty file", raw_image(NULL, 0), SDW_ERR_FORMAT, NULL, "too short");
    reject("7 bytes", raw_image("\x02\0\0\0\0\0\0", 7), SDW_ERR_FORMAT, NULL, "too short");
    /* a header length and nothing else */
    reject("8 bytes, header length 2", raw_image("\x02\0\0\0\0\0\0\0", 8), SDW_ERR_FORMAT, NULL, "past the end");
    reject("8 bytes, header length 0", raw_image("\0\0\0\0\0\0\0\0", 8), SDW_ERR_FORMAT, NULL, "JSON");
}

static void bad_header_length(void **state)
{
    (void)state;
    const char *json = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    reject("header length beyond the file", make_image_hlen(json, zeros, 8, 1000), SDW_ERR_FORMAT, NULL,
           "past the end");
    reject("header length 1 past the file", make_image_hlen(json, zeros, 8, strlen(json) + 9), SDW_ERR_FORMAT,
           NULL, "past the end");
    reject("huge header length (200 MB)", make_image_hlen(json, zeros, 8, (uint64_t)200 << 20), SDW_ERR_FORMAT,
           NULL, "100 MB");
    reject("header length 2^64-2", make_image_hlen(json, zeros, 8, UINT64_MAX - 1), SDW_ERR_FORMAT, NULL,
           "100 MB");
    reject("header length cuts the JSON", make_image_hlen(json, zeros, 8, 20), SDW_ERR_FORMAT, NULL, "JSON");
}

static void bad_json(void **state)
{
    (void)state;
    reject("header not JSON", make_image("{not json at all", NULL, 0), SDW_ERR_FORMAT, NULL, "JSON");
    reject("header binary garbage", make_image("\x01\x02\xff\xfe", NULL, 0), SDW_ERR_FORMAT, NULL, "JSON");
    reject("header a JSON array", make_image("[{\"dtype\":\"F32\"}]", NULL, 0), SDW_ERR_FORMAT, NULL,
           "not a JSON object");
    reject("header a JSON string", make_image("\"hello\"", NULL, 0), SDW_ERR_FORMAT, NULL, "not a JSON object");
    reject("header a JSON number", make_image("42", NULL, 0), SDW_ERR_FORMAT, NULL, "not a JSON object");
    reject("__metadata__ not an object", make_image("{\"__metadata__\":\"x\"}", NULL, 0), SDW_ERR_FORMAT,
           "__metadata__", "not an object");
    reject("__metadata__ an array", make_image("{\"__metadata__\":[\"a\",\"b\"]}", NULL, 0), SDW_ERR_FORMAT,
           "__metadata__", "not an object");
}

static void missing_fields(void **state)
{
    (void)state;
    reject("entry not an object", make_image("{\"w\":5}", NULL, 0), SDW_ERR_FORMAT, "w", "not an object");
    reject("missing data_offsets", make_image("{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", zeros, 8),
           SDW_ERR_FORMAT, "w", "data_offsets");
    reject("missing dtype", make_image("{\"w\":{\"shape\":[2],\"data_offsets\":[0,8]}}", zeros, 8),
           SDW_ERR_FORMAT, "w", "dtype");
    reject("missing shape", make_image("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", zeros, 8),
           SDW_ERR_FORMAT, "w", "shape");
    reject("dtype not a string", make_image("{\"w\":{\"dtype\":7,\"shape\":[2],\"data_offsets\":[0,8]}}", zeros, 8),
           SDW_ERR_FORMAT, "w", "dtype");
    reject("shape not an array",
           make_image("{\"w\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", zeros, 8), SDW_ERR_FORMAT,
           "w", "shape");
    reject("data_offsets one number",
           make_image("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8]}}", zeros, 8), SDW_ERR_FORMAT,
           "w", "data_offsets");
    reject("data_offsets three numbers",
           make_image("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]}}", zeros, 8),
           SDW_ERR_FORMAT, "w", "data_offsets");
    reject("data_offsets strings",
           make_image("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[\"0\",\"8\"]}}", zeros, 8),
           SDW_ERR_FORMAT, "w", "data_offsets");
    reject("data_offsets negative",
           make_image("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", zeros, 8),
           SDW_ERR_FORMAT, "w", "data_offsets");
    reject("data_offsets fractional",
           make_image("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0.5,8.5]}}", zeros, 8),
           SDW_ERR_FORMAT, "w", "data_offsets");
}

static void bad_ranges(void **state)
{
    (void)state;
    reject("truncated data section",
           make_image("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", zeros, 8),
           SDW_ERR_FORMAT, "w", "outside the data section");
    reject("data_offsets out of range",
           make_image("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"far\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[1000000,1000008]}}", zeros, 16),
           SDW_ERR_FORMAT, "far", "outside the data section");
    reject("data_offsets at 2^53",
           make_image("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],"
                      "\"data_offsets\":[9007199254740991,9007199254740992]}}", zeros, 8),
           SDW_ERR_FORMAT, "w", "outside the data section");
    reject("data_offsets beyond 2^53",
           make_image("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],"
                      "\"data_offsets\":[18446744073709551615,18446744073709551616]}}", zeros, 8),
           SDW_ERR_FORMAT, "w", "data_offsets");
    reject("begin > end", make_image("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", zeros, 16),
           SDW_ERR_FORMAT, "w", "begin after");
    reject("begin > end, empty shape",
           make_image("{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", zeros, 16),
           SDW_ERR_FORMAT, "w", "begin after");
    reject("size/shape mismatch (short)",
           make_image("{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", zeros, 16),
           SDW_ERR_FORMAT, "w", "need 12");
    reject("size/shape mismatch (long)",
           make_image("{\"w\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", zeros, 16),
           SDW_ERR_FORMAT, "w", "need 8");
    reject("overlapping tensors",
           make_image("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", zeros, 16),
           SDW_ERR_FORMAT, "b", "overlap");
    reject("identical ranges",
           make_image("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"b\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}", zeros, 16),
           SDW_ERR_FORMAT, "a", "overlap");
    /* an empty tensor sorted between two overlapping ones must not hide the overlap */
    reject("overlap around an empty tensor",
           make_image("{\"big\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                      "\"empty\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
                      "\"inner\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", zeros, 16),
           SDW_ERR_FORMAT, "inner", "overlap");
    reject("range containing two others",
           make_image("{\"outer\":{\"dtype\":\"U8\",\"shape\":[32],\"data_offsets\":[0,32]},"
                      "\"x\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[8,12]},"
                      "\"y\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[20,24]}}", zeros, 32),
           SDW_ERR_FORMAT, "outer", "overlap");
}

static void bad_shapes_and_dtypes(void **state)
{
    (void)state;
    reject("unknown dtype", make_image("{\"w\":{\"dtype\":\"X9\",\"shape\":[2],\"data_offsets\":[0,8]}}", zeros, 8),
           SDW_ERR_UNSUPPORTED, "w", "unsupported dtype X9 in tensor w");
    reject("lower-case dtype",
           make_image("{\"weight\":{\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]}}", zeros, 8),
           SDW_ERR_UNSUPPORTED, "weight", "unsupported dtype f32 in tensor weight");
    reject("shape overflow",
           make_image("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,8]}}",
                      zeros, 8), SDW_ERR_FORMAT, "w", "overflow");
    reject("shape overflow in bytes",
           make_image("{\"w\":{\"dtype\":\"F64\",\"shape\":[1099511627776,2097152],\"data_offsets\":[0,8]}}",
                      zeros, 8), SDW_ERR_FORMAT, "w", "overflow");
    reject("shape entry 2^64",
           make_image("{\"w\":{\"dtype\":\"F32\",\"shape\":[18446744073709551616],\"data_offsets\":[0,8]}}",
                      zeros, 8), SDW_ERR_FORMAT, "w", "shape");
    reject("shape entry 1e300",
           make_image("{\"w\":{\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,8]}}", zeros, 8),
           SDW_ERR_FORMAT, "w", "shape");
    reject("negative shape entry",
           make_image("{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", zeros, 8),
           SDW_ERR_FORMAT, "w", "shape");
    reject("negative shape pair",
           make_image("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1,-2],\"data_offsets\":[0,8]}}", zeros, 8),
           SDW_ERR_FORMAT, "w", "shape");
    reject("fractional shape entry",
           make_image("{\"w\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,10]}}", zeros, 16),
           SDW_ERR_FORMAT, "w", "shape");
    reject("string shape entry",
           make_image("{\"w\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", zeros, 8),
           SDW_ERR_FORMAT, "w", "shape");
    reject("null shape entry",
           make_image("{\"w\":{\"dtype\":\"F32\",\"shape\":[null],\"data_offsets\":[0,8]}}", zeros, 8),
           SDW_ERR_FORMAT, "w", "shape");
    reject("too many dimensions",
           make_image("{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", zeros, 8),
           SDW_ERR_UNSUPPORTED, "w", "dimensions");
    reject("duplicate names",
           make_image("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                      "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", zeros, 8),
           SDW_ERR_FORMAT, "w", "twice");
    reject("duplicate names among others",
           make_image("{\"dup\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                      "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
                      "\"dup\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", zeros, 12),
           SDW_ERR_FORMAT, "dup", "twice");
}

static void not_a_file(void **state)
{
    (void)state;
    sdw_safetensors *st = (sdw_safetensors *)&st;
    assert_int_equal(sdw_st_open("/nonexistent/dir/model.safetensors", &st), SDW_ERR_IO);
    assert_null(st);
    assert_non_null(strstr(sdw_last_error(), "/nonexistent/dir/model.safetensors"));
    st = (sdw_safetensors *)&st;
    assert_int_equal(sdw_st_open("/tmp", &st), SDW_ERR_IO);
    assert_null(st);
    assert_non_null(strstr(sdw_last_error(), "/tmp"));
}

/* ---- a valid file ---- */

static void check_valid(sdw_safetensors *st)
{
    assert_int_equal(st->n_tensors, 4);
    /* I64 ids */
    const sdw_st_tensor *ids = sdw_st_find(st, "ids");
    assert_non_null(ids);
    assert_int_equal(ids->dtype, SDW_ST_I64);
    assert_int_equal(ids->ndim, 1);
    assert_int_equal(ids->shape[0], 3);
    assert_int_equal(ids->numel, 3);
    assert_int_equal(ids->nbytes, 24);
    float f[8];
    sdw_clear_error();
    assert_int_equal(sdw_st_read_f32(st, ids, f), SDW_ERR_UNSUPPORTED);
    assert_non_null(strstr(sdw_last_error(), "unsupported dtype I64 in tensor ids"));
    assert_non_null(strstr(sdw_last_error(), st->path));
    int64_t *v = NULL;
    assert_int_equal(sdw_st_read_i64(st, ids, &v), SDW_OK);
    assert_int_equal(v[0], 49406);
    assert_int_equal(v[1], -5);
    assert_int_equal(v[2], INT64_MAX);
    free(v);
    /* F16 h [2,2] */
    const sdw_st_tensor *h = sdw_st_find(st, "h");
    assert_non_null(h);
    assert_int_equal(h->dtype, SDW_ST_F16);
    assert_int_equal(h->ndim, 2);
    assert_int_equal(h->shape[0], 2);
    assert_int_equal(h->shape[1], 2);
    assert_int_equal(sdw_st_read_f32(st, h, f), SDW_OK);
    const float want_h[4] = { 1.0f, -2.0f, 0.5f, 65504.0f };
    assert_memory_equal(f, want_h, sizeof want_h);
    /* BF16 b [3] */
    const sdw_st_tensor *b = sdw_st_find(st, "b");
    assert_non_null(b);
    assert_int_equal(sdw_st_read_f32(st, b, f), SDW_OK);
    const float want_b[3] = { 1.0f, -3.0f, 0.15625f };
    assert_memory_equal(f, want_b, sizeof want_b);
    /* an empty F32 tensor (shape [0, 5]) */
    const sdw_st_tensor *e = sdw_st_find(st, "empty");
    assert_non_null(e);
    assert_int_equal(e->numel, 0);
    assert_int_equal(e->nbytes, 0);
    assert_int_equal(sdw_st_read_f32(st, e, f), SDW_OK);
    assert_null(sdw_st_find(st, "missing"));
    /* loading through the tensor API */
    sdw_tensor t;
    assert_int_equal(sdw_st_load_f32(st, "h", &t), SDW_OK);
    assert_memory_equal(t.data, want_h, sizeof want_h);
    sdw_tensor_free(&t);
    sdw_clear_error();
    assert_int_equal(sdw_st_load_f32(st, "nope", &t), SDW_ERR_FORMAT);
    assert_non_null(strstr(sdw_last_error(), "nope"));
    /* metadata: string values kept, others skipped */
    assert_int_equal(st->n_meta, 2);
    assert_string_equal(sdw_st_meta_get(st, "format"), "pt");
    assert_string_equal(sdw_st_meta_get(st, "note"), "h\xc3\xa9llo \"q\"");
    assert_null(sdw_st_meta_get(st, "num"));
    assert_null(sdw_st_meta_get(st, "absent"));
}

/* pad: spaces after the JSON to shift the data section (an odd amount leaves
 * the 16-bit tensors at odd addresses). */
static image valid_image(int pad)
{
    static const char json[] =
        "{\"__metadata__\":{\"format\":\"pt\",\"note\":\"h\\u00e9llo \\\"q\\\"\",\"num\":5},"
        "\"ids\":{\"dtype\":\"I64\",\"shape\":[3],\"data_offsets\":[0,24]},"
        "\"h\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[24,32]},"
        "\"empty\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[32,32]},"
        "\"b\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[32,38]}}";
    uint8_t data[38];
    const int64_t ids[3] = { 49406, -5, INT64_MAX };
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < 8; k++) data[8 * i + k] = (uint8_t)((uint64_t)ids[i] >> (8 * k));
    const uint16_t h[4] = { 0x3c00, 0xc000, 0x3800, 0x7bff };   /* 1, -2, 0.5, 65504 */
    const uint16_t b[3] = { 0x3f80, 0xc040, 0x3e20 };           /* 1, -3, 0.15625 */
    for (int i = 0; i < 4; i++) { data[24 + 2 * i] = (uint8_t)h[i]; data[25 + 2 * i] = (uint8_t)(h[i] >> 8); }
    for (int i = 0; i < 3; i++) { data[32 + 2 * i] = (uint8_t)b[i]; data[33 + 2 * i] = (uint8_t)(b[i] >> 8); }
    char padded[sizeof json + 16];
    snprintf(padded, sizeof padded, "%s%*s", json, pad, "");
    return make_image(padded, data, sizeof data);
}

/* PyTorch checkpoints are refused by content, whatever they are called, with
 * a message to convert them; a real safetensors file whose header length
 * happens to begin with the same bytes (640 = 0x80 0x02) still opens. */
static void pytorch_checkpoints(void **state)
{
    (void)state;
    static const uint8_t legacy[] = "\x80\x02\x8a\x0alo\xfc\x9c" "F\xf9 j\xa8" "P\x19.\x80\x02M\xe9\x03.";
    static const uint8_t proto4[] = "\x80\x04\x95\x10" "\0\0\0\0\0\0\0}\x94\x8c\x05" "state\x94K\x01s.";
    static const uint8_t zip[] = "PK\x03\x04\x14\0\0\0\0\0\0\0\0\0archive/data.pkl";
    reject("torch.save legacy pickle", raw_image(legacy, sizeof legacy - 1), SDW_ERR_UNSUPPORTED, NULL,
           "convert it to .safetensors");
    reject("pickle protocol 4", raw_image(proto4, sizeof proto4 - 1), SDW_ERR_UNSUPPORTED, NULL,
           "convert it to .safetensors");
    reject("torch.save zip", raw_image(zip, sizeof zip - 1), SDW_ERR_UNSUPPORTED, NULL, "convert it to .safetensors");
    char json[641];
    memset(json, ' ', 640);
    memcpy(json, "{}", 2);
    json[640] = 0;
    image im = make_image(json, NULL, 0);
    assert_memory_equal(im.buf, "\x80\x02\0\0\0\0\0\0", 8);
    sdw_safetensors *st = NULL;
    assert_int_equal(sdw_st_parse(im.buf, im.size, "640.safetensors", &st), SDW_OK);
    sdw_st_close(st);
    free(im.buf);
}

static void valid_file(void **state)
{
    (void)state;
    for (int pad = 0; pad < 8; pad++) {
        image im = valid_image(pad);
        sdw_safetensors *st = NULL;
        assert_int_equal(sdw_st_parse(im.buf, im.size, "valid.safetensors", &st), SDW_OK);
        assert_null(st->map);
        assert_string_equal(st->path, "valid.safetensors");
        check_valid(st);
        sdw_st_close(st);

        char *path = write_temp(&im);
        st = NULL;
        assert_int_equal(sdw_st_open(path, &st), SDW_OK);
        assert_non_null(st->map);
        check_valid(st);
        sdw_st_close(st);
        unlink(path);
        free(path);
        free(im.buf);
    }
    /* an empty header and a data section nobody uses are fine */
    image im = make_image("{}", zeros, 4);
    sdw_safetensors *st = NULL;
    assert_int_equal(sdw_st_parse(im.buf, im.size, NULL, &st), SDW_OK);
    assert_int_equal(st->n_tensors, 0);
    assert_int_equal(st->n_meta, 0);
    assert_null(sdw_st_find(st, "x"));
    assert_null(sdw_st_meta_get(st, "x"));
    sdw_st_close(st);
    free(im.buf);
    sdw_st_close(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(too_short),
        cmocka_unit_test(bad_header_length),
        cmocka_unit_test(bad_json),
        cmocka_unit_test(missing_fields),
        cmocka_unit_test(bad_ranges),
        cmocka_unit_test(bad_shapes_and_dtypes),
        cmocka_unit_test(not_a_file),
        cmocka_unit_test(pytorch_checkpoints),
        cmocka_unit_test(valid_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
