/* comfy_ws.c: the WebSocket protocol of /ws (comfy_ws.h): the handshake,
 * server frames, the client frame parser, and one connection's loop.
 *
 * The parser is a byte-at-a-time state machine over a stream, so a frame
 * may arrive in any split (one byte per read, or many frames per read);
 * everything a client controls (lengths, opcodes, fragments) is checked
 * before it is believed, and a message is never held past max_message. */
#include "server/comfy_ws.h"
#include "core/error.h"
#include "io/base64.h"
#include <errno.h>
#include <openssl/evp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* RFC 6455 1.3: the GUID every accept key is made with. */
static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/* Whether a comma-separated header value holds token (case-insensitive). */
static bool has_token(const char *value, const char *token)
{
    size_t n = strlen(token);
    for (const char *p = value; p && *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        const char *e = p;
        while (*e && *e != ',') e++;
        const char *t = e;
        while (t > p && (t[-1] == ' ' || t[-1] == '\t')) t--;
        if ((size_t)(t - p) == n && !strncasecmp(p, token, n)) return true;
        p = e;
    }
    return false;
}

sdw_status sdw_ws_handshake(const char *upgrade, const char *connection, const char *version, const char *key,
                            char accept[29])
{
    accept[0] = 0;
    if (!upgrade || !has_token(upgrade, "websocket"))
        return sdw_fail(SDW_ERR_INVALID_ARG, "Upgrade: expected websocket (got %s)", upgrade ? upgrade : "none");
    if (!connection || !has_token(connection, "upgrade"))
        return sdw_fail(SDW_ERR_INVALID_ARG, "Connection: expected a value with Upgrade");
    if (!version || strcmp(version, "13"))
        return sdw_fail(SDW_ERR_INVALID_ARG, "Sec-WebSocket-Version: only 13 is spoken (got %s)",
                        version ? version : "none");
    uint8_t *raw = NULL;
    size_t n = 0;
    if (!key || strlen(key) != 24 || sdw_base64_decode(key, 24, 16, &raw, &n) != SDW_OK || n != 16) {
        free(raw);
        return sdw_fail(SDW_ERR_INVALID_ARG, "Sec-WebSocket-Key: expected 16 bytes in base64");
    }
    free(raw);
    char buf[24 + sizeof ws_guid];
    memcpy(buf, key, 24);
    memcpy(buf + 24, ws_guid, sizeof ws_guid);
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned md_len = 0;
    if (!EVP_Digest(buf, strlen(buf), md, &md_len, EVP_sha1(), NULL) || md_len != 20)
        return sdw_fail(SDW_ERR_BACKEND, "Sec-WebSocket-Accept: SHA-1 failed");
    char *b64 = NULL;
    size_t len = 0;
    if (sdw_base64_encode(md, 20, &b64, &len) != SDW_OK) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    if (len != 28) {
        free(b64);
        return sdw_fail(SDW_ERR_BACKEND, "Sec-WebSocket-Accept: bad length");
    }
    memcpy(accept, b64, 29);
    free(b64);
    return SDW_OK;
}

