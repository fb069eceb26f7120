/* Answering requests on a server connection: envelopes written straight to text and sent,
 * shared by the Core and Maestro so both answer alike. All run on the loop thread. */
#ifndef CONDRIX_REPLY_H
#define CONDRIX_REPLY_H

#include <jansson.h>
#include <stdint.h>

#include "condrix/msg.h"
#include "condrix/net.h"

/* Encode and send an envelope; steals m (NULL is ignored). */
void cx_reply_json(cx_conn *c, json_t *m);
/* Answer req with success and payload (stolen; NULL for {}). */
void cx_reply_ok(cx_conn *c, const cx_msg *req, json_t *payload);
/* Answer req with success:false and error {code, message}. */
void cx_reply_err(cx_conn *c, const cx_msg *req, const char *code, const char *message);
/* RATE_LIMITED with details.retryAfter (at least 1) and payload (stolen, may be NULL). */
void cx_reply_limited(cx_conn *c, const cx_msg *req, int retry_after, json_t *payload);

/* Answer a message that did not decode: INVALID_MESSAGE in namespace ns, correlated when
 * its id could be read, counted in *in_row (the caller zeroes it on a valid message);
 * the CX_MSG_MAX_INVALID_IN_ROW-th in a row closes the connection 1008. */
void cx_reply_invalid(cx_conn *c, const char *ns, const cx_msg_error *err, uint8_t *in_row);

#endif
