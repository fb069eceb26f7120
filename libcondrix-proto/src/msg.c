/* The JSON envelope every Condrix message travels in (PROTOCOL.md section 2): a strict
 * decoder that says exactly what is wrong and which id to correlate the answer with,
 * and builders that emit envelopes with one stable field order. The servers' hot path
 * has leaner twins with the same observable behaviour: a one-pass decoder that builds
 * no envelope tree, and an encoder that writes text without jansson's dump machinery. */
#include "condrix/msg.h"
#include "condrix/error.h"
#include "condrix/limits.h"
#include "condrix/random.h"

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* namespace and action are short words; a longer one is garbage, not a name. */
#define MSG_MAX_NAME_CHARS 128


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

/* The strict parse refused the message (a duplicate key, say): if a lenient one can
 * still read a valid id, the INVALID_MESSAGE answer is correlated with it. */
static void read_id_leniently(const char *data, size_t len, cx_msg_error *err)
{
    json_error_t jerr;
    json_t *root = json_loadb(data, len, JSON_DECODE_INT_AS_REAL, &jerr);
    const char *id = json_is_object(root) ? bounded_string(root, "id", CX_MSG_MAX_ID_CHARS) : NULL;
    if (id && strlen(id) < sizeof err->id)
        memcpy(err->id, id, strlen(id) + 1);
    json_decref(root);
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
    if (root == NULL && json_error_code(&jerr) == json_error_numeric_overflow)
        /* An integer beyond 64 bits is still valid JSON: read integers as doubles, as
         * JavaScript does; a field that must be an integer then fails its own check. */
        root = json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL |
                                         JSON_DECODE_INT_AS_REAL, &jerr);
    if (root == NULL) {
        if (json_error_code(&jerr) == json_error_out_of_memory) {
            rc = CX_E_NOMEM;
            set_error(err, "out of memory");
        } else {
            set_error(err, json_error_code(&jerr) == json_error_duplicate_key
                               ? "message has a duplicate key"
                               : "message is not valid JSON");
            read_id_leniently(data, len, err);
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
    /* err->id holds 128 characters of up to 4 bytes each: any valid id fits. */
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
    if (msg->lean != NULL) {
        /* The lean decoder owns payload itself: there is no root to hold it. */
        json_decref(msg->payload);
        free(msg->lean);
    }
    json_decref(msg->root);
    memset(msg, 0, sizeof *msg);
    msg->success = -1;
}

void cx_msg_new_id(char out[37])
{
    unsigned char b[16];
    cx_random_buf(b, sizeof b);
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
    if (unix_ms > CX_TIME_MAX_MS)
        unix_ms = CX_TIME_MAX_MS;
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

/* The envelope timestamp for now. Replies come many per millisecond under load, and
 * gmtime_r is most of the cost, so the text of the last millisecond is kept. Like the
 * id pool, this is event-loop-thread state. */
static void now_text(char out[25])
{
    static int64_t cached_ms = -1;
    static char cached[25];
    int64_t ms = now_ms();
    if (ms != cached_ms) {
        cx_msg_timestamp(ms, cached);
        cached_ms = ms;
    }
    memcpy(out, cached, 25);
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
    now_text(ts);
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

/* ---- encoding ----
 * A writer of our own produces exactly what json_dumps(JSON_COMPACT |
 * JSON_PRESERVE_ORDER) does (jansson 2.14: keys in insertion order, '"', '\\' and
 * control characters escaped, \u00XX in upper-case hex, '/' and non-ASCII verbatim,
 * reals as %.17g with ".0" added when needed), at a fraction of jansson's cost.
 * Whenever it meets something it does not handle the way jansson would (invalid UTF-8,
 * nesting deep enough to be a cycle), it gives up and jansson encodes instead, so the
 * output, or the NULL, is always jansson's. */

/* Deeper trees are left to jansson, whose loop check turns cycles into NULL. */
#define ENC_MAX_DEPTH 64
/* Most replies fit in one allocation of this size. */
#define ENC_FIRST_CAP 512
/* Returned by the writer for "let jansson do it"; not an error code. */
#define ENC_FALLBACK 1

typedef struct wbuf {
    char *p;    /* malloc'd text, NUL-terminated once finished */
    size_t len; /* bytes written */
    size_t cap; /* bytes allocated */
    int rc;     /* CX_OK, or the first failure: later writes do nothing */
} wbuf;

static int wb_grow(wbuf *w, size_t n)
{
    if (w->rc != CX_OK)
        return w->rc;
    /* Room for n more bytes and the final NUL. */
    if (n > SIZE_MAX / 4 - w->len) {
        w->rc = CX_E_NOMEM;
        return w->rc;
    }
    size_t need = w->len + n + 1;
    size_t ncap = w->cap ? w->cap : ENC_FIRST_CAP;
    while (ncap < need)
        ncap *= 2;
    char *np = realloc(w->p, ncap);
    if (np == NULL) {
        w->rc = CX_E_NOMEM;
        return w->rc;
    }
    w->p = np;
    w->cap = ncap;
    return CX_OK;
}

/* True when n more bytes (and a NUL) fit, growing if need be. */
static inline bool wb_room(wbuf *w, size_t n)
{
    if (w->cap - w->len > n && w->rc == CX_OK)
        return true;
    return wb_grow(w, n) == CX_OK;
}

static inline void wb_put(wbuf *w, const char *s, size_t n)
{
    if (!wb_room(w, n))
        return;
    memcpy(w->p + w->len, s, n);
    w->len += n;
}

#define WB_LIT(w, lit) wb_put((w), (lit), sizeof(lit) - 1)

static inline void wb_char(wbuf *w, char c)
{
    if (!wb_room(w, 1))
        return;
    w->p[w->len++] = c;
}

/* Bytes that stand for themselves inside a JSON string, both ways: printable ASCII
 * but the quote and the backslash. One lookup per byte in the hot loops. */
static const unsigned char plain_byte[256] = {
    [0x20] = 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x22 '"' */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,           /* 0x30 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,           /* 0x40 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,           /* 0x50, 0x5C '\\' */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,           /* 0x60 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,           /* 0x70 */
};

/* Length of the well-formed UTF-8 sequence of 2..4 bytes at s (RFC 3629: no overlong
 * forms, no surrogates, nothing past U+10FFFF), or 0. The same rules as jansson's. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t k;
    uint32_t v;
    if (c >= 0xC2 && c <= 0xDF) {
        k = 2;
        v = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        k = 3;
        v = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        k = 4;
        v = c & 0x07;
    } else {
        return 0;
    }
    if (n < k)
        return 0;
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF) || (k == 3 && v < 0x800) ||
        (k == 4 && v < 0x10000))
        return 0;
    return k;
}

/* A JSON string literal for n bytes at s. ENC_FALLBACK when they are not UTF-8:
 * jansson then refuses the whole message, and so must we. */
static int put_string(wbuf *w, const char *str, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    wb_char(w, '"');
    while (i < n) {
        size_t run = i;
        while (run < n && plain_byte[s[run]])
            run++;
        if (run > i) {
            wb_put(w, (const char *)s + i, run - i);
            i = run;
            continue;
        }
        unsigned c = s[i];
        if (c >= 0x80) {
            size_t k = utf8_seq(s + i, n - i);
            if (k == 0)
                return ENC_FALLBACK;
            wb_put(w, (const char *)s + i, k);
            i += k;
            continue;
        }
        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        size_t en = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 0x0F];
            en = 6;
            break;
        }
        wb_put(w, esc, en);
        i++;
    }
    wb_char(w, '"');
    return w->rc;
}

static void put_integer(wbuf *w, json_int_t v)
{
    char buf[24];
    char *p = buf + sizeof buf;
    /* Unsigned, so that the most negative value has a magnitude too. */
    unsigned long long m = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        *--p = (char)('0' + m % 10);
        m /= 10;
    } while (m != 0);
    if (v < 0)
        *--p = '-';
    wb_put(w, p, (size_t)(buf + sizeof buf - p));
}

