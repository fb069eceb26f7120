/* Unit tests for the message envelope: strict decoding with its error messages and
 * correlation ids (run against both decoders, which must agree), the builders' field
 * order and contents, the direct encoders against jansson's text, ids and timestamps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "condrix/error.h"
#include "condrix/msg.h"
#include "condrix/random.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The decoder under test: the decoding tests run once per decoder (see main). */
static int (*decode_fn)(const char *, size_t, cx_msg *, cx_msg_error *) = cx_msg_decode;

static int use_jansson_decoder(void **state)
{
    decode_fn = cx_msg_decode;
    return 0;
}

static int use_lean_decoder(void **state)
{
    decode_fn = cx_msg_decode_lean;
    return 0;
}

static int decode(const char *s, cx_msg *m, cx_msg_error *e)
{
    return decode_fn(s, strlen(s), m, e);
}

/* Decoding must fail with this message; err->id must be want_id ("" for none). */
static void expect_fail(const char *json, const char *want_id, const char *want_msg)
{
    cx_msg m;
    cx_msg_error e;
    int rc = decode(json, &m, &e);
    if (rc != CX_E_PROTO)
        fail_msg("decoded '%s': rc %d", json, rc);
    assert_null(m.root);
    assert_string_equal(e.id, want_id);
    assert_string_equal(e.message, want_msg);
}

static void test_decode_each_type(void **state)
{
    static const struct {
        const char *name;
        enum cx_msg_type t;
    } types[] = {{"request", CX_MSG_REQUEST},
                 {"response", CX_MSG_RESPONSE},
                 {"event", CX_MSG_EVENT},
                 {"stream", CX_MSG_STREAM}};
    for (size_t i = 0; i < 4; i++) {
        char buf[256];
        snprintf(buf, sizeof buf,
                 "{\"id\":\"m%zu\",\"type\":\"%s\",\"namespace\":\"core\",\"action\":\"info\","
                 "\"payload\":{\"x\":1}}",
                 i, types[i].name);
        cx_msg m;
        cx_msg_error e;
        assert_int_equal(decode(buf, &m, &e), CX_OK);
        assert_int_equal(m.type, types[i].t);
        assert_string_equal(cx_msg_type_name(m.type), types[i].name);
        assert_string_equal(m.ns, "core");
        assert_string_equal(m.action, "info");
        assert_int_equal(json_integer_value(json_object_get(m.payload, "x")), 1);
        assert_null(m.timestamp);
        assert_null(m.correlation_id);
        assert_int_equal(m.success, -1);
        assert_null(m.error);
        assert_null(m.workspace_id);
        assert_null(m.target_core_id);
        assert_null(m.source_core_id);
        cx_msg_free(&m);
        assert_null(m.root);
    }
}

static void test_decode_all_fields(void **state)
{
    const char *s = "{\"id\":\"r1\",\"type\":\"response\",\"namespace\":\"maestro\","
                    "\"action\":\"login\",\"payload\":[1,2],\"timestamp\":\"2026-11-22T10:00:00.000Z\","
                    "\"correlationId\":\"q1\",\"success\":false,"
                    "\"error\":{\"code\":\"X\",\"message\":\"y\"},\"workspaceId\":\"w\","
                    "\"targetCoreId\":\"t\",\"sourceCoreId\":\"s\",\"extra\":{\"ignored\":true}}";
    cx_msg m;
    cx_msg_error e;
    assert_int_equal(decode(s, &m, &e), CX_OK);
    assert_string_equal(m.id, "r1");
    assert_true(json_is_array(m.payload));
    assert_string_equal(m.timestamp, "2026-11-22T10:00:00.000Z");
    assert_string_equal(m.correlation_id, "q1");
    assert_int_equal(m.success, 0);
    assert_string_equal(json_string_value(json_object_get(m.error, "code")), "X");
    assert_string_equal(m.workspace_id, "w");
    assert_string_equal(m.target_core_id, "t");
    assert_string_equal(m.source_core_id, "s");
    cx_msg_free(&m);

    assert_int_equal(decode("{\"id\":\"a\",\"type\":\"response\",\"namespace\":\"n\","
                            "\"action\":\"a\",\"success\":true}",
                            &m, &e),
                     CX_OK);
    assert_int_equal(m.success, 1);
    cx_msg_free(&m);
}

static void test_payload_absent_is_empty_object(void **state)
{
    cx_msg m;
    cx_msg_error e;
    assert_int_equal(
        decode("{\"id\":\"a\",\"type\":\"request\",\"namespace\":\"core\",\"action\":\"health\"}", &m,
               &e),
        CX_OK);
    assert_non_null(m.payload);
    assert_true(json_is_object(m.payload));
    assert_int_equal(json_object_size(m.payload), 0);
    /* A handler may keep a reference past the message. */
    json_t *keep = json_incref(m.payload);
    cx_msg_free(&m);
    assert_true(json_is_object(keep));
    json_decref(keep);

    /* payload may be any JSON value, null included. */
    assert_int_equal(decode("{\"id\":\"a\",\"type\":\"request\",\"namespace\":\"core\","
                            "\"action\":\"health\",\"payload\":null}",
                            &m, &e),
                     CX_OK);
    assert_true(json_is_null(m.payload));
    cx_msg_free(&m);
}

