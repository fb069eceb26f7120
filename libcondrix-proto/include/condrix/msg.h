/* The JSON message envelope of PROTOCOL.md section 2, with jansson. Strict decoding:
 * any deviation is reported with the protocol's error code and, when an id could be
 * read, the correlationId to answer with. */
#ifndef CONDRIX_MSG_H
#define CONDRIX_MSG_H

#include "condrix/limits.h"
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum cx_msg_type { CX_MSG_REQUEST, CX_MSG_RESPONSE, CX_MSG_EVENT, CX_MSG_STREAM };

/* A decoded message. All string fields point into root and live as long as it does. */
typedef struct cx_msg {
    json_t *root;             /* owned: the whole parsed object */
    const char *id;           /* 1..128 chars */
    enum cx_msg_type type;
    const char *ns;           /* "namespace" */
    const char *action;
    json_t *payload;          /* borrowed from root; an empty object when absent */
    const char *timestamp;    /* may be NULL */
    const char *correlation_id; /* may be NULL */
    int success;              /* -1 absent, 0 false, 1 true */
    json_t *error;            /* borrowed, may be NULL */
    const char *workspace_id; /* may be NULL */
    const char *target_core_id; /* may be NULL */
    const char *source_core_id; /* may be NULL */
    void *lean;               /* cx_msg_decode_lean's own storage; NULL otherwise */
} cx_msg;

/* Why decoding failed; the answer is an INVALID_MESSAGE response. */
typedef struct cx_msg_error {
    char id[CX_MSG_MAX_ID_CHARS * 4 + 1]; /* the message's id (UTF-8) if one could be
                                           * read, else "" */
    char message[160]; /* what was wrong, for error.message */
} cx_msg_error;

/* Decode one message. Returns CX_OK and fills msg (free with cx_msg_free), or
 * CX_E_PROTO and fills err. Checks: valid JSON object; id a string of 1..128 chars;
 * type one of the four; namespace and action non-empty strings; optional fields of
 * the right JSON types (payload any; correlationId/timestamp/workspaceId/
 * targetCoreId/sourceCoreId strings; success bool; error object). Unknown extra
 * fields are ignored. */
int cx_msg_decode(const char *data, size_t len, cx_msg *msg, cx_msg_error *err);
void cx_msg_free(cx_msg *msg);

/* The same verdicts, err->id and err->message, and the same field values as
 * cx_msg_decode, for a server that only reads the fields and the payload: when the
 * fast path decodes the message, root is NULL (no tree of the whole envelope is
 * built, and unknown fields are checked but not kept), the strings live in
 * msg->lean and payload is owned by msg. Anything unusual (an error member, escaped
 * keys, deep nesting, any invalid message) takes the cx_msg_decode path instead,
 * and then root is set as there. Either way, free with cx_msg_free. */
int cx_msg_decode_lean(const char *data, size_t len, cx_msg *msg, cx_msg_error *err);

/* Write a fresh unique message id (UUID v4 text, 36 chars + NUL). Draws from the
 * random pool of condrix/random.h: event-loop thread only, like every builder below
 * that makes an id (cx_msg_ok, cx_msg_fail, cx_msg_make, cx_msg_encode_ok/fail). */
void cx_msg_new_id(char out[37]);
/* ISO 8601 UTC with milliseconds for a Unix time in ms: "2026-11-22T10:00:00.000Z". */
void cx_msg_timestamp(int64_t unix_ms, char out[25]);

/* Build a response to a request: type "response", fresh id, same namespace and action,
 * correlationId = req_id (omitted when req_id is NULL or empty), success true,
 * payload (stolen reference; NULL means {}), timestamp now.
 * Returns a new object or NULL on ENOMEM. */
json_t *cx_msg_ok(const char *ns, const char *action, const char *req_id, json_t *payload);
/* Same with success false and error {code, message} plus details (stolen, may be NULL)
 * and payload (stolen, may be NULL for {}). */
json_t *cx_msg_fail(const char *ns, const char *action, const char *req_id, const char *code,
                    const char *message, json_t *details, json_t *payload);
/* A request or event: type given, fresh id, payload stolen (NULL for {}). */
json_t *cx_msg_make(enum cx_msg_type type, const char *ns, const char *action, json_t *payload);

/* Serialise compactly. Returns a malloc'd NUL-terminated string (free with free())
 * and its length in *len, or NULL on ENOMEM. */
char *cx_msg_encode(const json_t *msg, size_t *len);

/* cx_msg_encode(cx_msg_ok(...)) in one step, without building the envelope as a tree:
 * the same text, field order and failure cases (NULL on ENOMEM or when a string is not
 * valid UTF-8). payload is stolen (NULL means {}); *len (may be NULL) gets the length.
 * Free the result with free(). */
char *cx_msg_encode_ok(const char *ns, const char *action, const char *req_id, json_t *payload,
                       size_t *len);
/* cx_msg_encode(cx_msg_fail(...)) in one step; details and payload stolen. */
char *cx_msg_encode_fail(const char *ns, const char *action, const char *req_id,
                         const char *code, const char *message, json_t *details,
                         json_t *payload, size_t *len);

const char *cx_msg_type_name(enum cx_msg_type t);

/* A string field of the payload, or NULL when absent, not a string, or holding a NUL
 * (which C would silently cut short: "a\u0000b" must not act as "a"). */
const char *cx_msg_payload_str(const cx_msg *m, const char *key);

#endif