/* jansson's real format: %.17g in the C notation whatever the locale, ".0" added
 * when the text would read back as an integer, exponent without '+' or leading
 * zeros. */
static int put_real(wbuf *w, double v)
{
    char buf[64];
    int n = snprintf(buf, sizeof buf, "%.17g", v);
    if (n < 0 || (size_t)n >= sizeof buf - 3)
        return ENC_FALLBACK;
    size_t len = (size_t)n;
    char point = localeconv()->decimal_point[0];
    if (point != '.') {
        char *d = strchr(buf, point);
        if (d != NULL)
            *d = '.';
    }
    if (strchr(buf, '.') == NULL && strchr(buf, 'e') == NULL) {
        memcpy(buf + len, ".0", 3);
        len += 2;
    }
    char *start = strchr(buf, 'e');
    if (start != NULL) {
        start++;
        char *end = start + 1;
        if (*start == '-')
            start++;
        while (*end == '0')
            end++;
        if (end != start) {
            memmove(start, end, len - (size_t)(end - buf) + 1);
            len -= (size_t)(end - start);
        }
    }
    wb_put(w, buf, len);
    return w->rc;
}

static int put_value(wbuf *w, const json_t *v, int depth)
{
    int rc;
    if (v == NULL || depth > ENC_MAX_DEPTH)
        return ENC_FALLBACK;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        json_t *o = (json_t *)v;
        wb_char(w, '{');
        bool first = true;
        for (void *it = json_object_iter(o); it != NULL; it = json_object_iter_next(o, it)) {
            if (!first)
                wb_char(w, ',');
            first = false;
            rc = put_string(w, json_object_iter_key(it), json_object_iter_key_len(it));
            if (rc != CX_OK)
                return rc;
            wb_char(w, ':');
            rc = put_value(w, json_object_iter_value(it), depth + 1);
            if (rc != CX_OK)
                return rc;
        }
        wb_char(w, '}');
        break;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(v);
        wb_char(w, '[');
        for (size_t i = 0; i < n; i++) {
            if (i > 0)
                wb_char(w, ',');
            rc = put_value(w, json_array_get(v, i), depth + 1);
            if (rc != CX_OK)
                return rc;
        }
        wb_char(w, ']');
        break;
    }
    case JSON_STRING:
        return put_string(w, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        put_integer(w, json_integer_value(v));
        break;
    case JSON_REAL:
        return put_real(w, json_real_value(v));
    case JSON_TRUE:
        WB_LIT(w, "true");
        break;
    case JSON_FALSE:
        WB_LIT(w, "false");
        break;
    case JSON_NULL:
        WB_LIT(w, "null");
        break;
    default:
        return ENC_FALLBACK;
    }
    return w->rc;
}