static void test_not_json_and_not_object(void **state)
{
    expect_fail("", "", "message is not valid JSON");
    expect_fail("{", "", "message is not valid JSON");
    expect_fail("nope", "", "message is not valid JSON");
    expect_fail("[1,2]", "", "message must be a JSON object");
    expect_fail("\"str\"", "", "message is not valid JSON"); /* jansson refuses bare values */
    expect_fail("42", "", "message is not valid JSON");
    /* Trailing garbage after a valid object. */
    expect_fail("{\"id\":\"a\",\"type\":\"request\",\"namespace\":\"n\",\"action\":\"a\"} x", "",
                "message is not valid JSON");
    expect_fail("{\"id\":\"a\",\"type\":\"request\",\"namespace\":\"n\",\"action\":\"a\"}{}", "",
                "message is not valid JSON");
    /* Duplicate keys are refused, correlated when an id can be read (the last one). */
    expect_fail("{\"id\":\"a\",\"id\":\"b\",\"type\":\"request\",\"namespace\":\"n\",\"action\":\"a\"}",
                "b", "message has a duplicate key");
    expect_fail("{\"id\":\"a\",\"type\":\"request\",\"namespace\":\"n\",\"action\":\"a\",\"action\":\"b\"}",
                "a", "message has a duplicate key");
    /* An integer beyond 64 bits is read as a double; a number no double holds is refused
     * (and then no parse reads the id). */
    {
        cx_msg big;
        cx_msg_error be;
        const char *j = "{\"id\":\"big\",\"type\":\"request\",\"namespace\":\"n\",\"action\":\"a\","
                        "\"payload\":{\"x\":123456789012345678901234567890,\"n\":7}}";
        assert_int_equal(decode(j, &big, &be), CX_OK);
        assert_true(json_is_real(json_object_get(big.payload, "x")));
        assert_true(json_real_value(json_object_get(big.payload, "x")) > 1e29);
        cx_msg_free(&big);
    }
    expect_fail("{\"id\":\"big\",\"type\":\"request\",\"namespace\":\"n\",\"action\":\"a\",\"payload\":{\"x\":1e999}}",
                "", "message is not valid JSON");
    /* NUL inside an envelope string is refused; when the id is clean the error still
     * carries it, so the sender can correlate the answer. */
    expect_fail("{\"id\":\"a\\u0000b\",\"type\":\"request\",\"namespace\":\"n\",\"action\":\"a\"}",
                "", "missing or invalid field 'id'");
    expect_fail("{\"id\":\"ok\",\"type\":\"request\",\"namespace\":\"n\",\"action\":\"a\\u0000b\"}",
                "ok", "missing or invalid field 'action'");
    expect_fail("{\"id\":\"ok\",\"type\":\"request\",\"namespace\":\"n\",\"action\":\"a\",\"workspaceId\":\"\\u0000\"}",
                "ok", "field 'workspaceId' must be a string");
    /* Invalid UTF-8. */
    expect_fail("{\"id\":\"\xff\",\"type\":\"request\",\"namespace\":\"n\",\"action\":\"a\"}", "",
                "message is not valid JSON");

    /* Embedded NUL byte in the raw data, outside strings. */
    cx_msg m;
    cx_msg_error e;
    const char raw[] = "{\"id\":\"a\",\"type\":\"request\",\"namespace\":\"n\",\"action\":\"a\"}\0";
    assert_int_equal(decode_fn(raw, sizeof raw, &m, &e), CX_E_PROTO);
    /* Trailing whitespace is fine. */
    assert_int_equal(
        decode("{\"id\":\"a\",\"type\":\"request\",\"namespace\":\"n\",\"action\":\"a\"} \n", &m, &e),
        CX_OK);
    cx_msg_free(&m);
}

static void test_id_errors(void **state)
{
    expect_fail("{\"type\":\"request\",\"namespace\":\"n\",\"action\":\"a\"}", "",
                "missing or invalid field 'id'");
    expect_fail("{\"id\":7,\"type\":\"request\",\"namespace\":\"n\",\"action\":\"a\"}", "",
                "missing or invalid field 'id'");
    expect_fail("{\"id\":\"\",\"type\":\"request\",\"namespace\":\"n\",\"action\":\"a\"}", "",
                "missing or invalid field 'id'");
    expect_fail("{\"id\":null,\"type\":\"request\",\"namespace\":\"n\",\"action\":\"a\"}", "",
                "missing or invalid field 'id'");

    char id128[129], id129[130], buf[400];
    memset(id128, 'x', 128);
    id128[128] = '\0';
    memset(id129, 'y', 129);
    id129[129] = '\0';
    cx_msg m;
    cx_msg_error e;
    snprintf(buf, sizeof buf, "{\"id\":\"%s\",\"type\":\"request\",\"namespace\":\"n\",\"action\":\"a\"}",
             id128);
    assert_int_equal(decode(buf, &m, &e), CX_OK);
    assert_string_equal(m.id, id128);
    cx_msg_free(&m);
    snprintf(buf, sizeof buf, "{\"id\":\"%s\",\"type\":\"request\",\"namespace\":\"n\",\"action\":\"a\"}",
             id129);
    expect_fail(buf, "", "missing or invalid field 'id'");
    /* A 128-char id that fails later is still echoed in full. */
    snprintf(buf, sizeof buf, "{\"id\":\"%s\",\"type\":\"bogus\",\"namespace\":\"n\",\"action\":\"a\"}",
             id128);
    expect_fail(buf, id128, "missing or invalid field 'type'");

    /* Characters, not bytes: 100 two-byte characters is a valid id. */
    char wide[260];
    for (int i = 0; i < 100; i++) {
        wide[2 * i] = (char)0xC3;
        wide[2 * i + 1] = (char)0xA9;
    }
    wide[200] = '\0';
    snprintf(buf, sizeof buf, "{\"id\":\"%s\",\"type\":\"request\",\"namespace\":\"n\",\"action\":\"a\"}",
             wide);
    assert_int_equal(decode(buf, &m, &e), CX_OK);
    cx_msg_free(&m);
}

