/* libFuzzer driver for the envelope codec: arbitrary bytes into cx_msg_decode and,
 * differentially, into cx_msg_decode_lean (same verdict, error texts and field values);
 * then the encoders against jansson: cx_msg_encode must print exactly what json_dumps
 * prints, and cx_msg_encode_ok/fail exactly what the tree builders print. */
#include "condrix/error.h"
#include "condrix/msg.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Messages past this size prove nothing new and slow the fuzzer down. */
#define FUZZ_MAX_INPUT (64 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void same_str(const char *a, const char *b)
{
    if ((a == NULL) != (b == NULL) || (a != NULL && strcmp(a, b) != 0))
        abort();
}

/* The lean decoder must agree with the jansson one in every observable way. */
static void same_msg(const cx_msg *a, const cx_msg *b)
{
    same_str(a->id, b->id);
    same_str(a->ns, b->ns);
    same_str(a->action, b->action);
    same_str(a->timestamp, b->timestamp);
    same_str(a->correlation_id, b->correlation_id);
    same_str(a->workspace_id, b->workspace_id);
    same_str(a->target_core_id, b->target_core_id);
    same_str(a->source_core_id, b->source_core_id);
    if (a->type != b->type || a->success != b->success)
        abort();
    if ((a->error == NULL) != (b->error == NULL) ||
        (a->error != NULL && !json_equal(a->error, b->error)))
        abort();
    if (a->payload == NULL || b->payload == NULL || !json_equal(a->payload, b->payload))
        abort();
    /* json_equal ignores key order; handlers and relays see the order too. */
    char *pa = json_dumps(a->payload, JSON_COMPACT | JSON_ENCODE_ANY);
    char *pb = json_dumps(b->payload, JSON_COMPACT | JSON_ENCODE_ANY);
    if (pa == NULL || pb == NULL || strcmp(pa, pb) != 0)
        abort();
    free(pa);
    free(pb);
}

/* Our writer against json_dumps on the same tree: equal text, or both NULL. */
static void same_encoding(const json_t *v)
{
    char *ours = cx_msg_encode(v, NULL);
    char *theirs = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if ((ours == NULL) != (theirs == NULL) || (ours != NULL && strcmp(ours, theirs) != 0))
        abort();
    free(ours);
    free(theirs);
}

/* Overwrite the fresh id and the timestamp of got with those of want, which must sit
 * at the same places; everything else must then be byte for byte the same. */
static void same_envelope(char *got, const char *want, bool free_got)
{
    static const char ts_key[] = ",\"timestamp\":\"";
    if (got == NULL || want == NULL) {
        if (got != want)
            abort();
        return;
    }
    size_t n = strlen(got);
    if (n != strlen(want) || n < 44 || strncmp(got, "{\"id\":\"", 7) != 0)
        abort();
    memcpy(got + 7, want + 7, 36);
    /* The last one is the envelope's: nothing after it can hold that unescaped text. */
    const char *g = NULL;
    const char *w = NULL;
    for (const char *p = strstr(got, ts_key); p; p = strstr(p + 1, ts_key))
        g = p;
    for (const char *p = strstr(want, ts_key); p; p = strstr(p + 1, ts_key))
        w = p;
    if (g == NULL || g - got != w - want || (size_t)(g - got) + sizeof ts_key - 1 + 24 > n)
        abort();
    memcpy(got + (g - got) + sizeof ts_key - 1, w + sizeof ts_key - 1, 24);
    if (strcmp(got, want) != 0)
        abort();
    if (free_got)
        free(got);
}

