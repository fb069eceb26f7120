/* TOTP state in a database row, for both servers: load it, and accept a code with the
 * replay guard done by a conditional UPDATE. */
#include "condrix/totpstore.h"
#include "condrix/db.h"
#include "condrix/error.h"
#include "condrix/totp.h"

#include <sodium.h>
#include <string.h>

static int copy_secret(sqlite3_stmt *st, int col, uint8_t *out, size_t *len)
{
    const void *p = sqlite3_column_blob(st, col);
    int n = sqlite3_column_bytes(st, col);
    *len = 0;
    if (p == NULL || n == 0)
        return CX_OK;
    if (n < 0 || n > CX_TOTP_STORE_SECRET_MAX)
        return CX_E_DB;
    memcpy(out, p, (size_t)n);
    *len = (size_t)n;
    return CX_OK;
}

int cx_totp_store_load(const cx_totp_stmts *st, const char *key, cx_totp_row *row)
{
    memset(row, 0, sizeof *row);
    int rc = cx_db_bind_text(st->get, 1, key);
    if (rc != CX_OK) {
        cx_db_finish(st->get);
        return rc;
    }
    if ((rc = cx_db_first_row(st->get)) != CX_OK)
        return rc;
    if ((rc = copy_secret(st->get, 0, row->active, &row->active_len)) == CX_OK &&
        (rc = copy_secret(st->get, 1, row->pending, &row->pending_len)) == CX_OK) {
        row->enabled = sqlite3_column_int(st->get, 2) != 0;
        row->last_step = sqlite3_column_int64(st->get, 3);
    }
    cx_db_finish(st->get);
    return rc;
}

int cx_totp_store_check(const cx_totp_stmts *st, const char *key, const char *code,
                        int64_t now_s, bool enable)
{
    if (st == NULL || key == NULL || code == NULL)
        return CX_E_INVAL;
    cx_totp_row row;
    int rc = cx_totp_store_load(st, key, &row);
    if (rc != CX_OK)
        goto out;
    const uint8_t *secret = enable ? row.pending : row.active;
    size_t secret_len = enable ? row.pending_len : row.active_len;
    if (secret_len == 0 || (!enable && !row.enabled)) {
        rc = CX_E_INVAL;
        goto out;
    }
    /* A new secret has no history: any valid step may be its first. */
    int64_t step = enable ? -1 : row.last_step;
    if ((rc = cx_totp_verify(secret, secret_len, code, now_s, &step)) != CX_OK)
        goto out;
    /* Our read may be stale: the conditional UPDATE is what accepts, atomically. */
    sqlite3_stmt *up = enable ? st->enable : st->accept;
    int changes = 0;
    if ((rc = cx_db_bind_text(up, 1, key)) || (rc = cx_db_bind_i64(up, 2, step)) ||
        (rc = cx_db_bind_blob(up, 3, secret, secret_len))) {
        cx_db_finish(up);
        goto out;
    }
    if ((rc = cx_db_run(up, &changes)) == CX_OK && changes == 0)
        /* enable: a newer setup replaced the secret this code came from */
        rc = enable ? CX_E_DENIED : CX_E_REPLAY;
out:
    sodium_memzero(&row, sizeof row);
    return rc;
}