/* Hand the text over, or free it and say NULL. */
static char *wb_finish(wbuf *w, int rc, size_t *len)
{
    if (rc == CX_OK && w->rc == CX_OK && wb_room(w, 0)) {
        w->p[w->len] = '\0';
        if (len != NULL)
            *len = w->len;
        return w->p;
    }
    free(w->p);
    return NULL;
}

static char *encode_jansson(const json_t *msg, size_t *len)
{
    char *s = json_dumps(msg, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (s == NULL)
        return NULL;
    if (len != NULL)
        *len = strlen(s);
    return s;
}

char *cx_msg_encode(const json_t *msg, size_t *len)
{
    /* json_dumps encodes only objects and arrays without JSON_ENCODE_ANY. */
    if (!json_is_object(msg) && !json_is_array(msg))
        return NULL;
    wbuf w = {0};
    int rc = put_value(&w, msg, 0);
    if (rc == ENC_FALLBACK) {
        free(w.p);
        return encode_jansson(msg, len);
    }
    return wb_finish(&w, rc, len);
}

/* One response envelope, field by field in the order envelope() and response() set
 * them. Any case the writer leaves to jansson is redone by building the tree. */
static char *encode_response(const char *ns, const char *action, const char *req_id, bool ok,
                             const char *code, const char *message, json_t *details,
                             json_t *payload, size_t *len)
{
    char id[37];
    char ts[25];
    wbuf w = {0};
    int rc;
    char *out = NULL;

    if (wb_grow(&w, ENC_FIRST_CAP - 1) != CX_OK)
        goto done;
    cx_msg_new_id(id);
    now_text(ts);
    WB_LIT(&w, "{\"id\":\"");
    wb_put(&w, id, 36);
    WB_LIT(&w, "\",\"type\":\"response\",\"namespace\":");
    if ((rc = put_string(&w, ns ? ns : "", ns ? strlen(ns) : 0)) != CX_OK)
        goto check;
    WB_LIT(&w, ",\"action\":");
    if ((rc = put_string(&w, action ? action : "", action ? strlen(action) : 0)) != CX_OK)
        goto check;
    WB_LIT(&w, ",\"payload\":");
    if (payload == NULL)
        WB_LIT(&w, "{}");
    else if ((rc = put_value(&w, payload, 1)) != CX_OK)
        goto check;
    WB_LIT(&w, ",\"timestamp\":\"");
    wb_put(&w, ts, 24);
    wb_char(&w, '"');
    if (req_id != NULL && req_id[0] != '\0') {
        WB_LIT(&w, ",\"correlationId\":");
        if ((rc = put_string(&w, req_id, strlen(req_id))) != CX_OK)
            goto check;
    }
    if (ok) {
        WB_LIT(&w, ",\"success\":true}");
    } else {
        WB_LIT(&w, ",\"success\":false,\"error\":{\"code\":");
        if ((rc = put_string(&w, code ? code : "", code ? strlen(code) : 0)) != CX_OK)
            goto check;
        WB_LIT(&w, ",\"message\":");
        if ((rc = put_string(&w, message ? message : "", message ? strlen(message) : 0)) != CX_OK)
            goto check;
        if (details != NULL) {
            WB_LIT(&w, ",\"details\":");
            if ((rc = put_value(&w, details, 2)) != CX_OK)
                goto check;
        }
        WB_LIT(&w, "}}");
    }
    rc = w.rc;

check:
    if (rc == ENC_FALLBACK) {
        free(w.p);
        w.p = NULL;
        json_t *m = ok ? cx_msg_ok(ns, action, req_id, payload)
                       : cx_msg_fail(ns, action, req_id, code, message, details, payload);
        /* Both stolen by the builder, whatever it returned. */
        payload = NULL;
        details = NULL;
        out = m != NULL ? encode_jansson(m, len) : NULL;
        json_decref(m);
        goto done;
    }
    out = wb_finish(&w, rc, len);
    w.p = NULL;

done:
    free(w.p);
    json_decref(payload);
    json_decref(details);
    return out;
}

char *cx_msg_encode_ok(const char *ns, const char *action, const char *req_id, json_t *payload,
                       size_t *len)
{
    return encode_response(ns, action, req_id, true, NULL, NULL, NULL, payload, len);
}

char *cx_msg_encode_fail(const char *ns, const char *action, const char *req_id,
                         const char *code, const char *message, json_t *details,
                         json_t *payload, size_t *len)
{
    return encode_response(ns, action, req_id, false, code, message, details, payload, len);
}

/* ---- lean decoding ----
 * One pass over the text checks it as strict JSON while it picks out the envelope
 * fields and builds the payload tree itself (with json_loadb's rules: duplicate keys,
 * NUL in keys, number ranges), or just json_object() when it is {}. The pass only
 * ever says "this is fine" for what cx_msg_decode accepts with the same values;
 * for everything else (any error, and rare shapes such as escaped keys, an error
 * member, numbers or containers in unknown members, deep nesting) it steps aside and
 * cx_msg_decode itself answers, so verdicts and error texts are its by construction.
 * fuzz_msg.c checks the first half of that claim against cx_msg_decode. */

/* The envelope string fields, in the order cx_msg lists them. */
enum lean_field {
    LF_ID,
    LF_TYPE,
    LF_NS,
    LF_ACTION,
    LF_TIMESTAMP,
    LF_CORRELATION,
    LF_WORKSPACE,
    LF_TARGET,
    LF_SOURCE,
    LF_NSTRINGS,
    LF_PAYLOAD = LF_NSTRINGS,
    LF_SUCCESS,
    LF_ERROR,
    LF_OTHER,
};

static const struct {
    const char *key;
    size_t len;
    enum lean_field field;
} lean_keys[] = {
    {"id", 2, LF_ID},
    {"type", 4, LF_TYPE},
    {"namespace", 9, LF_NS},
    {"action", 6, LF_ACTION},
    {"payload", 7, LF_PAYLOAD},
    {"timestamp", 9, LF_TIMESTAMP},
    {"correlationId", 13, LF_CORRELATION},
    {"success", 7, LF_SUCCESS},
    {"error", 5, LF_ERROR},
    {"workspaceId", 11, LF_WORKSPACE},
    {"targetCoreId", 12, LF_TARGET},
    {"sourceCoreId", 12, LF_SOURCE},
};

/* More members than this are left to jansson rather than checked for duplicates. */
#define LEAN_MAX_MEMBERS 16
/* Payload nesting beyond this is left to jansson (whose own cap is 2048 in all). */
#define LEAN_MAX_DEPTH 64
/* "Not for the fast path": cx_msg_decode decides. */
#define LEAN_STEP_ASIDE 1

typedef const unsigned char *uptr;

static uptr skip_ws(uptr p, uptr e)
{
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

static int hex_digit(unsigned c)
{
    if (c >= '0' && c <= '9')
        return (int)(c - '0');
    if (c >= 'a' && c <= 'f')
        return (int)(c - 'a' + 10);
    if (c >= 'A' && c <= 'F')
        return (int)(c - 'A' + 10);
    return -1;
}

/* The four hex digits at p (the caller made sure they are there), or -1. */
static int32_t hex4(uptr p)
{
    int32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int d = hex_digit(p[i]);
        if (d < 0)
            return -1;
        v = (v << 4) | d;
    }
    return v;
}

/* The string body starting at p (just past its opening quote): returns the closing
 * quote, or NULL when the string is not valid JSON. *esc tells whether it holds
 * escapes, *nul whether one of them is \u0000. */
static uptr scan_string(uptr p, uptr e, bool *esc, bool *nul)
{
    while (p < e) {
        if (plain_byte[*p]) {
            p++;
            continue;
        }
        unsigned c = *p;
        if (c == '"')
            return p;
        if (c == '\\') {
            *esc = true;
            if (e - p < 2)
                return NULL;
            c = p[1];
            if (c != 'u') {
                if (c != '"' && c != '\\' && c != '/' && c != 'b' && c != 'f' && c != 'n' &&
                    c != 'r' && c != 't')
                    return NULL;
                p += 2;
                continue;
            }
            if (e - p < 6)
                return NULL;
            int32_t v = hex4(p + 2);
            if (v < 0)
                return NULL;
            p += 6;
            if (v >= 0xD800 && v <= 0xDBFF) {
                /* A high surrogate must be followed by an escaped low one. */
                if (e - p < 6 || p[0] != '\\' || p[1] != 'u')
                    return NULL;
                int32_t lo = hex4(p + 2);
                if (lo < 0xDC00 || lo > 0xDFFF)
                    return NULL;
                p += 6;
            } else if (v >= 0xDC00 && v <= 0xDFFF) {
                return NULL;
            } else if (v == 0) {
                *nul = true;
            }
            continue;
        }
        if (c < 0x20)
            return NULL;
        if (c < 0x80) {
            p++;
            continue;
        }
        size_t k = utf8_seq(p, (size_t)(e - p));
        if (k == 0)
            return NULL;
        p += k;
    }
    return NULL;
}

/* Decode a string body already passed by scan_string into out (n + 1 bytes suffice:
 * no escape grows). Returns the decoded length; out is NUL-terminated. */
static size_t unescape(uptr s, size_t n, char *out)
{
    size_t o = 0;
    size_t i = 0;
    while (i < n) {
        if (s[i] != '\\') {
            out[o++] = (char)s[i++];
            continue;
        }
        unsigned c = s[i + 1];
        if (c != 'u') {
            char r;
            switch (c) {
            case 'b': r = '\b'; break;
            case 'f': r = '\f'; break;
            case 'n': r = '\n'; break;
            case 'r': r = '\r'; break;
            case 't': r = '\t'; break;
            default: r = (char)c; break; /* '"', '\\', '/' */
            }
            out[o++] = r;
            i += 2;
            continue;
        }
        uint32_t v = (uint32_t)hex4(s + i + 2);
        i += 6;
        if (v >= 0xD800 && v <= 0xDBFF) {
            uint32_t lo = (uint32_t)hex4(s + i + 2);
            i += 6;
            v = ((v - 0xD800) << 10) + (lo - 0xDC00) + 0x10000;
        }
        if (v < 0x80) {
            out[o++] = (char)v;
        } else if (v < 0x800) {
            out[o++] = (char)(0xC0 | (v >> 6));
            out[o++] = (char)(0x80 | (v & 0x3F));
        } else if (v < 0x10000) {
            out[o++] = (char)(0xE0 | (v >> 12));
            out[o++] = (char)(0x80 | ((v >> 6) & 0x3F));
            out[o++] = (char)(0x80 | (v & 0x3F));
        } else {
            out[o++] = (char)(0xF0 | (v >> 18));
            out[o++] = (char)(0x80 | ((v >> 12) & 0x3F));
            out[o++] = (char)(0x80 | ((v >> 6) & 0x3F));
            out[o++] = (char)(0x80 | (v & 0x3F));
        }
    }
    out[o] = '\0';
    return o;
}

static bool is_alpha(unsigned c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(unsigned c)
{
    return c >= '0' && c <= '9';
}

/* true, false or null at p: the end of the word, or NULL. jansson reads a whole run
 * of letters as one word, so "nullx" is no null. */
static uptr scan_word(uptr p, uptr e, const char *word, size_t n)
{
    if ((size_t)(e - p) < n || memcmp(p, word, n) != 0)
        return NULL;
    p += n;
    if (p < e && is_alpha(*p))
        return NULL;
    return p;
}

/* A number by the RFC 8259 grammar; build_number judges its range. */
static uptr scan_number(uptr p, uptr e)
{
    if (p < e && *p == '-')
        p++;
    if (p == e)
        return NULL;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < e && is_digit(*p))
            p++;
    } else {
        return NULL;
    }
    if (p < e && *p == '.') {
        p++;
        if (p == e || !is_digit(*p))
            return NULL;
        while (p < e && is_digit(*p))
            p++;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-'))
            p++;
        if (p == e || !is_digit(*p))
            return NULL;
        while (p < e && is_digit(*p))
            p++;
    }
    /* "01" or "1x": jansson would see two tokens where we see one. */
    if (p < e && (is_digit(*p) || is_alpha(*p) || *p == '.'))
        return NULL;
    return p;
}