static void test_field_errors_carry_id(void **state)
{
    expect_fail("{\"id\":\"q\",\"namespace\":\"n\",\"action\":\"a\"}", "q",
                "missing or invalid field 'type'");
    expect_fail("{\"id\":\"q\",\"type\":\"Request\",\"namespace\":\"n\",\"action\":\"a\"}", "q",
                "missing or invalid field 'type'");
    expect_fail("{\"id\":\"q\",\"type\":1,\"namespace\":\"n\",\"action\":\"a\"}", "q",
                "missing or invalid field 'type'");
    expect_fail("{\"id\":\"q\",\"type\":\"request\",\"action\":\"a\"}", "q",
                "missing or invalid field 'namespace'");
    expect_fail("{\"id\":\"q\",\"type\":\"request\",\"namespace\":\"\",\"action\":\"a\"}", "q",
                "missing or invalid field 'namespace'");
    expect_fail("{\"id\":\"q\",\"type\":\"request\",\"namespace\":[],\"action\":\"a\"}", "q",
                "missing or invalid field 'namespace'");
    expect_fail("{\"id\":\"q\",\"type\":\"request\",\"namespace\":\"n\"}", "q",
                "missing or invalid field 'action'");
    expect_fail("{\"id\":\"q\",\"type\":\"request\",\"namespace\":\"n\",\"action\":\"\"}", "q",
                "missing or invalid field 'action'");
    expect_fail("{\"id\":\"q\",\"type\":\"request\",\"namespace\":\"n\",\"action\":false}", "q",
                "missing or invalid field 'action'");

    char big[200], buf[400];
    memset(big, 'n', 129);
    big[129] = '\0';
    snprintf(buf, sizeof buf, "{\"id\":\"q\",\"type\":\"request\",\"namespace\":\"%s\",\"action\":\"a\"}",
             big);
    expect_fail(buf, "q", "missing or invalid field 'namespace'");
    snprintf(buf, sizeof buf, "{\"id\":\"q\",\"type\":\"request\",\"namespace\":\"n\",\"action\":\"%s\"}",
             big);
    expect_fail(buf, "q", "missing or invalid field 'action'");
    big[128] = '\0';
    snprintf(buf, sizeof buf, "{\"id\":\"q\",\"type\":\"request\",\"namespace\":\"n\",\"action\":\"%s\"}",
             big);
    cx_msg m;
    cx_msg_error e;
    assert_int_equal(decode(buf, &m, &e), CX_OK);
    cx_msg_free(&m);

#define HEAD "{\"id\":\"q\",\"type\":\"request\",\"namespace\":\"n\",\"action\":\"a\","
    expect_fail(HEAD "\"timestamp\":5}", "q", "field 'timestamp' must be a string");
    expect_fail(HEAD "\"correlationId\":{}}", "q", "field 'correlationId' must be a string");
    expect_fail(HEAD "\"correlationId\":null}", "q", "field 'correlationId' must be a string");
    expect_fail(HEAD "\"workspaceId\":1}", "q", "field 'workspaceId' must be a string");
    expect_fail(HEAD "\"targetCoreId\":true}", "q", "field 'targetCoreId' must be a string");
    expect_fail(HEAD "\"sourceCoreId\":[]}", "q", "field 'sourceCoreId' must be a string");
    expect_fail(HEAD "\"success\":\"true\"}", "q", "field 'success' must be a boolean");
    expect_fail(HEAD "\"success\":1}", "q", "field 'success' must be a boolean");
    expect_fail(HEAD "\"error\":\"boom\"}", "q", "field 'error' must be an object");
#undef HEAD
}

