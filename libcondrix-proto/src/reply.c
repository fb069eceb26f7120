/* Sending answers on server connections: the text encoders of msg.c straight into
 * cx_conn_send_text, so the Core and Maestro share one fast path and one wording. */
#include "condrix/reply.h"

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