/* A number's text as jansson reads it: an integer when it has no fraction and no
 * exponent (and must then fit json_int_t), else a double (which must not overflow).
 * Texts longer than a double needs are left to jansson. */
static json_t *build_number(uptr p, uptr end)
{
    char buf[40];
    size_t n = (size_t)(end - p);
    if (n >= sizeof buf)
        return NULL;
    memcpy(buf, p, n);
    buf[n] = '\0';
    char *stop;
    errno = 0;
    if (memchr(buf, '.', n) == NULL && memchr(buf, 'e', n) == NULL &&
        memchr(buf, 'E', n) == NULL) {
        long long v = strtoll(buf, &stop, 10);
        if (errno == ERANGE || stop != buf + n)
            return NULL;
        return json_integer((json_int_t)v);
    }
    /* strtod reads the locale's decimal point; jansson translates, we step aside. */
    if (localeconv()->decimal_point[0] != '.')
        return NULL;
    double d = strtod(buf, &stop);
    if (stop != buf + n || ((d == HUGE_VAL || d == -HUGE_VAL) && errno == ERANGE))
        return NULL;
    return json_real(d);
}

/* A string body (between the quotes, checked by scan_string) as jansson would hold
 * it: unescaped, NULs kept. */
static json_t *build_string(uptr s, size_t n, bool esc)
{
    if (!esc)
        return json_stringn_nocheck((const char *)s, n);
    char small[256];
    char *buf = n < sizeof small ? small : malloc(n + 1);
    if (buf == NULL)
        return NULL;
    json_t *v = json_stringn_nocheck(buf, unescape(s, n, buf));
    if (buf != small)
        free(buf);
    return v;
}

