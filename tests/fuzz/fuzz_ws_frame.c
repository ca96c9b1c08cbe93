/* fuzz_ws_frame.c: libFuzzer target for the WebSocket client-frame parser
 * of /ws (server/comfy_ws.h). The input's first byte picks how the rest, a
 * byte stream from a client, is cut into reads (the parser must not care):
 * the stream is fed whole and again in those pieces, and both runs must
 * hand over the same messages and end the same way. Every message must
 * keep to the limits (a data message within max_message, text valid UTF-8
 * by a second check, a control frame within 125 bytes), and a failure must
 * name a close code. The input's text up to its first NUL, cut at '|', also
 * goes through the handshake check. Seeds: corpus/fuzz_ws_frame/. */
#include "server/comfy_ws.h"
#include "core/error.h"
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_MESSAGE 4096

typedef struct {
    uint64_t hash;            /* of every message: opcode, length and bytes */
    int n;
} trace;

static void on_message(void *user, int opcode, const uint8_t *d, size_t n)
{
    trace *t = user;
    if (opcode == SDW_WS_OP_TEXT || opcode == SDW_WS_OP_BINARY) {
        if (n > MAX_MESSAGE) abort();
    } else if (opcode == SDW_WS_OP_PING || opcode == SDW_WS_OP_PONG || opcode == SDW_WS_OP_CLOSE) {
        if (n > 125) abort();
    } else {
        abort();
    }
    if (opcode == SDW_WS_OP_TEXT) {
        /* A second, simpler decoder: every sequence well-formed and minimal. */
        for (size_t i = 0; i < n;) {
            uint8_t c = d[i];
            size_t k;
            uint32_t cp;
            if (c < 0x80) k = 0, cp = c;
            else if (c >= 0xc2 && c < 0xe0) k = 1, cp = c & 0x1f;
            else if (c >= 0xe0 && c < 0xf0) k = 2, cp = c & 0x0f;
            else if (c >= 0xf0 && c < 0xf5) k = 3, cp = c & 0x07;
            else abort();
            if (k >= n - i) abort();
            for (size_t j = 1; j <= k; j++) {
                if ((d[i + j] & 0xc0) != 0x80) abort();
                cp = cp << 6 | (d[i + j] & 0x3f);
            }
            if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
                abort();
            i += k + 1;
        }
    }
    uint64_t h = t->hash ^ (uint64_t)opcode * 0x9e3779b97f4a7c15ULL ^ n;
    for (size_t i = 0; i < n; i++) h = (h ^ d[i]) * 0x100000001b3ULL;
    t->hash = h;
    t->n++;
}

/* Feeds stream in pieces of the sizes the pattern byte cycles through (0 = whole). */
static void feed(const uint8_t *s, size_t n, uint8_t pattern, trace *t, int *code, bool *closed)
{
    sdw_ws_parser p;
    sdw_ws_parser_init(&p, MAX_MESSAGE);
    size_t off = 0;
    unsigned k = 0;
    sdw_status st = SDW_OK;
    while (off < n && st == SDW_OK) {
        size_t piece = pattern ? (size_t)((pattern >> (k++ % 8)) & 7) + 1 : n;
        if (piece > n - off) piece = n - off;
        sdw_clear_error();
        st = sdw_ws_parser_feed(&p, s + off, piece, on_message, t);
        off += piece;
    }
    if (st != SDW_OK) {
        if (!sdw_last_error()[0]) abort();
        if (p.close_code != SDW_WS_CLOSE_PROTOCOL && p.close_code != SDW_WS_CLOSE_BAD_DATA &&
            p.close_code != SDW_WS_CLOSE_TOO_BIG)
            abort();
        /* A failed parser stays failed. */
        if (sdw_ws_parser_feed(&p, s, n, on_message, t) == SDW_OK) abort();
    } else if (p.close_code) {
        abort();
    }
    if (p.msg_len > MAX_MESSAGE || p.msg_len > p.msg_cap) abort();
    *code = p.close_code;
    *closed = p.closed;
    sdw_ws_parser_free(&p);
}

static void handshake(const uint8_t *data, size_t size)
{
    size_t n = 0;
    while (n < size && n < 512 && data[n]) n++;
    char buf[513];
    memcpy(buf, data, n);
    buf[n] = 0;
    char *f[4] = { buf, NULL, NULL, NULL };
    for (int i = 1; i < 4 && f[i - 1]; i++) {
        char *bar = strchr(f[i - 1], '|');
        if (bar) *bar = 0, f[i] = bar + 1;
    }
    char accept[29];
    sdw_clear_error();
    if (sdw_ws_handshake(f[0], f[1], f[2], f[3], accept) == SDW_OK) {
        if (strlen(accept) != 28) abort();
    } else if (!sdw_last_error()[0] || accept[0]) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    handshake(data, size);
    trace a = { 0, 0 }, b = { 0, 0 };
    int ca, cb;
    bool xa, xb;
    feed(data + 1, size - 1, 0, &a, &ca, &xa);
    feed(data + 1, size - 1, data[0] | 1, &b, &cb, &xb);
    if (a.hash != b.hash || a.n != b.n || ca != cb || xa != xb) abort();
    return 0;
}