size_t sdw_ws_frame_header(uint8_t out[10], int opcode, size_t n)
{
    out[0] = (uint8_t)(0x80 | (opcode & 0x0f));
    if (n < 126) {
        out[1] = (uint8_t)n;
        return 2;
    }
    if (n <= 0xffff) {
        out[1] = 126;
        out[2] = (uint8_t)(n >> 8);
        out[3] = (uint8_t)n;
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; i++) out[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
    return 10;
}

/* ---------------------------------------------------------------- the parser */

void sdw_ws_parser_init(sdw_ws_parser *p, size_t max_message)
{
    memset(p, 0, sizeof *p);
    p->max_message = max_message;
}

void sdw_ws_parser_free(sdw_ws_parser *p)
{
    free(p->msg);
    p->msg = NULL;
    p->msg_len = p->msg_cap = 0;
}

/* Strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF), as
 * RFC 6455 8.1 requires of text. */
static bool utf8_ok(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        int k;
        uint32_t cp, min;
        if ((c & 0xe0) == 0xc0) k = 1, cp = c & 0x1f, min = 0x80;
        else if ((c & 0xf0) == 0xe0) k = 2, cp = c & 0x0f, min = 0x800;
        else if ((c & 0xf8) == 0xf0) k = 3, cp = c & 0x07, min = 0x10000;
        else return false;
        if ((size_t)k >= n - i) return false;
        for (int j = 1; j <= k; j++) {
            if ((s[i + (size_t)j] & 0xc0) != 0x80) return false;
            cp = cp << 6 | (s[i + (size_t)j] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
        i += (size_t)k + 1;
    }
    return true;
}

static sdw_status fail(sdw_ws_parser *p, int code, const char *why)
{
    p->close_code = code;
    return sdw_fail(code == SDW_WS_CLOSE_TOO_BIG ? SDW_ERR_NOMEM : SDW_ERR_FORMAT, "websocket: %s", why);
}

/* The header is complete: check it against what a client may send. */
static sdw_status begin_frame(sdw_ws_parser *p)
{
    const uint8_t *h = p->hdr;
    p->fin = h[0] & 0x80;
    p->opcode = h[0] & 0x0f;
    int l7 = h[1] & 0x7f;
    uint64_t len = (uint64_t)l7;
    if (l7 == 126) len = (uint64_t)h[2] << 8 | h[3];
    if (l7 == 127) {
        len = 0;
        for (int i = 0; i < 8; i++) len = len << 8 | h[2 + i];
        if (len >> 63) return fail(p, SDW_WS_CLOSE_PROTOCOL, "a 64-bit length with its top bit set");
    }
    memcpy(p->mask, h + p->hdr_need - 4, 4);
    p->len = len;
    p->got = 0;
    bool control = p->opcode & 0x08;
    if (control) {
        if (p->opcode != SDW_WS_OP_CLOSE && p->opcode != SDW_WS_OP_PING && p->opcode != SDW_WS_OP_PONG)
            return fail(p, SDW_WS_CLOSE_PROTOCOL, "a reserved control opcode");
        if (!p->fin) return fail(p, SDW_WS_CLOSE_PROTOCOL, "a fragmented control frame");
        if (len > 125) return fail(p, SDW_WS_CLOSE_PROTOCOL, "a control frame over 125 bytes");
        return SDW_OK;
    }
    if (p->opcode == SDW_WS_OP_CONT) {
        if (!p->msg_opcode) return fail(p, SDW_WS_CLOSE_PROTOCOL, "a continuation frame with nothing to continue");
    } else if (p->opcode == SDW_WS_OP_TEXT || p->opcode == SDW_WS_OP_BINARY) {
        if (p->msg_opcode) return fail(p, SDW_WS_CLOSE_PROTOCOL, "a new message inside a fragmented one");
        p->msg_opcode = p->opcode;
        p->msg_len = 0;
    } else {
        return fail(p, SDW_WS_CLOSE_PROTOCOL, "a reserved data opcode");
    }
    size_t max = p->max_message ? p->max_message : SDW_WS_MAX_MESSAGE;
    if (len > max - p->msg_len) return fail(p, SDW_WS_CLOSE_TOO_BIG, "a message over the size limit");
    size_t need = p->msg_len + (size_t)len;
    if (need > p->msg_cap) {
        size_t cap = p->msg_cap ? p->msg_cap : 256;
        while (cap < need) cap *= 2;
        if (cap > max) cap = max;
        uint8_t *m = realloc(p->msg, cap);
        if (!m) return fail(p, SDW_WS_CLOSE_TOO_BIG, "out of memory");
        p->msg = m;
        p->msg_cap = cap;
    }
    return SDW_OK;
}

/* The frame's payload is complete: hand over what it finished. */
static sdw_status end_frame(sdw_ws_parser *p, sdw_ws_message_fn fn, void *user)
{
    p->hdr_len = p->hdr_need = 0;
    if (p->opcode & 0x08) {
        size_t n = (size_t)p->len;
        if (p->opcode == SDW_WS_OP_CLOSE) {
            if (n == 1) return fail(p, SDW_WS_CLOSE_PROTOCOL, "a close frame of 1 byte");
            if (n > 2 && !utf8_ok(p->ctl + 2, n - 2)) return fail(p, SDW_WS_CLOSE_BAD_DATA, "a close reason not in UTF-8");
            p->closed = true;
        }
        fn(user, p->opcode, p->ctl, n);
        return SDW_OK;
    }
    if (!p->fin) return SDW_OK;
    int op = p->msg_opcode;
    p->msg_opcode = 0;
    if (op == SDW_WS_OP_TEXT && !utf8_ok(p->msg, p->msg_len)) return fail(p, SDW_WS_CLOSE_BAD_DATA, "text not in UTF-8");
    fn(user, op, p->msg, p->msg_len);
    p->msg_len = 0;
    return SDW_OK;
}

sdw_status sdw_ws_parser_feed(sdw_ws_parser *p, const uint8_t *data, size_t n, sdw_ws_message_fn fn, void *user)
{
    if (p->close_code) return sdw_fail(SDW_ERR_FORMAT, "websocket: the connection already failed");
    size_t i = 0;
    while (i < n && !p->closed) {
        if (!p->hdr_need || p->hdr_len < p->hdr_need) {
            if (!p->hdr_need) p->hdr_need = 2;
            p->hdr[p->hdr_len++] = data[i++];
            if (p->hdr_len == 2) {
                if (p->hdr[0] & 0x70) return fail(p, SDW_WS_CLOSE_PROTOCOL, "a reserved bit set (no extension was agreed)");
                if (!(p->hdr[1] & 0x80)) return fail(p, SDW_WS_CLOSE_PROTOCOL, "an unmasked client frame");
                int l7 = p->hdr[1] & 0x7f;
                p->hdr_need = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + 4;
            }
            if (p->hdr_len < p->hdr_need) continue;
            SDW_TRY(begin_frame(p));
            if (p->len == 0) SDW_TRY(end_frame(p, fn, user));
            continue;
        }
        /* Payload: unmask what this read holds of it. */
        size_t k = n - i;
        if (k > p->len - p->got) k = (size_t)(p->len - p->got);
        uint8_t *dst = p->opcode & 0x08 ? p->ctl + p->got : p->msg + p->msg_len;
        for (size_t j = 0; j < k; j++) dst[j] = data[i + j] ^ p->mask[(p->got + j) & 3];
        p->got += k;
        if (!(p->opcode & 0x08)) p->msg_len += k;
        i += k;
        if (p->got == p->len) SDW_TRY(end_frame(p, fn, user));
    }
    return SDW_OK;
}

/* ---------------------------------------------------------------- a connection */

typedef struct {
    const sdw_ws_session *s;
    bool failed;              /* the socket broke, or the client stopped reading */
    bool peer_closed;         /* the client sent close: answer and end */
    int close_code;
} session;

/* Writes all of buf, waiting for the socket (it may be non-blocking) at
 * most send_timeout_ms at a time. */
static bool send_all(session *ss, const uint8_t *buf, size_t n)
{
    while (n && !ss->failed) {
        ssize_t k = send(ss->s->fd, buf, n, MSG_NOSIGNAL);
        if (k > 0) {
            buf += k;
            n -= (size_t)k;
            continue;
        }
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pf = { ss->s->fd, POLLOUT, 0 };
            if (poll(&pf, 1, ss->s->send_timeout_ms > 0 ? ss->s->send_timeout_ms : 10000) > 0) continue;
        }
        ss->failed = true;
    }
    return !ss->failed;
}

static bool send_frame(session *ss, int opcode, const uint8_t *data, size_t n)
{
    uint8_t h[10];
    size_t hn = sdw_ws_frame_header(h, opcode, n);
    return send_all(ss, h, hn) && send_all(ss, data, n);
}

static void on_message(void *user, int opcode, const uint8_t *data, size_t n)
{
    session *ss = user;
    if (opcode == SDW_WS_OP_PING) send_frame(ss, SDW_WS_OP_PONG, data, n);
    else if (opcode == SDW_WS_OP_CLOSE) {
        ss->peer_closed = true;
        ss->close_code = n >= 2 ? data[0] << 8 | data[1] : SDW_WS_CLOSE_NORMAL;
    }
    /* Text and binary messages from clients (ComfyUI's frontend sends
     * feature flags) ask nothing of this server. */
}

static void send_close(session *ss, int code)
{
    /* 1005 / 1006 / 1015 must never be sent; the answer to them is 1000. */
    if (code == 1005 || code == 1006 || code == 1015 || code < 1000 || code > 4999) code = SDW_WS_CLOSE_NORMAL;
    uint8_t b[2] = { (uint8_t)(code >> 8), (uint8_t)code };
    send_frame(ss, SDW_WS_OP_CLOSE, b, 2);
}

/* Sends every message waiting; false once the session must end. */
static bool flush_outbox(session *ss)
{
    const sdw_ws_session *s = ss->s;
    uint64_t v;
    while (read(s->wake_fd, &v, sizeof v) > 0) {
    }
    for (;;) {
        uint8_t *data = NULL;
        size_t n = 0;
        bool binary = false;
        int r = s->next(s->user, &data, &n, &binary);
        if (r <= 0) return r == 0;
        bool ok = send_frame(ss, binary ? SDW_WS_OP_BINARY : SDW_WS_OP_TEXT, data, n);
        free(data);
        if (!ok) return false;
    }
}

void sdw_ws_session_run(const sdw_ws_session *s)
{
    session ss = { .s = s };
    sdw_ws_parser p;
    sdw_ws_parser_init(&p, SDW_WS_MAX_MESSAGE);
    uint8_t buf[4096];
    int close_code = SDW_WS_CLOSE_NORMAL;
    bool ending = false;      /* the server ends it: say goodbye */
    if (s->extra_in_size && sdw_ws_parser_feed(&p, s->extra_in, s->extra_in_size, on_message, &ss) != SDW_OK) {
        close_code = p.close_code;
        ending = true;
    }
    if (!ending && !flush_outbox(&ss)) ending = !ss.failed;
    while (!ss.failed && !ss.peer_closed && !ending) {
        struct pollfd pf[2] = { { s->fd, POLLIN, 0 }, { s->wake_fd, POLLIN, 0 } };
        int r = poll(pf, 2, -1);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) break;
        if (pf[1].revents & POLLIN && !flush_outbox(&ss)) {
            ending = !ss.failed;
            break;
        }
        if (!(pf[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        ssize_t k = recv(s->fd, buf, sizeof buf, 0);
        if (k < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
        if (k <= 0) {
            ss.failed = true;
            break;
        }
        if (sdw_ws_parser_feed(&p, buf, (size_t)k, on_message, &ss) != SDW_OK) {
            close_code = p.close_code;
            ending = true;
        }
    }
    if (ss.peer_closed) send_close(&ss, ss.close_code);
    else if (ending) send_close(&ss, close_code);
    sdw_ws_parser_free(&p);
}