/* The JSON value at *pp (whitespace skipped) as a jansson tree, with the rules of
 * json_loadb(JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL): no duplicate keys, no NUL in
 * keys, integers within json_int_t, no infinite reals. NULL when the text breaks any
 * rule, nests deeper than LEAN_MAX_DEPTH, or memory runs out; *pp moves past it. */
static json_t *build_value(uptr *pp, uptr e, int depth)
{
    uptr p = *pp;
    json_t *v = NULL;
    bool esc = false;
    bool nul = false;
    if (p == e)
        return NULL;
    switch (*p) {
    case '"': {
        uptr end = scan_string(p + 1, e, &esc, &nul);
        if (end == NULL)
            return NULL;
        v = build_string(p + 1, (size_t)(end - (p + 1)), esc);
        p = end + 1;
        break;
    }
    case 't':
        p = scan_word(p, e, "true", 4);
        v = p ? json_true() : NULL;
        break;
    case 'f':
        p = scan_word(p, e, "false", 5);
        v = p ? json_false() : NULL;
        break;
    case 'n':
        p = scan_word(p, e, "null", 4);
        v = p ? json_null() : NULL;
        break;
    case '{':
    case '[': {
        bool object = *p == '{';
        char close = object ? '}' : ']';
        if (depth >= LEAN_MAX_DEPTH)
            return NULL;
        v = object ? json_object() : json_array();
        if (v == NULL)
            return NULL;
        p = skip_ws(p + 1, e);
        if (p < e && *p == close) {
            p++;
            break;
        }
        for (;;) {
            char small[128];
            char *key = NULL;     /* the member's key: in the text, in small, or on the heap */
            bool key_heap = false;
            size_t klen = 0;
            if (object) {
                if (p == e || *p != '"')
                    goto fail;
                esc = nul = false;
                uptr kend = scan_string(p + 1, e, &esc, &nul);
                if (kend == NULL || nul)
                    goto fail;
                klen = (size_t)(kend - (p + 1));
                if (esc) {
                    key_heap = klen >= sizeof small;
                    key = key_heap ? malloc(klen + 1) : small;
                    if (key == NULL)
                        goto fail;
                    klen = unescape(p + 1, klen, key);
                } else {
                    key = (char *)(uintptr_t)(p + 1);
                }
                p = skip_ws(kend + 1, e);
                if (p == e || *p != ':' || json_object_getn(v, key, klen) != NULL) {
                    if (key_heap)
                        free(key);
                    goto fail;
                }
                p = skip_ws(p + 1, e);
            }
            uptr q = p;
            json_t *item = build_value(&q, e, depth + 1);
            int rc = -1;
            if (item != NULL)
                rc = object ? json_object_setn_new_nocheck(v, key, klen, item)
                            : json_array_append_new(v, item);
            if (key_heap)
                free(key);
            if (rc != 0)
                goto fail;
            p = skip_ws(q, e);
            if (p == e)
                goto fail;
            if (*p == close) {
                p++;
                break;
            }
            if (*p != ',')
                goto fail;
            p = skip_ws(p + 1, e);
        }
        break;
    }
    default: {
        uptr end = scan_number(p, e);
        if (end == NULL)
            return NULL;
        v = build_number(p, end);
        p = end;
        break;
    }
    }
    if (v == NULL)
        return NULL;
    *pp = p;
    return v;

fail:
    json_decref(v);
    return NULL;
}

