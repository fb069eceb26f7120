/* TOTP state kept in a database row, shared by the Core's tokens and Maestro's users:
 * the active secret, a pending one awaiting enable, the enabled flag and the last
 * accepted step. Accepting a code is a conditional UPDATE, so of two processes taking
 * the same step only one succeeds (the replay guard lives in the database). */
#ifndef CONDRIX_TOTPSTORE_H
#define CONDRIX_TOTPSTORE_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CX_TOTP_STORE_SECRET_MAX 64 /* bytes; a longer blob was not written by us */

typedef struct cx_totp_row {
    uint8_t active[CX_TOTP_STORE_SECRET_MAX];  /* the secret in force, when active_len > 0 */
    size_t active_len;
    uint8_t pending[CX_TOTP_STORE_SECRET_MAX]; /* awaiting enable, when pending_len > 0 */
    size_t pending_len;
    bool enabled;                              /* codes are required */
    int64_t last_step;                         /* last accepted step of the active secret */
} cx_totp_row;

/* The statements of one table. Each binds the row's key as ?1:
 *   get:    SELECT secret, pending, enabled, last_step
 *   enable: pending becomes the secret, enabled, last_step = ?2, if pending is still ?3
 *   accept: last_step = ?2 if enabled, last_step < ?2 and the secret is still ?3 */
typedef struct cx_totp_stmts {
    sqlite3_stmt *get, *enable, *accept;
} cx_totp_stmts;

/* Read a row's TOTP state; the caller wipes *row. CX_E_NOTFOUND, CX_E_DB (a stored
 * secret of an impossible size). */
int cx_totp_store_load(const cx_totp_stmts *st, const char *key, cx_totp_row *row);

/* Check code against the pending secret (enable = true: it becomes the active one) or the
 * active one, and record its step as accepted. CX_E_INVAL when there is no such secret
 * (or TOTP is off), cx_totp_verify's codes for a wrong code, CX_E_REPLAY for a step at or
 * before the last accepted one, CX_E_DENIED when a newer setup replaced the pending
 * secret meanwhile, CX_E_NOTFOUND. */
int cx_totp_store_check(const cx_totp_stmts *st, const char *key, const char *code,
                        int64_t now_s, bool enable);

#endif
