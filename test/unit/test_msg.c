/* Unit tests for the message envelope: strict decoding with its error messages and
 * correlation ids, the builders' field order and contents, ids and timestamps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "condrix/error.h"
#include "condrix/msg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int decode(const char *s, cx_msg *m, cx_msg_error *e)
{
    return cx_msg_decode(s, strlen(s), m, e);
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
    /* Duplicate keys are refused. */
    expect_fail("{\"id\":\"a\",\"id\":\"b\",\"type\":\"request\",\"namespace\":\"n\",\"action\":\"a\"}",
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
    assert_int_equal(cx_msg_decode(raw, sizeof raw, &m, &e), CX_E_PROTO);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_each_type),
        cmocka_unit_test(test_decode_all_fields),
        cmocka_unit_test(test_payload_absent_is_empty_object),
        cmocka_unit_test(test_not_json_and_not_object),
        cmocka_unit_test(test_id_errors),
        cmocka_unit_test(test_field_errors_carry_id),
        cmocka_unit_test(test_builders_ok),
        cmocka_unit_test(test_builders_fail),
        cmocka_unit_test(test_make),
        cmocka_unit_test(test_timestamp),
        cmocka_unit_test(test_uuid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
