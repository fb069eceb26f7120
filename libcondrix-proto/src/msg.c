/* The JSON envelope every Condrix message travels in (PROTOCOL.md section 2): a strict
 * decoder that says exactly what is wrong and which id to correlate the answer with,
 * and builders that emit envelopes with one stable field order. */
#include "condrix/msg.h"
#include "condrix/error.h"
#include "condrix/limits.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* namespace and action are short words; a longer one is garbage, not a name. */
#define MSG_MAX_NAME_CHARS 128

/* The latest instant whose ISO 8601 text still has a four-digit year. */
#define MSG_MAX_UNIX_MS INT64_C(253402300799999)

static void set_error(cx_msg_error *err, const char *message)
{
    snprintf(err->message, sizeof err->message, "%s", message);
}

/* Characters (code points) in a string jansson has already checked to be UTF-8:
 * every byte that is not a continuation byte starts one. */
static size_t utf8_chars(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            n++;
    return n;
}

/* A string member of 1..max characters, or NULL. */
static const char *bounded_string(json_t *root, const char *key, size_t max)
{
    json_t *v = json_object_get(root, key);
    if (!json_is_string(v))
        return NULL;
    size_t len = json_string_length(v);
    /* An embedded NUL would make C see a different, shorter string. */
    if (len == 0 || strlen(json_string_value(v)) != len ||
        utf8_chars(json_string_value(v), len) > max)
        return NULL;
    return json_string_value(v);
}

/* An optional string member: absent gives NULL and 0, wrong type gives -1. */
static int optional_string(json_t *root, const char *key, const char **out)
{
    json_t *v = json_object_get(root, key);
    *out = NULL;
    if (v == NULL)
        return 0;
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
        return -1;
    *out = json_string_value(v);
    return 0;
}

static int parse_type(const char *s, enum cx_msg_type *t)
{
    static const struct {
        const char *name;
        enum cx_msg_type type;
    } types[] = {
        {"request", CX_MSG_REQUEST},
        {"response", CX_MSG_RESPONSE},
        {"event", CX_MSG_EVENT},
        {"stream", CX_MSG_STREAM},
    };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        if (strcmp(s, types[i].name) == 0) {
            *t = types[i].type;
            return 0;
        }
    }
    return -1;
}