static enum lean_field lean_lookup(uptr key, size_t n)
{
    for (size_t i = 0; i < sizeof lean_keys / sizeof lean_keys[0]; i++)
        if (lean_keys[i].len == n && memcmp(lean_keys[i].key, key, n) == 0)
            return lean_keys[i].field;
    return LF_OTHER;
}

/* A decoded field: 1..max characters. */
static bool lean_bounded(const char *s, size_t len, size_t max)
{
    return len > 0 && utf8_chars(s, len) <= max;
}

/* The fast path: CX_OK with msg filled, or LEAN_STEP_ASIDE with nothing held. */
static int lean_try(uptr p, uptr e, cx_msg *msg)
{
    struct {
        uptr s;   /* body, between the quotes */
        size_t n; /* its length in the text */
        bool esc; /* holds escapes */
    } f[LF_NSTRINGS] = {{0}};
    uptr keys[LEAN_MAX_MEMBERS];
    size_t key_len[LEAN_MAX_MEMBERS];
    size_t nkeys = 0;
    json_t *payload = NULL;
    char *block = NULL;
    int success = -1;
    bool esc;
    bool nul;

    p = skip_ws(p, e);
    if (p == e || *p != '{')
        goto aside;
    p = skip_ws(p + 1, e);
    for (;;) {
        /* An empty object lacks an id: not ours to answer. */
        if (p == e || *p != '"')
            goto aside;
        esc = nul = false;
        uptr key = p + 1;
        uptr kend = scan_string(key, e, &esc, &nul);
        if (kend == NULL || esc || nkeys == LEAN_MAX_MEMBERS)
            goto aside;
        size_t kn = (size_t)(kend - key);
        /* Unescaped keys are equal exactly when their bytes are. */
        for (size_t i = 0; i < nkeys; i++)
            if (key_len[i] == kn && memcmp(keys[i], key, kn) == 0)
                goto aside;
        keys[nkeys] = key;
        key_len[nkeys++] = kn;
        p = skip_ws(kend + 1, e);
        if (p == e || *p != ':')
            goto aside;
        p = skip_ws(p + 1, e);
        if (p == e)
            goto aside;

        enum lean_field field = lean_lookup(key, kn);
        if (field < LF_NSTRINGS) {
            if (*p != '"')
                goto aside;
            esc = nul = false;
            uptr end = scan_string(p + 1, e, &esc, &nul);
            if (end == NULL || nul)
                goto aside;
            f[field].s = p + 1;
            f[field].n = (size_t)(end - (p + 1));
            f[field].esc = esc;
            p = end + 1;
        } else if (field == LF_PAYLOAD) {
            /* {} is by far the most common payload: no parsing for it. */
            uptr q = skip_ws(p + 1, e);
            if (*p == '{' && q < e && *q == '}') {
                payload = json_object();
                p = q + 1;
            } else {
                payload = build_value(&p, e, 1);
            }
            if (payload == NULL)
                goto aside;
        } else if (field == LF_SUCCESS) {
            uptr end = scan_word(p, e, "true", 4);
            success = 1;
            if (end == NULL) {
                end = scan_word(p, e, "false", 5);
                success = 0;
            }
            if (end == NULL)
                goto aside;
            p = end;
        } else if (field == LF_ERROR) {
            goto aside;
        } else {
            /* Unknown members: strings and words are checked here; anything whose
             * range or keys jansson would have to judge goes its way. */
            uptr end;
            if (*p == '"') {
                esc = nul = false;
                end = scan_string(p + 1, e, &esc, &nul);
                end = end ? end + 1 : NULL;
            } else if (*p == 't') {
                end = scan_word(p, e, "true", 4);
            } else if (*p == 'f') {
                end = scan_word(p, e, "false", 5);
            } else if (*p == 'n') {
                end = scan_word(p, e, "null", 4);
            } else {
                end = NULL;
            }
            if (end == NULL)
                goto aside;
            p = end;
        }

        p = skip_ws(p, e);
        if (p == e)
            goto aside;
        if (*p == '}')
            break;
        if (*p != ',')
            goto aside;
        p = skip_ws(p + 1, e);
    }
    if (skip_ws(p + 1, e) != e)
        goto aside;
    if (f[LF_ID].s == NULL || f[LF_TYPE].s == NULL || f[LF_NS].s == NULL ||
        f[LF_ACTION].s == NULL)
        goto aside;

    /* All strings in one block; unescaping never makes a string longer. */
    size_t total = 0;
    for (int i = 0; i < LF_NSTRINGS; i++)
        if (f[i].s != NULL)
            total += f[i].n + 1;
    block = malloc(total);
    if (block == NULL)
        goto aside;
    const char *val[LF_NSTRINGS] = {0};
    size_t vlen[LF_NSTRINGS] = {0};
    char *o = block;
    for (int i = 0; i < LF_NSTRINGS; i++) {
        if (f[i].s == NULL)
            continue;
        if (f[i].esc) {
            vlen[i] = unescape(f[i].s, f[i].n, o);
        } else {
            memcpy(o, f[i].s, f[i].n);
            o[f[i].n] = '\0';
            vlen[i] = f[i].n;
        }
        val[i] = o;
        o += vlen[i] + 1;
    }
    enum cx_msg_type type;
    if (!lean_bounded(val[LF_ID], vlen[LF_ID], CX_MSG_MAX_ID_CHARS) ||
        parse_type(val[LF_TYPE], &type) != 0 ||
        !lean_bounded(val[LF_NS], vlen[LF_NS], MSG_MAX_NAME_CHARS) ||
        !lean_bounded(val[LF_ACTION], vlen[LF_ACTION], MSG_MAX_NAME_CHARS))
        goto aside;

    if (payload == NULL) {
        /* Absent: {} as cx_msg_decode makes it. */
        payload = json_object();
        if (payload == NULL)
            goto aside;
    }

    msg->root = NULL;
    msg->id = val[LF_ID];
    msg->type = type;
    msg->ns = val[LF_NS];
    msg->action = val[LF_ACTION];
    msg->payload = payload;
    msg->timestamp = val[LF_TIMESTAMP];
    msg->correlation_id = val[LF_CORRELATION];
    msg->success = success;
    msg->error = NULL;
    msg->workspace_id = val[LF_WORKSPACE];
    msg->target_core_id = val[LF_TARGET];
    msg->source_core_id = val[LF_SOURCE];
    msg->lean = block;
    return CX_OK;

aside:
    json_decref(payload);
    free(block);
    return LEAN_STEP_ASIDE;
}

int cx_msg_decode_lean(const char *data, size_t len, cx_msg *msg, cx_msg_error *err)
{
    memset(msg, 0, sizeof *msg);
    msg->success = -1;
    if (data != NULL && len <= CX_WS_MAX_MESSAGE_BYTES &&
        lean_try((uptr)data, (uptr)data + len, msg) == CX_OK) {
        err->id[0] = '\0';
        err->message[0] = '\0';
        return CX_OK;
    }
    return cx_msg_decode(data, len, msg, err);
}

const char *cx_msg_payload_str(const cx_msg *m, const char *key)
{
    json_t *v = json_is_object(m->payload) ? json_object_get(m->payload, key) : NULL;
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
        return NULL;
    return json_string_value(v);
}