static void check_builders(const cx_msg *m)
{
    size_t len = 0;
    json_t *tree = cx_msg_ok(m->ns, m->action, m->id, json_incref(m->payload));
    char *want = tree ? cx_msg_encode(tree, NULL) : NULL;
    json_decref(tree);
    char *got = cx_msg_encode_ok(m->ns, m->action, m->id, json_incref(m->payload), &len);
    if (got != NULL && len != strlen(got))
        abort();
    same_envelope(got, want, false);
    free(got);
    free(want);

    /* The failure shape, with the peer's strings where code and message go. */
    json_t *details = json_pack("{s:i}", "retryAfter", 3);
    tree = cx_msg_fail(m->ns, m->action, m->timestamp, m->id, m->action, json_incref(details),
                       json_incref(m->payload));
    want = tree ? cx_msg_encode(tree, NULL) : NULL;
    json_decref(tree);
    got = cx_msg_encode_fail(m->ns, m->action, m->timestamp, m->id, m->action, details,
                             json_incref(m->payload), NULL);
    same_envelope(got, want, false);
    free(got);
    free(want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FUZZ_MAX_INPUT)
        return 0;

    /* The writer on strings jansson never checked: invalid UTF-8 must fail alike. */
    json_t *raw = json_object();
    if (raw != NULL) {
        json_object_set_new_nocheck(raw, "s", json_stringn_nocheck((const char *)data, size));
        json_object_setn_new_nocheck(raw, (const char *)data, size, json_true());
        same_encoding(raw);
        json_decref(raw);
    }

    /* The direct encoder on names and payloads nobody checked, against the builders. */
    if (size < 512) {
        char name[512];
        memcpy(name, data, size);
        name[size] = '\0';
        json_t *p = json_pack("{s:o}", "v", json_stringn_nocheck((const char *)data, size));
        json_t *tree = cx_msg_ok(name, "a", name, json_incref(p));
        char *want = tree ? cx_msg_encode(tree, NULL) : NULL;
        json_decref(tree);
        same_envelope(cx_msg_encode_ok(name, "a", name, p, NULL), want, true);
        free(want);
    }

    cx_msg m;
    cx_msg_error err;
    int rc = cx_msg_decode((const char *)data, size, &m, &err);

    cx_msg lean;
    cx_msg_error lerr;
    int lrc = cx_msg_decode_lean((const char *)data, size, &lean, &lerr);
    if (lrc != rc || strcmp(err.id, lerr.id) != 0 || strcmp(err.message, lerr.message) != 0)
        abort();

    if (rc != CX_OK) {
        /* Whatever failed, the error fits its buffers and can answer the peer. */
        if (strlen(err.id) >= sizeof err.id || strlen(err.message) >= sizeof err.message ||
            err.message[0] == '\0')
            abort();
        if (lean.root != NULL || lean.lean != NULL || lean.payload != NULL)
            abort();
        char *s = cx_msg_encode_fail("core", "unknown", err.id, "INVALID_MESSAGE", err.message,
                                     NULL, NULL, NULL);
        free(s);
        return 0;
    }
    if (m.root == NULL || m.id == NULL || m.ns == NULL || m.action == NULL || m.payload == NULL)
        abort();
    same_msg(&m, &lean);
    same_encoding(m.root);
    same_encoding(m.payload);
    check_builders(&m);

    json_t *r = cx_msg_ok(m.ns, m.action, m.id, json_incref(m.payload));
    if (r != NULL) {
        size_t len = 0;
        char *s = cx_msg_encode(r, &len);
        if (s != NULL) {
            /* What we send must decode again, by either decoder. */
            cx_msg back;
            cx_msg_error e2;
            if (cx_msg_decode(s, len, &back, &e2) != CX_OK)
                abort();
            if (strcmp(back.correlation_id, m.id) != 0 || strcmp(back.ns, m.ns) != 0)
                abort();
            cx_msg_free(&back);
            if (cx_msg_decode_lean(s, len, &back, &e2) != CX_OK)
                abort();
            if (strcmp(back.correlation_id, m.id) != 0 || strcmp(back.ns, m.ns) != 0)
                abort();
            cx_msg_free(&back);
            free(s);
        }
        json_decref(r);
    }
    cx_msg_free(&lean);
    cx_msg_free(&m);
    return 0;
}