static void test_builders_ok(void **state)
{
    json_t *p = json_pack("{s:i}", "n", 3);
    json_t *o = cx_msg_ok("core", "info", "req-1", p);
    assert_non_null(o);
    size_t len = 0;
    char *s = cx_msg_encode(o, &len);
    assert_non_null(s);
    assert_int_equal(len, strlen(s));
    /* Field order on the wire. */
    const char *order[] = {"\"id\":", "\"type\":\"response\"", "\"namespace\":\"core\"",
                           "\"action\":\"info\"", "\"payload\":{\"n\":3}", "\"timestamp\":",
                           "\"correlationId\":\"req-1\"", "\"success\":true"};
    const char *at = s;
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        const char *f = strstr(at, order[i]);
        if (f == NULL)
            fail_msg("'%s' missing or out of order in %s", order[i], s);
        at = f;
    }
    assert_null(strstr(s, "\"error\""));
    assert_null(strchr(s, ' ')); /* compact */

    /* Round trip through the decoder. */
    cx_msg m;
    cx_msg_error e;
    assert_int_equal(cx_msg_decode(s, len, &m, &e), CX_OK);
    assert_int_equal(m.type, CX_MSG_RESPONSE);
    assert_int_equal(strlen(m.id), 36);
    assert_string_equal(m.correlation_id, "req-1");
    assert_int_equal(m.success, 1);
    assert_int_equal(strlen(m.timestamp), 24);
    assert_true(json_equal(m.payload, p));
    cx_msg_free(&m);
    free(s);
    json_decref(o);

    /* No correlationId for NULL or empty; NULL payload is {}. */
    o = cx_msg_ok("core", "info", NULL, NULL);
    assert_non_null(o);
    assert_null(json_object_get(o, "correlationId"));
    assert_true(json_is_object(json_object_get(o, "payload")));
    assert_int_equal(json_object_size(json_object_get(o, "payload")), 0);
    json_decref(o);
    o = cx_msg_ok("core", "info", "", NULL);
    assert_null(json_object_get(o, "correlationId"));
    json_decref(o);
}

static void test_builders_fail(void **state)
{
    json_t *o = cx_msg_fail("core", "auth", "r9", "RATE_LIMITED", "slow down",
                            json_pack("{s:i}", "retryAfter", 30),
                            json_pack("{s:b}", "authenticated", 0));
    assert_non_null(o);
    assert_false(json_is_true(json_object_get(o, "success")));
    assert_true(json_is_false(json_object_get(o, "success")));
    assert_string_equal(json_string_value(json_object_get(o, "correlationId")), "r9");
    json_t *err = json_object_get(o, "error");
    assert_string_equal(json_string_value(json_object_get(err, "code")), "RATE_LIMITED");
    assert_string_equal(json_string_value(json_object_get(err, "message")), "slow down");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(err, "details"), "retryAfter")),
                     30);
    assert_true(json_is_false(json_object_get(json_object_get(o, "payload"), "authenticated")));
    char *s = cx_msg_encode(o, NULL);
    assert_non_null(s);
    assert_non_null(strstr(s, "\"success\":false,\"error\":{\"code\":\"RATE_LIMITED\","
                              "\"message\":\"slow down\",\"details\":{\"retryAfter\":30}}"));
    free(s);
    json_decref(o);

    o = cx_msg_fail("core", "x", NULL, "INVALID_MESSAGE", "bad", NULL, NULL);
    assert_non_null(o);
    assert_null(json_object_get(o, "correlationId"));
    assert_null(json_object_get(json_object_get(o, "error"), "details"));
    assert_int_equal(json_object_size(json_object_get(o, "payload")), 0);
    json_decref(o);
}

static void test_make(void **state)
{
    json_t *o = cx_msg_make(CX_MSG_EVENT, "maestro", "core.online", json_pack("{s:s}", "id", "c1"));
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "type")), "event");
    assert_string_equal(json_string_value(json_object_get(o, "namespace")), "maestro");
    assert_string_equal(json_string_value(json_object_get(o, "action")), "core.online");
    assert_null(json_object_get(o, "success"));
    assert_null(json_object_get(o, "correlationId"));
    char *s = cx_msg_encode(o, NULL);
    assert_int_equal(strncmp(s, "{\"id\":\"", 7), 0);
    free(s);
    json_decref(o);

    o = cx_msg_make(CX_MSG_REQUEST, "core", "auth", NULL);
    assert_string_equal(json_string_value(json_object_get(o, "type")), "request");
    assert_int_equal(json_object_size(json_object_get(o, "payload")), 0);
    json_decref(o);

    /* UTF-8 is kept as is, not escaped. */
    o = cx_msg_ok("core", "info", NULL, json_pack("{s:s}", "name", "caf\xc3\xa9"));
    s = cx_msg_encode(o, NULL);
    assert_non_null(strstr(s, "caf\xc3\xa9"));
    free(s);
    json_decref(o);
}