int cx_msg_decode(const char *data, size_t len, cx_msg *msg, cx_msg_error *err)
{
    json_error_t jerr;
    json_t *root = NULL;
    const char *s;
    int rc = CX_E_PROTO;

    memset(msg, 0, sizeof *msg);
    msg->success = -1;
    err->id[0] = '\0';
    err->message[0] = '\0';

    if (data == NULL) {
        set_error(err, "message is not valid JSON");
        goto fail;
    }
    if (len > CX_WS_MAX_MESSAGE_BYTES) {
        set_error(err, "message is too large");
        goto fail;
    }
    /* Duplicate keys would let two readers of one message see different fields;
     * the EOF check stays on so trailing garbage is rejected. NUL escapes are let
     * through the parser so that the id can still be read and the answer
     * correlated; every envelope string is then checked for them. */
    root = json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (root == NULL) {
        if (json_error_code(&jerr) == json_error_out_of_memory) {
            rc = CX_E_NOMEM;
            set_error(err, "out of memory");
        } else {
            set_error(err, "message is not valid JSON");
        }
        goto fail;
    }
    if (!json_is_object(root)) {
        set_error(err, "message must be a JSON object");
        goto fail;
    }

    msg->id = bounded_string(root, "id", CX_MSG_MAX_ID_CHARS);
    if (msg->id == NULL) {
        set_error(err, "missing or invalid field 'id'");
        goto fail;
    }
    /* err->id holds 128 bytes: an id of 128 multi-byte characters is valid but
     * cannot be echoed from here, so the error goes out uncorrelated. */
    if (strlen(msg->id) < sizeof err->id)
        memcpy(err->id, msg->id, strlen(msg->id) + 1);

    s = json_string_value(json_object_get(root, "type"));
    if (s == NULL || parse_type(s, &msg->type) != 0) {
        set_error(err, "missing or invalid field 'type'");
        goto fail;
    }
    msg->ns = bounded_string(root, "namespace", MSG_MAX_NAME_CHARS);
    if (msg->ns == NULL) {
        set_error(err, "missing or invalid field 'namespace'");
        goto fail;
    }
    msg->action = bounded_string(root, "action", MSG_MAX_NAME_CHARS);
    if (msg->action == NULL) {
        set_error(err, "missing or invalid field 'action'");
        goto fail;
    }

    if (optional_string(root, "timestamp", &msg->timestamp) != 0) {
        set_error(err, "field 'timestamp' must be a string");
        goto fail;
    }
    if (optional_string(root, "correlationId", &msg->correlation_id) != 0) {
        set_error(err, "field 'correlationId' must be a string");
        goto fail;
    }
    if (optional_string(root, "workspaceId", &msg->workspace_id) != 0) {
        set_error(err, "field 'workspaceId' must be a string");
        goto fail;
    }
    if (optional_string(root, "targetCoreId", &msg->target_core_id) != 0) {
        set_error(err, "field 'targetCoreId' must be a string");
        goto fail;
    }
    if (optional_string(root, "sourceCoreId", &msg->source_core_id) != 0) {
        set_error(err, "field 'sourceCoreId' must be a string");
        goto fail;
    }

    json_t *v = json_object_get(root, "success");
    if (v != NULL) {
        if (!json_is_boolean(v)) {
            set_error(err, "field 'success' must be a boolean");
            goto fail;
        }
        msg->success = json_is_true(v) ? 1 : 0;
    }
    v = json_object_get(root, "error");
    if (v != NULL && !json_is_object(v)) {
        set_error(err, "field 'error' must be an object");
        goto fail;
    }
    msg->error = v;

    /* An absent payload becomes a real {} inside root, so handlers can read and
     * json_incref it like any other payload, and it dies with the message. */
    msg->payload = json_object_get(root, "payload");
    if (msg->payload == NULL) {
        if (json_object_set_new(root, "payload", json_object()) != 0) {
            rc = CX_E_NOMEM;
            set_error(err, "out of memory");
            goto fail;
        }
        msg->payload = json_object_get(root, "payload");
    }

    msg->root = root;
    err->id[0] = '\0';
    return CX_OK;

fail:
    json_decref(root);
    memset(msg, 0, sizeof *msg);
    msg->success = -1;
    return rc;
}

void cx_msg_free(cx_msg *msg)
{
    if (msg == NULL)
        return;
    json_decref(msg->root);
    memset(msg, 0, sizeof *msg);
    msg->success = -1;
}

void cx_msg_new_id(char out[37])
{
    unsigned char b[16];
    randombytes_buf(b, sizeof b);
    b[6] = (unsigned char)((b[6] & 0x0F) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3F) | 0x80); /* RFC 4122 variant */
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < sizeof b; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 0x0F];
    }
    out[o] = '\0';
}

/* n decimal digits of v, zero-padded; the caller keeps v below 10^n. */
static char *put_digits(char *p, unsigned v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return p + n;
}

void cx_msg_timestamp(int64_t unix_ms, char out[25])
{
    /* Clamped so the text always has the fixed 24-character shape. */
    if (unix_ms < 0)
        unix_ms = 0;
    if (unix_ms > MSG_MAX_UNIX_MS)
        unix_ms = MSG_MAX_UNIX_MS;
    time_t secs = (time_t)(unix_ms / 1000);
    struct tm tm;
    if (gmtime_r(&secs, &tm) == NULL) {
        memcpy(out, "1970-01-01T00:00:00.000Z", 25);
        return;
    }
    char *p = out;
    p = put_digits(p, (unsigned)(tm.tm_year + 1900), 4);
    *p++ = '-';
    p = put_digits(p, (unsigned)(tm.tm_mon + 1), 2);
    *p++ = '-';
    p = put_digits(p, (unsigned)tm.tm_mday, 2);
    *p++ = 'T';
    p = put_digits(p, (unsigned)tm.tm_hour, 2);
    *p++ = ':';
    p = put_digits(p, (unsigned)tm.tm_min, 2);
    *p++ = ':';
    p = put_digits(p, (unsigned)tm.tm_sec, 2); /* 60 for a leap second: still two digits */
    *p++ = '.';
    p = put_digits(p, (unsigned)(unix_ms % 1000), 3);
    *p++ = 'Z';
    *p = '\0';
}

