/* test_base64.c: RFC 4648 vectors, the variants clients send, and rejects. */
#include "testkit.h"
#include "io/base64.h"
#include <stdlib.h>
#include <string.h>

static const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
static const char *coded[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};

/* Decodes s (no limit to speak of) and checks the bytes. */
static void decodes_to(const char *s, const void *want, size_t want_n)
{
    uint8_t *out;
    size_t n;
    if (sdw_base64_decode(s, strlen(s), 1 << 20, &out, &n) != SDW_OK)
        fail_msg("\"%s\": %s", s, sdw_last_error());
    assert_non_null(out);
    assert_int_equal(n, want_n);
    assert_memory_equal(out, want, want_n);
    free(out);
}

static void rejects(const char *s, sdw_status want, const char *msg_part)
{
    uint8_t *out = (uint8_t *)1;
    size_t n = 99;
    assert_int_equal(sdw_base64_decode(s, strlen(s), 1 << 20, &out, &n), want);
    assert_null(out);
    assert_int_equal(n, 0);
    if (msg_part && !strstr(sdw_last_error(), msg_part))
        fail_msg("\"%s\": message \"%s\" lacks \"%s\"", s, sdw_last_error(), msg_part);
}

static void rfc4648_vectors(void **state)
{
    (void)state;
    for (int i = 0; i < 7; i++) {
        char *enc;
        size_t n;
        assert_int_equal(sdw_base64_encode(plain[i], strlen(plain[i]), &enc, &n), SDW_OK);
        assert_string_equal(enc, coded[i]);
        assert_int_equal(n, strlen(coded[i]));
        assert_int_equal(sdw_base64_encoded_len(strlen(plain[i])), n);
        free(enc);
        decodes_to(coded[i], plain[i], strlen(plain[i]));
    }
}

static void accepted_variants(void **state)
{
    (void)state;
    decodes_to("Zm9vYg", "foob", 4);                     /* no padding */
    decodes_to("Zm9vYmE", "fooba", 5);
    decodes_to("Zm9vYg=", "foob", 4);                    /* partial padding */
    decodes_to(" Zm9v\r\nYmFy\n", "foobar", 6);          /* whitespace and line breaks */
    decodes_to("Zm\t9v Ym Fy", "foobar", 6);
    decodes_to("Zg= =", "f", 1);
    decodes_to("data:image/png;base64,Zm9vYmFy", "foobar", 6);
    decodes_to("  DATA:image/jpeg;BASE64,Zm9v", "foo", 3);
    decodes_to("data:;base64,Zg==", "f", 1);
    decodes_to("data:image/png;name=x.png;base64,\nZm9v", "foo", 3);
    decodes_to("+/+/", "\xfb\xff\xbf", 3);               /* standard */
    decodes_to("-_-_", "\xfb\xff\xbf", 3);               /* URL-safe */
    decodes_to("Zh==", "f", 1);                          /* nonzero unused bits */
    decodes_to("", "", 0);
    decodes_to(" \n ", "", 0);
}

static void rejected(void **state)
{
    (void)state;
    rejects("Zm9v!", SDW_ERR_FORMAT, "'!' at offset 4");
    rejects("Zm9v\xc3\xa9", SDW_ERR_FORMAT, "0xc3 at offset 4");
    rejects("Zm9vY", SDW_ERR_FORMAT, "truncated");
    rejects("Zg=x", SDW_ERR_FORMAT, "after '='");
    rejects("Zm9v=", SDW_ERR_FORMAT, "'='");
    rejects("Zg===", SDW_ERR_FORMAT, "'='");
    rejects("====", SDW_ERR_FORMAT, "'='");
    rejects("data:image/png,Zm9v", SDW_ERR_FORMAT, "not base64");
    rejects("data:image/png;base64", SDW_ERR_FORMAT, "comma");
    rejects("Zm9v.Ym", SDW_ERR_FORMAT, "offset 4");
    /* an embedded NUL is a bad byte, not an end */
    uint8_t *out;
    size_t n;
    assert_int_equal(sdw_base64_decode("Zm9v\0Zm9v", 9, 100, &out, &n), SDW_ERR_FORMAT);
}

static void size_limit(void **state)
{
    (void)state;
    uint8_t *out = NULL;
    size_t n;
    assert_int_equal(sdw_base64_decode("Zm9vYmFy", 8, 5, &out, &n), SDW_ERR_NOMEM);
    assert_null(out);
    assert_non_null(strstr(sdw_last_error(), "limit"));
    assert_int_equal(sdw_base64_decode("Zm9vYmFy", 8, 6, &out, &n), SDW_OK);
    free(out);
    assert_int_equal(sdw_base64_decode("Zm9vYmE", 7, 5, &out, &n), SDW_OK);
    free(out);
}

static void round_trips(void **state)
{
    (void)state;
    uint8_t buf[300];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)(i * 167 + 13);
    for (size_t len = 0; len <= sizeof buf; len++) {
        char *enc;
        size_t n;
        assert_int_equal(sdw_base64_encode(buf, len, &enc, &n), SDW_OK);
        /* MIME-style lines of 76 characters decode too */
        char *wrapped = malloc(n + n / 76 * 2 + 1), *w = wrapped;
        for (size_t i = 0; i < n; i++) {
            *w++ = enc[i];
            if (i % 76 == 75) *w++ = '\r', *w++ = '\n';
        }
        *w = 0;
        decodes_to(enc, buf, len);
        decodes_to(wrapped, buf, len);
        free(wrapped);
        free(enc);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rfc4648_vectors), cmocka_unit_test(accepted_variants), cmocka_unit_test(rejected),
        cmocka_unit_test(size_limit), cmocka_unit_test(round_trips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