static void test_timestamp(void **state)
{
    char ts[25];
    cx_msg_timestamp(0, ts);
    assert_string_equal(ts, "1970-01-01T00:00:00.000Z");
    cx_msg_timestamp(1795600000123, ts);
    assert_string_equal(ts, "2026-11-25T09:46:40.123Z");
    cx_msg_timestamp(951782400999, ts); /* leap day */
    assert_string_equal(ts, "2000-02-29T00:00:00.999Z");
    cx_msg_timestamp(-5, ts);
    assert_string_equal(ts, "1970-01-01T00:00:00.000Z");
    cx_msg_timestamp(INT64_MAX, ts);
    assert_string_equal(ts, "9999-12-31T23:59:59.999Z");
}

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static void test_uuid(void **state)
{
    char a[37], b[37];
    for (int n = 0; n < 100; n++) {
        cx_msg_new_id(a);
        assert_int_equal(strlen(a), 36);
        for (int i = 0; i < 36; i++) {
            if (i == 8 || i == 13 || i == 18 || i == 23)
                assert_int_equal(a[i], '-');
            else
                assert_true(is_hex(a[i]));
        }
        assert_int_equal(a[14], '4');
        assert_true(a[19] == '8' || a[19] == '9' || a[19] == 'a' || a[19] == 'b');
    }
    cx_msg_new_id(b);
    assert_string_not_equal(a, b);
}

/* ---- lean decoder against the jansson one ---- */

/* Both decoders on the same bytes: same verdict, error texts and field values. */
static void expect_same(const char *json, size_t len, bool want_fast)
{
    cx_msg a, b;
    cx_msg_error ea, eb;
    int ra = cx_msg_decode(json, len, &a, &ea);
    int rb = cx_msg_decode_lean(json, len, &b, &eb);
    if (ra != rb)
        fail_msg("'%s': jansson %d, lean %d", json, ra, rb);
    assert_string_equal(ea.id, eb.id);
    assert_string_equal(ea.message, eb.message);
    if (ra != CX_OK) {
        assert_null(b.root);
        assert_null(b.lean);
        return;
    }
    if (want_fast && (b.root != NULL || b.lean == NULL))
        fail_msg("'%s' did not take the fast path", json);
    assert_string_equal(a.id, b.id);
    assert_string_equal(a.ns, b.ns);
    assert_string_equal(a.action, b.action);
    assert_int_equal(a.type, b.type);
    assert_int_equal(a.success, b.success);
    if (a.timestamp || b.timestamp)
        assert_string_equal(a.timestamp, b.timestamp);
    if (a.correlation_id || b.correlation_id)
        assert_string_equal(a.correlation_id, b.correlation_id);
    if (a.workspace_id || b.workspace_id)
        assert_string_equal(a.workspace_id, b.workspace_id);
    char *pa = json_dumps(a.payload, JSON_COMPACT | JSON_ENCODE_ANY);
    char *pb = json_dumps(b.payload, JSON_COMPACT | JSON_ENCODE_ANY);
    assert_non_null(pa);
    assert_non_null(pb);
    assert_string_equal(pa, pb);
    assert_true(json_equal(a.payload, b.payload));
    free(pa);
    free(pb);
    cx_msg_free(&a);
    cx_msg_free(&b);
}

#define SAME(json, fast) expect_same((json), strlen(json), (fast))
#define ENV "{\"id\":\"i\",\"type\":\"request\",\"namespace\":\"core\",\"action\":\"x\","

static void test_lean_fast_path(void **state)
{
    cx_msg m;
    cx_msg_error e;
    const char *req = "{\"id\":\"r1-7\",\"type\":\"request\",\"namespace\":\"core\","
                      "\"action\":\"health\",\"payload\":{},\"timestamp\":\"2026-11-22T10:00:00.000Z\"}";
    assert_int_equal(cx_msg_decode_lean(req, strlen(req), &m, &e), CX_OK);
    assert_null(m.root); /* no tree of the envelope */
    assert_non_null(m.lean);
    assert_string_equal(m.id, "r1-7");
    assert_int_equal(m.type, CX_MSG_REQUEST);
    assert_string_equal(m.ns, "core");
    assert_string_equal(m.action, "health");
    assert_string_equal(m.timestamp, "2026-11-22T10:00:00.000Z");
    assert_true(json_is_object(m.payload));
    assert_int_equal(json_object_size(m.payload), 0);
    assert_string_equal(e.message, "");
    /* The payload may outlive the message, as with cx_msg_decode. */
    json_t *keep = json_incref(m.payload);
    cx_msg_free(&m);
    assert_null(m.lean);
    assert_true(json_is_object(keep));
    json_decref(keep);

    /* Escapes in envelope strings are decoded: é and U+1F600 as UTF-8. */
    const char *esc = "{\"id\":\"a\\u00e9\\ud83d\\ude00\\/\\\"\",\"type\":\"req\\u0075est\","
                      "\"namespace\":\"c\\tore\",\"action\":\"auth\",\"payload\":{\"token\":\"t\","
                      "\"clientType\":\"cli\",\"n\":[1,-2.5e3,null,true,false]}}";
    assert_int_equal(cx_msg_decode_lean(esc, strlen(esc), &m, &e), CX_OK);
    assert_null(m.root);
    assert_string_equal(m.id, "a\xc3\xa9\xf0\x9f\x98\x80/\"");
    assert_string_equal(m.ns, "c\tore");
    assert_int_equal(m.type, CX_MSG_REQUEST);
    assert_string_equal(json_string_value(json_object_get(m.payload, "token")), "t");
    assert_int_equal(json_array_size(json_object_get(m.payload, "n")), 5);
    cx_msg_free(&m);

    /* An error member is left to the jansson decoder: root is then set. */
    const char *resp = "{\"id\":\"r\",\"type\":\"response\",\"namespace\":\"core\",\"action\":\"a\","
                       "\"success\":false,\"error\":{\"code\":\"X\",\"message\":\"m\"}}";
    assert_int_equal(cx_msg_decode_lean(resp, strlen(resp), &m, &e), CX_OK);
    assert_non_null(m.root);
    assert_null(m.lean);
    assert_string_equal(json_string_value(json_object_get(m.error, "code")), "X");
    cx_msg_free(&m);
}

