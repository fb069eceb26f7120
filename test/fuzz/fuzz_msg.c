/* libFuzzer driver for the envelope decoder: arbitrary bytes into cx_msg_decode and,
 * when they decode, a response built and encoded the way the servers answer. */
#include "condrix/error.h"
#include "condrix/msg.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Messages past this size prove nothing new and slow the fuzzer down. */
#define FUZZ_MAX_INPUT (64 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FUZZ_MAX_INPUT)
        return 0;
    cx_msg m;
    cx_msg_error err;
    int rc = cx_msg_decode((const char *)data, size, &m, &err);
    if (rc != CX_OK) {
        /* Whatever failed, the error fits its buffers and can answer the peer. */
        if (strlen(err.id) >= sizeof err.id || strlen(err.message) >= sizeof err.message ||
            err.message[0] == '\0')
            abort();
        json_t *r = cx_msg_fail("core", "unknown", err.id, "INVALID_MESSAGE", err.message, NULL,
                                NULL);
        if (r != NULL) {
            char *s = cx_msg_encode(r, NULL);
            free(s);
            json_decref(r);
        }
        return 0;
    }
    if (m.root == NULL || m.id == NULL || m.ns == NULL || m.action == NULL || m.payload == NULL)
        abort();
    json_t *r = cx_msg_ok(m.ns, m.action, m.id, json_incref(m.payload));
    if (r != NULL) {
        size_t len = 0;
        char *s = cx_msg_encode(r, &len);
        if (s != NULL) {
            /* What we send must decode again. */
            cx_msg back;
            cx_msg_error e2;
            if (cx_msg_decode(s, len, &back, &e2) != CX_OK)
                abort();
            if (strcmp(back.correlation_id, m.id) != 0 || strcmp(back.ns, m.ns) != 0)
                abort();
            cx_msg_free(&back);
            free(s);
        }
        json_decref(r);
    }
    cx_msg_free(&m);
    return 0;
}