static int64_t now_ms(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return 0;
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *cx_msg_type_name(enum cx_msg_type t)
{
    switch (t) {
    case CX_MSG_REQUEST: return "request";
    case CX_MSG_RESPONSE: return "response";
    case CX_MSG_EVENT: return "event";
    case CX_MSG_STREAM: return "stream";
    }
    return "request";
}

/* Set a string member; a NULL value becomes "". json_string also refuses
 * invalid UTF-8, which we treat like a failed allocation. */
static int set_str(json_t *o, const char *key, const char *val)
{
    return json_object_set_new(o, key, json_string(val ? val : ""));
}

/* The head every envelope shares, in wire order: id, type, namespace, action,
 * payload, timestamp. payload is stolen, even on failure. */
static json_t *envelope(enum cx_msg_type type, const char *ns, const char *action,
                        json_t *payload)
{
    char id[37];
    char ts[25];
    json_t *o = json_object();
    if (o == NULL) {
        json_decref(payload);
        return NULL;
    }
    if (payload == NULL) {
        payload = json_object();
        if (payload == NULL)
            goto fail;
    }
    cx_msg_new_id(id);
    cx_msg_timestamp(now_ms(), ts);
    if (set_str(o, "id", id) != 0 || set_str(o, "type", cx_msg_type_name(type)) != 0 ||
        set_str(o, "namespace", ns) != 0 || set_str(o, "action", action) != 0) {
        goto fail;
    }
    int rc = json_object_set_new(o, "payload", payload);
    payload = NULL; /* stolen by now, whatever rc says */
    if (rc != 0 || set_str(o, "timestamp", ts) != 0)
        goto fail;
    return o;

fail:
    json_decref(payload);
    json_decref(o);
    return NULL;
}

static json_t *response(const char *ns, const char *action, const char *req_id, bool ok,
                        json_t *payload)
{
    json_t *o = envelope(CX_MSG_RESPONSE, ns, action, payload);
    if (o == NULL)
        return NULL;
    if (req_id != NULL && req_id[0] != '\0' && set_str(o, "correlationId", req_id) != 0)
        goto fail;
    if (json_object_set_new(o, "success", json_boolean(ok)) != 0)
        goto fail;
    return o;

fail:
    json_decref(o);
    return NULL;
}

json_t *cx_msg_ok(const char *ns, const char *action, const char *req_id, json_t *payload)
{
    return response(ns, action, req_id, true, payload);
}

json_t *cx_msg_fail(const char *ns, const char *action, const char *req_id, const char *code,
                    const char *message, json_t *details, json_t *payload)
{
    json_t *o = response(ns, action, req_id, false, payload);
    json_t *e = NULL;
    if (o == NULL)
        goto fail;
    e = json_object();
    if (e == NULL || set_str(e, "code", code) != 0 || set_str(e, "message", message) != 0)
        goto fail;
    if (details != NULL) {
        int rc = json_object_set_new(e, "details", details);
        details = NULL;
        if (rc != 0)
            goto fail;
    }
    int rc = json_object_set_new(o, "error", e);
    e = NULL;
    if (rc != 0)
        goto fail;
    return o;

fail:
    json_decref(details);
    json_decref(e);
    json_decref(o);
    return NULL;
}

json_t *cx_msg_make(enum cx_msg_type type, const char *ns, const char *action, json_t *payload)
{
    return envelope(type, ns, action, payload);
}

char *cx_msg_encode(const json_t *msg, size_t *len)
{
    char *s = json_dumps(msg, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (s == NULL)
        return NULL;
    if (len != NULL)
        *len = strlen(s);
    return s;
}