static void test_lean_agrees(void **state)
{
    /* Accepted, on the fast path. */
    SAME(ENV "\"payload\":{}}", true);
    SAME(" \t\r\n" ENV "\"payload\" : { \n } } \n", true);
    SAME(ENV "\"payload\":{\"a\":{\"b\":[1,{\"c\":\"\\u0000\"}]},\"d\":\"e\"}}", true);
    SAME(ENV "\"payload\":[0,-0,1.5,-0.0,1e10,1E-10,2.5e+3,9223372036854775807,"
             "-9223372036854775808,1e-400,123.456e7]}", true);
    SAME(ENV "\"payload\":\"just a string\"}", true);
    SAME(ENV "\"payload\":null,\"success\":true,\"extra\":\"x\\u0000\",\"n\":null}", true);
    SAME(ENV "\"timestamp\":\"t\",\"correlationId\":\"c\",\"workspaceId\":\"w\","
             "\"targetCoreId\":\"tc\",\"sourceCoreId\":\"sc\",\"success\":false}", true);
    SAME(ENV "\"payload\":{\"k\\u00e9y\":1,\"k\\n\":2}}", true);
    SAME(ENV "\"payload\":{\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\":\"\x7f\"}}", true);
    /* Accepted, but left to jansson. */
    SAME(ENV "\"n\":1}", false);
    SAME(ENV "\"o\":{\"a\":1}}", false);
    SAME("{\"i\\u0064\":\"i\",\"type\":\"request\",\"namespace\":\"n\",\"action\":\"a\"}", false);
    SAME(ENV "\"payload\":1.7976931348623157e308}", false);

    /* Refused, with the same texts. */
    SAME(ENV "\"payload\":{\"a\":1,\"a\":2}}", false);
    SAME(ENV "\"payload\":{\"a\":1,\"\\u0061\":2}}", false);
    SAME(ENV "\"payload\":{\"a\\u0000\":1}}", false);
    SAME(ENV "\"payload\":9223372036854775808}", false);
    SAME(ENV "\"payload\":-9223372036854775809}", false);
    SAME(ENV "\"payload\":1e400}", false);
    SAME(ENV "\"payload\":-1e400}", false);
    SAME(ENV "\"payload\":01}", false);
    SAME(ENV "\"payload\":1.}", false);
    SAME(ENV "\"payload\":.5}", false);
    SAME(ENV "\"payload\":-}", false);
    SAME(ENV "\"payload\":1e}", false);
    SAME(ENV "\"payload\":tru}", false);
    SAME(ENV "\"payload\":truex}", false);
    SAME(ENV "\"payload\":[1,]}", false);
    SAME(ENV "\"payload\":{\"a\":1,}}", false);
    SAME(ENV "\"payload\":{\"a\" 1}}", false);
    SAME(ENV "\"payload\":\"\\ud800\"}", false);
    SAME(ENV "\"payload\":\"\\udc00\"}", false);
    SAME(ENV "\"payload\":\"\\ud800\\u0041\"}", false);
    SAME(ENV "\"payload\":\"\\x\"}", false);
    SAME(ENV "\"payload\":\"\\u12G4\"}", false);
    SAME(ENV "\"payload\":\"\t\"}", false);
    SAME(ENV "\"payload\":\"\xc0\xaf\"}", false);       /* overlong */
    SAME(ENV "\"payload\":\"\xed\xa0\x80\"}", false);   /* surrogate in UTF-8 */
    SAME(ENV "\"payload\":\"\xf4\x90\x80\x80\"}", false); /* past U+10FFFF */
    SAME(ENV "\"payload\":\"\xe2\x82\"}", false);       /* cut short */
    SAME(ENV "\"payload\":{}} x", false);
    SAME(ENV "\"payload\":{}},", false);
    SAME(ENV "\"payload\":{}", false);
    SAME(ENV "\"type\":\"event\"}", false);
    SAME(ENV "\"success\":1}", false);
    SAME(ENV "\"timestamp\":5}", false);
    SAME(ENV "\"error\":[]}", false);
    SAME("{\"id\":\"\",\"type\":\"request\",\"namespace\":\"n\",\"action\":\"a\"}", false);
    SAME("{\"id\":\"i\",\"type\":\"Request\",\"namespace\":\"n\",\"action\":\"a\"}", false);
    SAME("{\"id\":\"i\",\"type\":\"request\",\"namespace\":\"\",\"action\":\"a\"}", false);
    SAME("{\"id\":\"i\",\"type\":\"request\",\"namespace\":\"n\"}", false);
    SAME("{}", false);
    SAME("[]", false);
    SAME("", false);

    /* jansson stops at 2048 levels in all; the lean path hands deep ones over. */
    for (int depth = 2040; depth <= 2050; depth += 5) {
        size_t n = strlen(ENV "\"payload\":") + 2 * (size_t)depth + 2;
        char *deep = malloc(n + 1);
        assert_non_null(deep);
        int o = sprintf(deep, ENV "\"payload\":");
        for (int i = 0; i < depth; i++)
            deep[o++] = '[';
        for (int i = 0; i < depth; i++)
            deep[o++] = ']';
        deep[o++] = '}';
        deep[o] = '\0';
        expect_same(deep, (size_t)o, false);
        free(deep);
    }
    /* Too large is refused before parsing, by both. */
    expect_same(ENV "\"payload\":{}}", (size_t)2 * 1024 * 1024, false);
}

