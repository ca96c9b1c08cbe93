/* comfy_ws.h: the WebSocket protocol (RFC 6455) as ComfyUI's /ws needs it,
 * over the socket libmicrohttpd hands over after an HTTP upgrade: the
 * handshake (Sec-WebSocket-Accept), the frames the server sends (unmasked,
 * unfragmented), a parser for the frames a client sends (masked, maybe
 * fragmented, with ping / pong / close), and the loop of one connection.
 *
 * The handshake check and the parser are pure functions over bytes, so the
 * parser can be fuzzed alone (tests/fuzz/fuzz_ws_frame.c). Nothing here
 * knows ComfyUI's messages: the session loop takes its outgoing messages
 * from a callback (engine_comfy.c's per-client outbox). */
#ifndef SDW_SERVER_COMFY_WS_H
#define SDW_SERVER_COMFY_WS_H
#include "sdw.h"
#include <stddef.h>
#include <stdint.h>

enum {
    SDW_WS_OP_CONT = 0x0, SDW_WS_OP_TEXT = 0x1, SDW_WS_OP_BINARY = 0x2,
    SDW_WS_OP_CLOSE = 0x8, SDW_WS_OP_PING = 0x9, SDW_WS_OP_PONG = 0xa,
};
/* Close codes the parser ends with. */
enum { SDW_WS_CLOSE_NORMAL = 1000, SDW_WS_CLOSE_PROTOCOL = 1002, SDW_WS_CLOSE_BAD_DATA = 1007,
       SDW_WS_CLOSE_TOO_BIG = 1009 };

/* A client's message (text or binary, fragments joined) is refused past
 * this: ComfyUI's clients send a few small JSON messages at most. */
#define SDW_WS_MAX_MESSAGE ((size_t)1 << 20)

/* Checks an upgrade request's headers (any may be NULL: absent) as RFC 6455
 * 4.2.1 asks: Upgrade: websocket, Connection containing the upgrade token,
 * Sec-WebSocket-Version 13, and a key that is 16 bytes in base64. On success
 * accept (29 bytes with the NUL) is the Sec-WebSocket-Accept value; on
 * failure SDW_ERR_INVALID_ARG with a message naming the header. */
sdw_status sdw_ws_handshake(const char *upgrade, const char *connection, const char *version, const char *key,
                            char accept[29]);

/* The header of one server frame (FIN set, unmasked) carrying n bytes of
 * opcode; returns its length (2, 4 or 10 bytes written to out). */
size_t sdw_ws_frame_header(uint8_t out[10], int opcode, size_t n);

/* One client frame stream. Zero it (or sdw_ws_parser_init) before use;
 * sdw_ws_parser_free releases the message buffer. */
typedef struct {
    size_t max_message;       /* 0 = SDW_WS_MAX_MESSAGE */
    uint8_t hdr[14];          /* the frame header being read */
    int hdr_len, hdr_need;
    int opcode;               /* of the current frame */
    bool fin;
    uint8_t mask[4];
    uint64_t len, got;        /* the frame's payload length, and how much of it arrived */
    uint8_t ctl[125];         /* a control frame's payload */
    uint8_t *msg;             /* the data message being joined */
    size_t msg_len, msg_cap;
    int msg_opcode;           /* TEXT or BINARY while a message is open, else 0 */
    bool closed;              /* a close frame arrived: the rest is ignored */
    int close_code;           /* after a failure: what to close the connection with */
} sdw_ws_parser;

void sdw_ws_parser_init(sdw_ws_parser *p, size_t max_message);
void sdw_ws_parser_free(sdw_ws_parser *p);

/* Called for each whole message: TEXT (valid UTF-8) or BINARY with the
 * fragments joined, and PING, PONG and CLOSE frames with their payloads.
 * data is valid during the call only. */
typedef void (*sdw_ws_message_fn)(void *user, int opcode, const uint8_t *data, size_t n);

/* Feeds n bytes from the socket, in any split. Returns SDW_OK, or
 * SDW_ERR_FORMAT (p->close_code says which: 1002 a protocol error, such as an
 * unmasked frame, a reserved bit or opcode, a fragmented or long control
 * frame, a continuation with nothing to continue; 1007 text that is not
 * UTF-8; 1009 a message over max_message) or SDW_ERR_NOMEM; after a
 * failure the parser refuses everything. */
sdw_status sdw_ws_parser_feed(sdw_ws_parser *p, const uint8_t *data, size_t n, sdw_ws_message_fn fn, void *user);

/* ---------------------------------------------------------------- a connection */

/* next: the next message to send. Returns 1 with *data (malloc'd, taken),
 * *n and *binary; 0 when there is nothing now; -1 when the session must
 * end (the server stops, or the client was dropped as too slow). */
typedef int (*sdw_ws_next_fn)(void *user, uint8_t **data, size_t *n, bool *binary);

typedef struct {
    int fd;                   /* the upgraded socket */
    int wake_fd;              /* readable when next has something (an eventfd; drained here) */
    sdw_ws_next_fn next;
    void *user;
    int send_timeout_ms;      /* a client that takes no bytes for this long is dropped */
    const uint8_t *extra_in;  /* bytes the HTTP layer read past the request: the client's first frames */
    size_t extra_in_size;
} sdw_ws_session;

/* Serves the connection until the client closes it, breaks the protocol,
 * stops reading, or next says -1; sends a close frame when it can. Reads
 * what the client sends (answering pings) and ignores its messages. */
void sdw_ws_session_run(const sdw_ws_session *s);
#endif
