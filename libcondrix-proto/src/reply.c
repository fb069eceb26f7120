/* Sending answers on server connections: the text encoders of msg.c straight into
 * cx_conn_send_text, so the Core and Maestro share one fast path and one wording. */
#include "condrix/reply.h"

#include "condrix/limits.h"
#include "condrix/ws.h"

#include <stdio.h>
#include <stdlib.h>

static void send_text(cx_conn *c, char *text, size_t len)
{
    if (!text)
        return;
    (void)cx_conn_send_text(c, text, len);
    free(text);
}

void cx_reply_json(cx_conn *c, json_t *m)
{
    if (!m)
        return;
    size_t len;
    char *text = cx_msg_encode(m, &len);
    json_decref(m);
    send_text(c, text, len);
}

void cx_reply_ok(cx_conn *c, const cx_msg *req, json_t *payload)
{
    size_t len;
    char *text = cx_msg_encode_ok(req->ns, req->action, req->id, payload, &len);
    send_text(c, text, len);
}

void cx_reply_err(cx_conn *c, const cx_msg *req, const char *code, const char *message)
{
    size_t len;
    char *text = cx_msg_encode_fail(req->ns, req->action, req->id, code, message, NULL, NULL, &len);
    send_text(c, text, len);
}

void cx_reply_limited(cx_conn *c, const cx_msg *req, int retry_after, json_t *payload)
{
    if (retry_after < 1)
        retry_after = 1;
    char msg[96];
    snprintf(msg, sizeof msg, "too many attempts; try again in %d seconds", retry_after);
    size_t len;
    char *text = cx_msg_encode_fail(req->ns, req->action, req->id, "RATE_LIMITED", msg,
                                    json_pack("{s:i}", "retryAfter", retry_after), payload, &len);
    send_text(c, text, len);
}

void cx_reply_invalid(cx_conn *c, const char *ns, const cx_msg_error *err, uint8_t *in_row)
{
    if (*in_row < UINT8_MAX)
        (*in_row)++;
    size_t len;
    char *text = cx_msg_encode_fail(ns, "error", err->id[0] ? err->id : NULL, "INVALID_MESSAGE",
                                    err->message, NULL, NULL, &len);
    send_text(c, text, len);
    if (*in_row >= CX_MSG_MAX_INVALID_IN_ROW)
        cx_conn_close(c, CX_WS_CLOSE_POLICY, "too many invalid messages");
}