/* ---- the encoders against jansson ---- */

static void expect_dumps_equal(const json_t *v)
{
    char *ours = cx_msg_encode(v, NULL);
    char *theirs = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (theirs == NULL) {
        assert_null(ours);
        return;
    }
    assert_non_null(ours);
    assert_string_equal(ours, theirs);
    free(ours);
    free(theirs);
}

static void test_encode_matches_jansson(void **state)
{
    json_t *v = json_pack("{s:s, s:s#, s:s, s:[f,f,f,f,f,f,f,f], s:[I,I,i], s:{}, s:[], s:n, s:b, s:b}",
                          "esc", "q\" b\\ / \b\f\n\r\t \x01\x1f\x7f caf\xc3\xa9 \xf0\x9f\x98\x80",
                          "nul", "a\0b", 3, "z\x1fk", "v", "reals", 1.0, 1e20, 1.5e-7, -0.0, 0.1,
                          1e300, 123456.789, -2.5, "ints", (json_int_t)INT64_MAX,
                          (json_int_t)INT64_MIN, 0, "obj", "arr", "null", "t", 1, "f", 0);
    assert_non_null(v);
    expect_dumps_equal(v);
    char *s = cx_msg_encode(v, NULL);
    assert_non_null(strstr(s, "\"q\\\" b\\\\ / \\b\\f\\n\\r\\t \\u0001\\u001F\x7f caf"));
    assert_non_null(strstr(s, "[1.0,1e20,1.4999999999999999e-7,-0.0,0.10000000000000001,"));
    assert_non_null(strstr(s, "\"a\\u0000b\""));
    free(s);

    /* Deep enough that the writer leaves it to jansson: still the same text. */
    json_t *deep = json_array();
    json_t *at = deep;
    for (int i = 0; i < 200; i++) {
        json_t *next = json_array();
        json_array_append_new(at, next);
        at = next;
    }
    expect_dumps_equal(deep);
    json_decref(deep);

    /* A string jansson never checked, not UTF-8: NULL, as json_dumps gives. */
    json_object_set_new_nocheck(v, "bad", json_stringn_nocheck("\xff", 1));
    assert_null(cx_msg_encode(v, NULL));
    expect_dumps_equal(v);
    json_decref(v);

    /* Only objects and arrays, as json_dumps without JSON_ENCODE_ANY. */
    json_t *str = json_string("x");
    assert_null(cx_msg_encode(str, NULL));
    json_decref(str);
    assert_null(cx_msg_encode(NULL, NULL));
}

/* got must be want but for the id and the timestamp, which are copied over first. */
static void expect_envelope(char *got, const char *want)
{
    assert_non_null(got);
    assert_non_null(want);
    assert_int_equal(strlen(got), strlen(want));
    memcpy(got + 7, want + 7, 36);
    const char *g = strstr(got, ",\"timestamp\":\"");
    const char *w = strstr(want, ",\"timestamp\":\"");
    assert_non_null(g);
    assert_int_equal(g - got, w - want);
    memcpy(got + (g - got) + 14, w + 14, 24);
    assert_string_equal(got, want);
}

