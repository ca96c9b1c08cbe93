/* test_comfy_ws.c: the pure parts of ComfyUI's /ws and folders on their
 * own: the WebSocket handshake (RFC 6455's own example key), the server
 * frame header at each length form, the client frame parser (masked,
 * fragmented with a ping between the fragments, any split of the bytes,
 * and every refusal with its close code), and the ComfyUI folder rules
 * (names inside a folder, SaveImage's counter and subfolders). The session
 * and the routes are tested end to end by test_comfy.mjs. */
#include "testkit.h"
#include "core/error.h"
#include "server/comfy_ws.h"
#include "server/engine_comfy.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_handshake(void **state)
{
    (void)state;
    char accept[29];
    /* RFC 6455 1.3's example. */
    assert_int_equal(sdw_ws_handshake("websocket", "keep-alive, Upgrade", "13", "dGhlIHNhbXBsZSBub25jZQ==", accept),
                     SDW_OK);
    assert_string_equal(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_int_equal(sdw_ws_handshake("WebSocket", "upgrade", "13", "dGhlIHNhbXBsZSBub25jZQ==", accept), SDW_OK);
    assert_int_not_equal(sdw_ws_handshake(NULL, "Upgrade", "13", "dGhlIHNhbXBsZSBub25jZQ==", accept), SDW_OK);
    assert_int_not_equal(sdw_ws_handshake("websocket", "keep-alive", "13", "dGhlIHNhbXBsZSBub25jZQ==", accept), SDW_OK);
    assert_int_not_equal(sdw_ws_handshake("websocket", "Upgrade", "8", "dGhlIHNhbXBsZSBub25jZQ==", accept), SDW_OK);
    assert_non_null(strstr(sdw_last_error(), "Sec-WebSocket-Version"));
    assert_int_not_equal(sdw_ws_handshake("websocket", "Upgrade", "13", "c2hvcnQ=", accept), SDW_OK);
    assert_non_null(strstr(sdw_last_error(), "Sec-WebSocket-Key"));
    assert_string_equal(accept, "");
}

static void test_frame_header(void **state)
{
    (void)state;
    uint8_t h[10];
    assert_int_equal(sdw_ws_frame_header(h, SDW_WS_OP_TEXT, 125), 2);
    assert_int_equal(h[0], 0x81);
    assert_int_equal(h[1], 125);
    assert_int_equal(sdw_ws_frame_header(h, SDW_WS_OP_BINARY, 126), 4);
    assert_int_equal(h[0], 0x82);
    assert_int_equal(h[1], 126);
    assert_int_equal(h[2] << 8 | h[3], 126);
    assert_int_equal(sdw_ws_frame_header(h, SDW_WS_OP_BINARY, 70000), 10);
    assert_int_equal(h[1], 127);
    assert_int_equal(h[7] << 16 | h[8] << 8 | h[9], 70000);
}

/* A masked client frame of payload into out; returns its length. */
static size_t frame(uint8_t *out, int b0, const void *payload, size_t n)
{
    static const uint8_t mask[4] = { 0x12, 0x34, 0x56, 0x78 };
    size_t k = 0;
    out[k++] = (uint8_t)b0;
    if (n < 126) {
        out[k++] = (uint8_t)(0x80 | n);
    } else {
        out[k++] = 0x80 | 126;
        out[k++] = (uint8_t)(n >> 8);
        out[k++] = (uint8_t)n;
    }
    memcpy(out + k, mask, 4);
    k += 4;
    for (size_t i = 0; i < n; i++) out[k + i] = ((const uint8_t *)payload)[i] ^ mask[i % 4];
    return k + n;
}

typedef struct {
    int ops[16];
    char data[16][512];
    size_t lens[16];
    int n;
} seen;

static void on_message(void *user, int opcode, const uint8_t *d, size_t n)
{
    seen *s = user;
    if (s->n == 16) return;
    s->ops[s->n] = opcode;
    s->lens[s->n] = n;
    memcpy(s->data[s->n], d, n < 511 ? n : 511);
    s->n++;
}

/* Feeds buf in pieces of `piece` bytes; returns the parser's last status. */
static sdw_status feed(sdw_ws_parser *p, const uint8_t *buf, size_t n, size_t piece, seen *s)
{
    sdw_status st = SDW_OK;
    for (size_t off = 0; off < n && st == SDW_OK; off += piece)
        st = sdw_ws_parser_feed(p, buf + off, off + piece <= n ? piece : n - off, on_message, s);
    return st;
}

static void test_parser(void **state)
{
    (void)state;
    uint8_t buf[2048];
    size_t n = 0;
    n += frame(buf + n, 0x01, "hel", 3);              /* text, not final */
    n += frame(buf + n, 0x89, "pi", 2);               /* a ping between fragments */
    n += frame(buf + n, 0x00, "lo \xc3\xa9", 5);      /* continuation, not final */
    char big[300];
    memset(big, 'x', sizeof big);
    n += frame(buf + n, 0x80, big, sizeof big);       /* the last fragment, 16-bit length */
    n += frame(buf + n, 0x82, "\x00\x01", 2);         /* binary */
    n += frame(buf + n, 0x88, "\x03\xe8" "bye", 5);   /* close 1000 */
    n += frame(buf + n, 0x81, "ignored", 7);          /* after close */
    for (size_t piece = 1; piece <= n; piece = piece * 3 + 1) {
        sdw_ws_parser p;
        seen s = { 0 };
        sdw_ws_parser_init(&p, 0);
        assert_int_equal(feed(&p, buf, n, piece, &s), SDW_OK);
        assert_int_equal(s.n, 4);
        assert_int_equal(s.ops[0], SDW_WS_OP_PING);
        assert_memory_equal(s.data[0], "pi", 2);
        assert_int_equal(s.ops[1], SDW_WS_OP_TEXT);
        assert_int_equal(s.lens[1], 8 + sizeof big);
        assert_memory_equal(s.data[1], "hello \xc3\xa9xx", 10);
        assert_int_equal(s.ops[2], SDW_WS_OP_BINARY);
        assert_int_equal(s.lens[2], 2);
        assert_int_equal(s.ops[3], SDW_WS_OP_CLOSE);
        assert_memory_equal(s.data[3], "\x03\xe8" "bye", 5);
        assert_true(p.closed);
        sdw_ws_parser_free(&p);
    }
}

/* One stream that must fail with close code code. */
static void refused(const uint8_t *buf, size_t n, size_t max, int code)
{
    sdw_ws_parser p;
    seen s = { 0 };
    sdw_ws_parser_init(&p, max);
    assert_int_not_equal(feed(&p, buf, n, n, &s), SDW_OK);
    assert_int_equal(p.close_code, code);
    assert_int_not_equal(sdw_ws_parser_feed(&p, buf, n, on_message, &s), SDW_OK);
    sdw_ws_parser_free(&p);
}

static void test_parser_refusals(void **state)
{
    (void)state;
    uint8_t buf[512];
    size_t n;
    static const uint8_t unmasked[] = { 0x81, 0x02, 'h', 'i' };
    refused(unmasked, sizeof unmasked, 0, SDW_WS_CLOSE_PROTOCOL);
    n = frame(buf, 0xc1, "x", 1);                     /* RSV1 without an extension */
    refused(buf, n, 0, SDW_WS_CLOSE_PROTOCOL);
    n = frame(buf, 0x83, "x", 1);                     /* a reserved data opcode */
    refused(buf, n, 0, SDW_WS_CLOSE_PROTOCOL);
    n = frame(buf, 0x09, "x", 1);                     /* a fragmented ping */
    refused(buf, n, 0, SDW_WS_CLOSE_PROTOCOL);
    char long_ping[126] = { 0 };
    n = frame(buf, 0x89, long_ping, sizeof long_ping);
    refused(buf, n, 0, SDW_WS_CLOSE_PROTOCOL);
    n = frame(buf, 0x80, "x", 1);                     /* a continuation of nothing */
    refused(buf, n, 0, SDW_WS_CLOSE_PROTOCOL);
    n = frame(buf, 0x01, "a", 1);
    n += frame(buf + n, 0x81, "b", 1);                /* a new message inside a fragmented one */
    refused(buf, n, 0, SDW_WS_CLOSE_PROTOCOL);
    n = frame(buf, 0x81, "\xc0\xaf", 2);              /* an overlong encoding */
    refused(buf, n, 0, SDW_WS_CLOSE_BAD_DATA);
    n = frame(buf, 0x81, "\xed\xa0\x80", 3);          /* a surrogate */
    refused(buf, n, 0, SDW_WS_CLOSE_BAD_DATA);
    n = frame(buf, 0x01, "\xe2\x82", 2);              /* UTF-8 split across fragments is fine... */
    n += frame(buf + n, 0x80, "\xac", 1);
    sdw_ws_parser p;
    seen s = { 0 };
    sdw_ws_parser_init(&p, 0);
    assert_int_equal(feed(&p, buf, n, 1, &s), SDW_OK);
    assert_int_equal(s.n, 1);
    sdw_ws_parser_free(&p);
    n = frame(buf, 0x88, "\x03", 1);                  /* a close frame of one byte */
    refused(buf, n, 0, SDW_WS_CLOSE_PROTOCOL);
    n = frame(buf, 0x01, "0123456789", 10);           /* ...but not past max_message over fragments */
    n += frame(buf + n, 0x80, "0123456789", 10);
    refused(buf, n, 16, SDW_WS_CLOSE_TOO_BIG);
    static const uint8_t huge[] = { 0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0 };   /* 2^63 + 1 */
    refused(huge, sizeof huge, 0, SDW_WS_CLOSE_PROTOCOL);
    static const uint8_t big[] = { 0x82, 0xff, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0 };       /* 4 GiB */
    refused(big, sizeof big, 0, SDW_WS_CLOSE_TOO_BIG);
}

static void test_folders(void **state)
{
    (void)state;
    char dir[] = "/tmp/sdw-comfy-ws-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[4096], outside[4200];
    /* Names: inside, or refused. */
    assert_int_equal(sdw_comfy_path(dir, NULL, "a.png", false, path, sizeof path), SDW_OK);
    assert_int_equal(sdw_comfy_path(dir, NULL, "a.png", true, path, sizeof path), SDW_ERR_IO);
    assert_int_equal(sdw_comfy_path(dir, NULL, "../a.png", false, path, sizeof path), SDW_ERR_INVALID_ARG);
    assert_int_equal(sdw_comfy_path(dir, "x/../..", "a.png", false, path, sizeof path), SDW_ERR_INVALID_ARG);
    assert_int_equal(sdw_comfy_path(dir, NULL, "/etc/passwd", false, path, sizeof path), SDW_ERR_INVALID_ARG);
    assert_int_equal(sdw_comfy_mkdirs(dir, "../up"), SDW_ERR_INVALID_ARG);
    /* A symlink out of the folder is refused once it exists. */
    snprintf(outside, sizeof outside, "%s/link", dir);
    assert_int_equal(symlink("/etc/hostname", outside), 0);
    assert_int_equal(sdw_comfy_path(dir, NULL, "link", true, path, sizeof path), SDW_ERR_INVALID_ARG);
    /* SaveImage's names: a counter per prefix and folder, subfolders from the prefix. */
    sdw_comfy_file f;
    assert_int_equal(sdw_comfy_save_path(dir, "ComfyUI", 64, 64, path, sizeof path, &f), SDW_OK);
    assert_string_equal(f.filename, "ComfyUI_00001_.png");
    assert_string_equal(f.subfolder, "");
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    fclose(fp);
    snprintf(outside, sizeof outside, "%s/ComfyUI_00041_.png", dir);   /* a gap: one past the highest */
    assert_non_null(fp = fopen(outside, "wb"));
    fclose(fp);
    assert_int_equal(sdw_comfy_save_path(dir, "ComfyUI", 64, 64, path, sizeof path, &f), SDW_OK);
    assert_string_equal(f.filename, "ComfyUI_00042_.png");
    assert_int_equal(sdw_comfy_save_path(dir, "Other", 64, 64, path, sizeof path, &f), SDW_OK);
    assert_string_equal(f.filename, "Other_00001_.png");
    assert_int_equal(sdw_comfy_save_path(dir, "./a//b/pic_%width%x%height%", 64, 32, path, sizeof path, &f), SDW_OK);
    assert_string_equal(f.subfolder, "a/b");
    assert_string_equal(f.filename, "pic_64x32_00001_.png");
    assert_int_equal(sdw_comfy_save_path(dir, "a/../../x", 64, 64, path, sizeof path, &f), SDW_ERR_INVALID_ARG);
    assert_int_equal(sdw_comfy_save_path(dir, "/abs", 64, 64, path, sizeof path, &f), SDW_ERR_INVALID_ARG);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake), cmocka_unit_test(test_frame_header), cmocka_unit_test(test_parser),
        cmocka_unit_test(test_parser_refusals), cmocka_unit_test(test_folders),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