static void test_encode_ok_fail(void **state)
{
    static const char *ids[] = {"req-1", NULL, "", "\"q\"\n\xc3\xa9"};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        json_t *p = json_pack("{s:s, s:I, s:[s]}", "status", "ok", "n", (json_int_t)42, "l", "x");
        json_t *tree = cx_msg_ok("core", "health", ids[i], json_incref(p));
        char *want = cx_msg_encode(tree, NULL);
        json_decref(tree);
        size_t len = 0;
        char *got = cx_msg_encode_ok("core", "health", ids[i], p, &len);
        assert_int_equal(len, strlen(got));
        expect_envelope(got, want);
        free(got);
        free(want);

        json_t *d = json_pack("{s:i}", "retryAfter", 5);
        p = json_pack("{s:b}", "authenticated", 0);
        tree = cx_msg_fail("core", "auth", ids[i], "RATE_LIMITED", "wait \"5\"", json_incref(d),
                           json_incref(p));
        want = cx_msg_encode(tree, NULL);
        json_decref(tree);
        got = cx_msg_encode_fail("core", "auth", ids[i], "RATE_LIMITED", "wait \"5\"", d, p, NULL);
        expect_envelope(got, want);
        free(got);
        free(want);
    }
    /* NULL payload is {}, NULL strings are "", a fresh id each time. */
    char *a = cx_msg_encode_ok(NULL, NULL, NULL, NULL, NULL);
    char *b = cx_msg_encode_fail("n", "a", "r", NULL, NULL, NULL, NULL, NULL);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(strstr(a, "\"namespace\":\"\",\"action\":\"\",\"payload\":{},\"timestamp\""));
    assert_non_null(strstr(b, "\"success\":false,\"error\":{\"code\":\"\",\"message\":\"\"}}"));
    assert_memory_not_equal(a + 7, b + 7, 36);
    free(a);
    a = cx_msg_encode_ok("n", "a", NULL, NULL, NULL);
    cx_msg m;
    cx_msg_error e;
    assert_int_equal(cx_msg_decode_lean(a, strlen(a), &m, &e), CX_OK);
    assert_null(m.root);
    assert_int_equal(m.type, CX_MSG_RESPONSE);
    assert_int_equal(m.success, 1);
    assert_null(m.correlation_id);
    assert_int_equal(strlen(m.id), 36);
    assert_int_equal(strlen(m.timestamp), 24);
    cx_msg_free(&m);
    free(a);
    free(b);
    /* A name that is not UTF-8 fails like the builders do; the payload is still taken. */
    assert_null(cx_msg_ok("c\xff", "a", "r", NULL));
    assert_null(cx_msg_encode_ok("c\xff", "a", "r", json_pack("{s:i}", "x", 1), NULL));
    assert_null(cx_msg_encode_fail("c", "a", "r", "\xc0\x80", "m", json_object(), json_object(),
                                   NULL));
    /* A payload too deep for the writer goes through the tree builders: same shape. */
    json_t *deep = json_array();
    json_t *at = deep;
    for (int i = 0; i < 100; i++) {
        json_t *next = json_array();
        json_array_append_new(at, next);
        at = next;
    }
    json_t *tree = cx_msg_ok("c", "a", "r", json_incref(deep));
    char *want = cx_msg_encode(tree, NULL);
    json_decref(tree);
    char *got = cx_msg_encode_ok("c", "a", "r", deep, NULL);
    expect_envelope(got, want);
    free(got);
    free(want);
}

static void test_random_pool(void **state)
{
    /* Draws across refills: never stuck on zeros, never repeating a 16-byte block. */
    unsigned char prev[16] = {0};
    unsigned char cur[16];
    int zero_blocks = 0;
    for (int i = 0; i < 3 * CX_RANDOM_POOL_BYTES / 16 + 7; i++) {
        cx_random_buf(cur, i % 2 ? sizeof cur : 7); /* odd sizes straddle refills */
        static const unsigned char zero[16];
        if (memcmp(cur, zero, sizeof cur) == 0)
            zero_blocks++;
        assert_memory_not_equal(cur, prev, sizeof cur);
        memcpy(prev, cur, sizeof cur);
    }
    assert_int_equal(zero_blocks, 0);
    /* Bigger than the pool: straight from libsodium. */
    unsigned char *big = calloc(1, 3 * CX_RANDOM_POOL_BYTES);
    assert_non_null(big);
    cx_random_buf(big, 3 * CX_RANDOM_POOL_BYTES);
    size_t zeros = 0;
    for (size_t i = 0; i < 3 * CX_RANDOM_POOL_BYTES; i++)
        zeros += big[i] == 0;
    assert_true(zeros < 3 * CX_RANDOM_POOL_BYTES / 64); /* ~1/256 expected */
    free(big);
    cx_random_discard();
    cx_random_buf(cur, sizeof cur);
    assert_memory_not_equal(cur, prev, sizeof cur);
}

int main(void)
{
    /* The decoding tests, once per decoder: their answers must not differ. */
    const struct CMUnitTest decoding[] = {
        cmocka_unit_test(test_decode_each_type),
        cmocka_unit_test(test_decode_all_fields),
        cmocka_unit_test(test_payload_absent_is_empty_object),
        cmocka_unit_test(test_not_json_and_not_object),
        cmocka_unit_test(test_id_errors),
        cmocka_unit_test(test_field_errors_carry_id),
    };
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builders_ok),
        cmocka_unit_test(test_builders_fail),
        cmocka_unit_test(test_make),
        cmocka_unit_test(test_timestamp),
        cmocka_unit_test(test_uuid),
        cmocka_unit_test(test_lean_fast_path),
        cmocka_unit_test(test_lean_agrees),
        cmocka_unit_test(test_encode_matches_jansson),
        cmocka_unit_test(test_encode_ok_fail),
        cmocka_unit_test(test_random_pool),
    };
    int failed = cmocka_run_group_tests_name("decode (jansson)", decoding, use_jansson_decoder, NULL);
    failed += cmocka_run_group_tests_name("decode (lean)", decoding, use_lean_decoder, NULL);
    failed += cmocka_run_group_tests(tests, NULL, NULL);
    return failed;
}
