/* Unit tests for Maestro's store against real SQLite files in temporary directories: the
 * key file, users and the last-admin rule, sessions, TOTP replay refusal across handles,
 * the pairing state machine, Core tokens (pending, promotion, rotation), grants, audit
 * trimming, settings, and that no plaintext secret ever reaches the database files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <jansson.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "condrix/error.h"
#include "condrix/pairing.h"
#include "condrix/token.h"
#include "condrix/totp.h"
#include "store.h"

#define NOW 1700000000000LL /* a fixed clock, Unix ms */
#define HASH "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA"

typedef struct fixture {
    char dir[64];
    mx_store *s;
} fixture;

static void path_in(const fixture *f, const char *name, char *out, size_t n)
{
    snprintf(out, n, "%s/%s", f->dir, name);
}

static mx_store *open_store(const fixture *f)
{
    mx_store *s = NULL;
    char *err = NULL;
    int rc = mx_store_open(f->dir, &s, &err);
    if (rc != CX_OK)
        fail_msg("mx_store_open: %d %s", rc, err ? err : "");
    free(err);
    return s;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/cx_test_mx_store_XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    char *err = NULL;
    if (mx_store_open(f->dir, &f->s, &err) != CX_OK) {
        fprintf(stderr, "open: %s\n", err ? err : "?");
        free(err);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    mx_store_close(f->s);
    const char *names[] = {"maestro.db", "maestro.db-wal", "maestro.db-shm", "maestro.key"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char p[160];
        path_in(f, names[i], p, sizeof p);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

static long long count_rows(mx_store *s, const char *sql)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(mx_store_db(s), sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    long long v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void make_user(mx_store *s, const char *name, int role, mx_user *out)
{
    assert_int_equal(mx_user_create(s, name, HASH, role, NOW, out), CX_OK);
}

/* ---- open, key, files ---- */

static void test_key_and_files(void **state)
{
    fixture *f = *state;
    char kp[160], dp[160];
    path_in(f, "maestro.key", kp, sizeof kp);
    path_in(f, "maestro.db", dp, sizeof dp);
    struct stat st;
    assert_int_equal(stat(kp, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(st.st_size, 32);
    assert_int_equal(stat(dp, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(stat(f->dir, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);

    uint8_t key1[32], key2[32];
    FILE *fp = fopen(kp, "rb");
    assert_non_null(fp);
    assert_int_equal(fread(key1, 1, 32, fp), 32);
    fclose(fp);

    /* A code made now is redeemable after a reopen: the same key is read back. */
    char code[7], pid[MX_ID_CHARS + 1];
    mx_pairing p;
    assert_int_equal(mx_pairing_create(f->s, "admin", 1, 900000, NOW, code, &p), CX_OK);
    char mid[MX_ID_CHARS + 1];
    snprintf(mid, sizeof mid, "%s", mx_store_maestro_id(f->s));
    assert_int_equal(strlen(mid), 36);
    mx_store_close(f->s);
    f->s = open_store(f);
    fp = fopen(kp, "rb");
    assert_non_null(fp);
    assert_int_equal(fread(key2, 1, 32, fp), 32);
    fclose(fp);
    assert_memory_equal(key1, key2, 32);
    assert_string_equal(mx_store_maestro_id(f->s), mid);
    assert_int_equal(mx_pairing_redeem(f->s, code, "core-a", NOW + 1, pid), CX_OK);
    assert_string_equal(pid, p.id);

    /* A loosened key file is tightened again. */
    assert_int_equal(chmod(kp, 0644), 0);
    mx_store_close(f->s);
    f->s = open_store(f);
    assert_int_equal(stat(kp, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);

    /* A damaged key is refused with a message for the operator. */
    mx_store_close(f->s);
    f->s = NULL;
    assert_int_equal(truncate(kp, 31), 0);
    mx_store *s2 = NULL;
    char *err = NULL;
    assert_int_not_equal(mx_store_open(f->dir, &s2, &err), CX_OK);
    assert_null(s2);
    assert_non_null(err);
    assert_non_null(strstr(err, "maestro.key"));
    assert_non_null(strstr(err, "31 bytes"));
    free(err);
    assert_int_equal(unlink(kp), 0);
    f->s = open_store(f); /* a fresh key is made */
    assert_int_equal(stat(kp, &st), 0);
    assert_int_equal(st.st_size, 32);
}

static void test_settings(void **state)
{
    fixture *f = *state;
    char *v = (char *)"x";
    assert_int_equal(mx_setting_get(f->s, "nope", &v), CX_OK);
    assert_null(v);
    assert_int_equal(mx_setting_set(f->s, "k", "one"), CX_OK);
    assert_int_equal(mx_setting_set(f->s, "k", "two"), CX_OK);
    assert_int_equal(mx_setting_get(f->s, "k", &v), CX_OK);
    assert_string_equal(v, "two");
    free(v);
    assert_int_equal(mx_setting_get(f->s, "maestro.id", &v), CX_OK);
    assert_string_equal(v, mx_store_maestro_id(f->s));
    free(v);
    assert_int_equal(mx_setting_set(f->s, NULL, "x"), CX_E_INVAL);
}

/* ---- users ---- */

static void test_users(void **state)
{
    fixture *f = *state;
    mx_user a, b, got;
    make_user(f->s, "Alice", MX_ROLE_ADMIN, &a);
    assert_int_equal(strlen(a.id), 36);
    assert_int_equal(mx_user_create(f->s, "alice", HASH, MX_ROLE_USER, NOW, NULL), CX_E_EXISTS);
    assert_int_equal(mx_user_create(f->s, "ALICE", HASH, MX_ROLE_USER, NOW, NULL), CX_E_EXISTS);
    assert_int_equal(mx_user_create(f->s, "", HASH, 0, NOW, NULL), CX_E_INVAL);
    assert_int_equal(mx_user_create(f->s, ".dot", HASH, 0, NOW, NULL), CX_E_INVAL);
    assert_int_equal(mx_user_create(f->s, "sp ace", HASH, 0, NOW, NULL), CX_E_INVAL);
    assert_int_equal(mx_user_create(f->s, "ok", HASH, 7, NOW, NULL), CX_E_INVAL);
    assert_int_equal(mx_user_create(f->s, "ok", "", 0, NOW, NULL), CX_E_INVAL);
    char longname[MX_USERNAME_MAX + 2];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    assert_int_equal(mx_user_create(f->s, longname, HASH, 0, NOW, NULL), CX_E_INVAL);
    longname[MX_USERNAME_MAX] = '\0';
    assert_int_equal(mx_user_create(f->s, longname, HASH, 0, NOW, NULL), CX_OK);
    make_user(f->s, "bob.smith@example-1_x", MX_ROLE_USER, &b);

    char hash[128];
    assert_int_equal(mx_user_by_name(f->s, "aLiCe", &got, hash), CX_OK);
    assert_string_equal(got.id, a.id);
    assert_string_equal(got.username, "Alice");
    assert_int_equal(got.role, MX_ROLE_ADMIN);
    assert_int_equal(got.created_at, NOW);
    assert_false(got.totp_enabled);
    assert_string_equal(hash, HASH);
    assert_int_equal(mx_user_by_id(f->s, b.id, &got, NULL), CX_OK);
    assert_string_equal(got.username, "bob.smith@example-1_x");
    assert_int_equal(mx_user_by_name(f->s, "carol", &got, NULL), CX_E_NOTFOUND);
    assert_int_equal(mx_user_by_id(f->s, "nope", NULL, NULL), CX_E_NOTFOUND);

    mx_user *arr = NULL;
    size_t n = 0;
    assert_int_equal(mx_user_list(f->s, &arr, &n), CX_OK);
    assert_int_equal(n, 3);
    assert_string_equal(arr[0].username, longname); /* "aaa..." sorts first, case-insensitive */
    assert_string_equal(arr[1].username, "Alice");
    assert_string_equal(arr[2].username, "bob.smith@example-1_x");
    free(arr);
    assert_int_equal(mx_user_count(f->s), 3);
    assert_int_equal(mx_user_admin_count(f->s), 1);

    assert_int_equal(mx_user_set_role(f->s, b.id, MX_ROLE_ADMIN), CX_OK);
    assert_int_equal(mx_user_admin_count(f->s), 2);
    assert_int_equal(mx_user_set_role(f->s, "nope", MX_ROLE_USER), CX_E_NOTFOUND);
    assert_int_equal(mx_user_set_role(f->s, b.id, 5), CX_E_INVAL);
}

static void test_last_admin(void **state)
{
    fixture *f = *state;
    mx_user a, b, u;
    make_user(f->s, "a", MX_ROLE_ADMIN, &a);
    make_user(f->s, "u", MX_ROLE_USER, &u);
    assert_int_equal(mx_user_delete(f->s, a.id), CX_E_DENIED);
    assert_int_equal(mx_user_set_role(f->s, a.id, MX_ROLE_USER), CX_E_DENIED);
    assert_int_equal(mx_user_set_role(f->s, a.id, MX_ROLE_ADMIN), CX_OK); /* no-op is fine */
    assert_int_equal(mx_user_admin_count(f->s), 1);
    make_user(f->s, "b", MX_ROLE_ADMIN, &b);
    assert_int_equal(mx_user_set_role(f->s, a.id, MX_ROLE_USER), CX_OK);
    assert_int_equal(mx_user_delete(f->s, b.id), CX_E_DENIED);
    assert_int_equal(mx_user_set_role(f->s, b.id, MX_ROLE_USER), CX_E_DENIED);
    assert_int_equal(mx_user_delete(f->s, a.id), CX_OK);
    assert_int_equal(mx_user_delete(f->s, a.id), CX_E_NOTFOUND);
    assert_int_equal(mx_user_delete(f->s, u.id), CX_OK);
    assert_int_equal(mx_user_count(f->s), 1);
    assert_int_equal(mx_user_admin_count(f->s), 1);
}

static void test_user_delete_cascades(void **state)
{
    fixture *f = *state;
    mx_user a, u;
    make_user(f->s, "a", MX_ROLE_ADMIN, &a);
    make_user(f->s, "u", MX_ROLE_USER, &u);
    char tok[65];
    mx_core c;
    assert_int_equal(mx_session_create(f->s, u.id, "1.2.3.4", "ua", NOW, tok, NULL), CX_OK);
    assert_int_equal(mx_core_issue_token(f->s, "core-1", "One", NOW, tok, &c), CX_OK);
    assert_int_equal(mx_grant(f->s, u.id, c.id), CX_OK);
    assert_int_equal(mx_user_delete(f->s, u.id), CX_OK);
    assert_int_equal(count_rows(f->s, "SELECT count(*) FROM sessions"), 0);
    assert_int_equal(count_rows(f->s, "SELECT count(*) FROM user_cores"), 0);
    assert_int_equal(mx_core_by_id(f->s, c.id, NULL), CX_OK);
}

/* The per-request check: one lookup by the token's hash gives the session and its owner's
 * current role; a role change shows at once, a deleted owner means an unknown session. */
static void test_session_check_hash(void **state)
{
    fixture *f = *state;
    mx_user a, u, who;
    make_user(f->s, "a", MX_ROLE_ADMIN, &a);
    make_user(f->s, "Bob", MX_ROLE_USER, &u);
    char tok[65];
    mx_session x, y;
    assert_int_equal(mx_session_create(f->s, u.id, "1.2.3.4", "ua", NOW, tok, &x), CX_OK);
    uint8_t hash[CX_TOKEN_HASH_BYTES];
    cx_token_hash(tok, hash);
    assert_int_equal(mx_session_check_hash(f->s, hash, NOW + 1, &y, &who), CX_OK);
    assert_string_equal(y.id, x.id);
    assert_string_equal(who.id, u.id);
    assert_string_equal(who.username, "Bob");
    assert_int_equal(who.role, MX_ROLE_USER);
    assert_int_equal(mx_user_set_role(f->s, u.id, MX_ROLE_ADMIN), CX_OK);
    assert_int_equal(mx_session_check_hash(f->s, hash, NOW + 1, NULL, &who), CX_OK);
    assert_int_equal(who.role, MX_ROLE_ADMIN);
    assert_int_equal(mx_session_check_hash(f->s, hash, x.expires_at, NULL, NULL), CX_E_EXPIRED);
    uint8_t other[CX_TOKEN_HASH_BYTES];
    memcpy(other, hash, sizeof other);
    other[0] ^= 1;
    assert_int_equal(mx_session_check_hash(f->s, other, NOW + 1, NULL, NULL), CX_E_NOTFOUND);
    assert_int_equal(mx_user_delete(f->s, u.id), CX_OK);
    assert_int_equal(mx_session_check_hash(f->s, hash, NOW + 1, NULL, &who), CX_E_NOTFOUND);
    /* Revoking by hash, as a signed-in connection does on logout. */
    assert_int_equal(mx_session_create(f->s, a.id, NULL, NULL, NOW, tok, NULL), CX_OK);
    cx_token_hash(tok, hash);
    assert_int_equal(mx_session_revoke_hash(f->s, hash), CX_OK);
    assert_int_equal(mx_session_check(f->s, tok, NOW + 1, NULL), CX_E_NOTFOUND);
    assert_int_equal(mx_session_revoke_hash(f->s, hash), CX_E_NOTFOUND);
}

static void test_password_change_revokes_sessions(void **state)
{
    fixture *f = *state;
    mx_user u, o;
    make_user(f->s, "u", MX_ROLE_ADMIN, &u);
    make_user(f->s, "other", MX_ROLE_USER, &o);
    char t1[65], t2[65], t3[65], t4[65];
    mx_session s1, s2;
    assert_int_equal(mx_session_create(f->s, u.id, "a", "b", NOW, t1, &s1), CX_OK);
    assert_int_equal(mx_session_create(f->s, u.id, "a", "b", NOW, t2, &s2), CX_OK);
    assert_int_equal(mx_session_create(f->s, u.id, "a", "b", NOW, t3, NULL), CX_OK);
    assert_int_equal(mx_session_create(f->s, o.id, "a", "b", NOW, t4, NULL), CX_OK);

    assert_int_equal(mx_user_set_password(f->s, u.id, "$argon2id$new", s1.id), CX_OK);
    char hash[128];
    assert_int_equal(mx_user_by_id(f->s, u.id, NULL, hash), CX_OK);
    assert_string_equal(hash, "$argon2id$new");
    assert_int_equal(mx_session_check(f->s, t1, NOW, NULL), CX_OK);
    assert_int_equal(mx_session_check(f->s, t2, NOW, NULL), CX_E_NOTFOUND);
    assert_int_equal(mx_session_check(f->s, t3, NOW, NULL), CX_E_NOTFOUND);
    assert_int_equal(mx_session_check(f->s, t4, NOW, NULL), CX_OK); /* another user's */

    assert_int_equal(mx_user_set_password(f->s, u.id, HASH, NULL), CX_OK);
    assert_int_equal(mx_session_check(f->s, t1, NOW, NULL), CX_E_NOTFOUND);
    assert_int_equal(mx_session_check(f->s, t4, NOW, NULL), CX_OK);
    assert_int_equal(mx_user_set_password(f->s, "nope", HASH, NULL), CX_E_NOTFOUND);

    /* Inside a caller's transaction the store nests (the CLI does this). */
    assert_int_equal(sqlite3_exec(mx_store_db(f->s), "BEGIN IMMEDIATE", NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(mx_user_set_password(f->s, o.id, HASH, NULL), CX_OK);
    assert_int_equal(mx_user_set_password(f->s, "nope", HASH, NULL), CX_E_NOTFOUND);
    assert_int_equal(sqlite3_exec(mx_store_db(f->s), "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(mx_session_check(f->s, t4, NOW, NULL), CX_E_NOTFOUND);
}

/* ---- sessions ---- */

static void test_sessions(void **state)
{
    fixture *f = *state;
    mx_user u, o;
    make_user(f->s, "u", MX_ROLE_USER, &u);
    make_user(f->s, "o", MX_ROLE_USER, &o);
    char tok[65], tok2[65];
    mx_session x, y;
    assert_int_equal(mx_session_create(f->s, u.id, "203.0.113.9", "Mozilla\x01\xff", NOW, tok, &x),
                     CX_OK);
    assert_true(cx_token_well_formed(tok));
    assert_int_equal(x.expires_at, NOW + MX_SESSION_TTL_MS);
    assert_string_equal(x.user_agent, "Mozilla??");
    assert_int_equal(mx_session_check(f->s, tok, NOW + 5, &y), CX_OK);
    assert_string_equal(y.id, x.id);
    assert_string_equal(y.user_id, u.id);
    assert_string_equal(y.ip, "203.0.113.9");
    assert_int_equal(y.created_at, NOW);
    assert_int_equal(y.last_seen_at, NOW);

    assert_int_equal(mx_session_touch(f->s, x.id, NOW + 1000), CX_OK);
    assert_int_equal(mx_session_touch(f->s, "nope", NOW), CX_E_NOTFOUND);
    assert_int_equal(mx_session_check(f->s, tok, NOW + 5, &y), CX_OK);
    assert_int_equal(y.last_seen_at, NOW + 1000);

    /* Expiry: reported, kept until swept. */
    memset(&y, 0, sizeof y);
    assert_int_equal(mx_session_check(f->s, tok, NOW + MX_SESSION_TTL_MS, &y), CX_E_EXPIRED);
    assert_string_equal(y.user_id, u.id);
    size_t swept = 99;
    assert_int_equal(mx_session_sweep(f->s, NOW + MX_SESSION_TTL_MS - 1, &swept), CX_OK);
    assert_int_equal(swept, 0);
    assert_int_equal(mx_session_sweep(f->s, NOW + MX_SESSION_TTL_MS, &swept), CX_OK);
    assert_int_equal(swept, 1);
    assert_int_equal(mx_session_check(f->s, tok, NOW, NULL), CX_E_NOTFOUND);

    assert_int_equal(mx_session_check(f->s, "abc", NOW, NULL), CX_E_FORMAT);
    char upper[65];
    memset(upper, 'A', 64);
    upper[64] = '\0';
    assert_int_equal(mx_session_check(f->s, upper, NOW, NULL), CX_E_FORMAT);
    cx_token_generate(tok2);
    assert_int_equal(mx_session_check(f->s, tok2, NOW, NULL), CX_E_NOTFOUND);
    assert_int_equal(mx_session_create(f->s, "no-such-user", "", "", NOW, tok2, NULL),
                     CX_E_NOTFOUND);
    assert_string_equal(tok2, "");

    /* Revocation by token and by id; an id must belong to the user named. */
    assert_int_equal(mx_session_create(f->s, u.id, NULL, NULL, NOW, tok, &x), CX_OK);
    assert_string_equal(x.ip, "");
    assert_int_equal(mx_session_create(f->s, u.id, "x", "y", NOW + 1, tok2, &y), CX_OK);
    mx_session *arr = NULL;
    size_t n = 0;
    assert_int_equal(mx_session_list(f->s, u.id, &arr, &n), CX_OK);
    assert_int_equal(n, 2);
    assert_string_equal(arr[0].id, y.id); /* newest first */
    free(arr);
    assert_int_equal(mx_session_list(f->s, o.id, &arr, &n), CX_OK);
    assert_int_equal(n, 0);
    assert_null(arr);
    assert_int_equal(mx_session_revoke_id(f->s, o.id, x.id), CX_E_NOTFOUND);
    assert_int_equal(mx_session_revoke_id(f->s, u.id, x.id), CX_OK);
    assert_int_equal(mx_session_check(f->s, tok, NOW, NULL), CX_E_NOTFOUND);
    assert_int_equal(mx_session_revoke_token(f->s, tok2), CX_OK);
    assert_int_equal(mx_session_revoke_token(f->s, tok2), CX_E_NOTFOUND);
    assert_int_equal(mx_session_revoke_token(f->s, "zz"), CX_E_FORMAT);
    assert_int_equal(mx_session_create(f->s, u.id, NULL, NULL, NOW, tok, &x), CX_OK);
    assert_int_equal(mx_session_revoke_id(f->s, NULL, x.id), CX_OK);
}

/* ---- TOTP ---- */

static void test_totp(void **state)
{
    fixture *f = *state;
    mx_user u;
    make_user(f->s, "u", MX_ROLE_USER, &u);
    const int64_t t = NOW / 1000;
    uint8_t secret[20], a[MX_TOTP_SECRET_MAX], p[MX_TOTP_SECRET_MAX];
    size_t an = 9, pn = 9;
    bool en = true;
    char code[7];
    cx_totp_new_secret(secret);

    assert_int_equal(mx_user_totp_check(f->s, u.id, "123456", t, false), CX_E_INVAL);
    assert_int_equal(mx_user_totp_check(f->s, u.id, "123456", t, true), CX_E_INVAL);
    assert_int_equal(mx_user_totp_set_pending(f->s, "nope", secret, 20), CX_E_NOTFOUND);
    assert_int_equal(mx_user_totp_set_pending(f->s, u.id, secret, 21), CX_E_INVAL);
    assert_int_equal(mx_user_totp_set_pending(f->s, u.id, secret, 20), CX_OK);
    assert_int_equal(mx_user_totp_get(f->s, u.id, a, &an, p, &pn, &en), CX_OK);
    assert_int_equal(an, 0);
    assert_int_equal(pn, 20);
    assert_memory_equal(p, secret, 20);
    assert_false(en);
    /* Pending is not enough to log in with. */
    cx_totp_code(secret, 20, t, code);
    assert_int_equal(mx_user_totp_check(f->s, u.id, code, t, false), CX_E_INVAL);
    assert_int_equal(mx_user_totp_check(f->s, u.id, "12 456", t, true), CX_E_FORMAT);
    char wrong[12];
    snprintf(wrong, sizeof wrong, "%06u", (unsigned)(atoi(code) + 1) % 1000000u);
    assert_int_equal(mx_user_totp_check(f->s, u.id, wrong, t, true), CX_E_DENIED);
    assert_int_equal(mx_user_totp_check(f->s, u.id, code, t, true), CX_OK);
    assert_int_equal(mx_user_totp_get(f->s, u.id, a, &an, p, &pn, &en), CX_OK);
    assert_int_equal(an, 20);
    assert_memory_equal(a, secret, 20);
    assert_int_equal(pn, 0);
    assert_true(en);
    mx_user got;
    assert_int_equal(mx_user_by_id(f->s, u.id, &got, NULL), CX_OK);
    assert_true(got.totp_enabled);

    /* The enabling code's step is spent; so is any step at or before an accepted one. */
    assert_int_equal(mx_user_totp_check(f->s, u.id, code, t, false), CX_E_REPLAY);
    cx_totp_code(secret, 20, t + 30, code);
    assert_int_equal(mx_user_totp_check(f->s, u.id, code, t + 30, false), CX_OK);
    /* A second handle (another process) shares the refusal: it is in the database. */
    mx_store *s2 = open_store(f);
    assert_int_equal(mx_user_totp_check(s2, u.id, code, t + 30, false), CX_E_REPLAY);
    cx_totp_code(secret, 20, t + 60, code);
    assert_int_equal(mx_user_totp_check(s2, u.id, code, t + 60, false), CX_OK);
    assert_int_equal(mx_user_totp_check(f->s, u.id, code, t + 60, false), CX_E_REPLAY);
    mx_store_close(s2);

    /* Re-setup while enabled: the old secret stays in force until the new one is enabled. */
    uint8_t secret2[20];
    cx_totp_new_secret(secret2);
    assert_int_equal(mx_user_totp_set_pending(f->s, u.id, secret2, 20), CX_OK);
    cx_totp_code(secret, 20, t + 90, code);
    assert_int_equal(mx_user_totp_check(f->s, u.id, code, t + 90, false), CX_OK);
    cx_totp_code(secret2, 20, t + 120, code);
    assert_int_equal(mx_user_totp_check(f->s, u.id, code, t + 120, true), CX_OK);
    assert_int_equal(mx_user_totp_get(f->s, u.id, a, &an, NULL, NULL, NULL), CX_OK);
    assert_memory_equal(a, secret2, 20);

    assert_int_equal(mx_user_totp_disable(f->s, u.id), CX_OK);
    assert_int_equal(mx_user_totp_get(f->s, u.id, a, &an, p, &pn, &en), CX_OK);
    assert_int_equal(an + pn, 0);
    assert_false(en);
    assert_int_equal(mx_user_totp_check(f->s, u.id, code, t + 150, false), CX_E_INVAL);
    assert_int_equal(mx_user_totp_disable(f->s, "nope"), CX_E_NOTFOUND);
}

/* ---- pairing ---- */

static void test_pairing_single_use(void **state)
{
    fixture *f = *state;
    char code[7], pid[MX_ID_CHARS + 1];
    mx_pairing p, g;
    assert_int_equal(mx_pairing_create(f->s, "admin", 1, 900000, NOW, code, &p), CX_OK);
    assert_true(cx_pairing_well_formed(code));
    assert_int_equal(p.expires_at, NOW + 900000);
    assert_int_equal(p.max_uses, 1);
    assert_int_equal(p.uses, 0);
    assert_string_equal(p.created_by, "admin");

    assert_int_equal(mx_pairing_redeem(f->s, code, "core-a", NOW + 1, pid), CX_OK);
    assert_string_equal(pid, p.id);
    /* The same Core again before acking: fine (a re-issue). */
    assert_int_equal(mx_pairing_redeem(f->s, code, "core-a", NOW + 2, pid), CX_OK);
    /* Another Core while core-a's redemption is in flight: the only use is taken. */
    assert_int_equal(mx_pairing_redeem(f->s, code, "core-b", NOW + 3, pid), CX_E_REPLAY);
    assert_int_equal(mx_pairing_get(f->s, p.id, &g), CX_OK);
    assert_int_equal(g.uses, 0);

    assert_int_equal(mx_pairing_consume(f->s, p.id, "core-a"), CX_OK);
    assert_int_equal(mx_pairing_get(f->s, p.id, &g), CX_OK);
    assert_int_equal(g.uses, 1);
    assert_int_equal(mx_pairing_consume(f->s, p.id, "core-a"), CX_OK); /* repeated ack */
    assert_int_equal(mx_pairing_get(f->s, p.id, &g), CX_OK);
    assert_int_equal(g.uses, 1);
    assert_int_equal(mx_pairing_redeem(f->s, code, "core-a", NOW + 4, pid), CX_E_REPLAY);
    assert_int_equal(mx_pairing_redeem(f->s, code, "core-b", NOW + 4, pid), CX_E_REPLAY);
    assert_int_equal(mx_pairing_consume(f->s, "no-such-id", "core-a"), CX_E_NOTFOUND);
}

static void test_pairing_multi_use(void **state)
{
    fixture *f = *state;
    char code[7], pid[MX_ID_CHARS + 1];
    mx_pairing p, g;
    assert_int_equal(mx_pairing_create(f->s, "admin", 3, 60000, NOW, code, &p), CX_OK);
    assert_int_equal(mx_pairing_redeem(f->s, code, "a", NOW, pid), CX_OK);
    assert_int_equal(mx_pairing_redeem(f->s, code, "b", NOW, pid), CX_OK);
    assert_int_equal(mx_pairing_redeem(f->s, code, "c", NOW, pid), CX_OK);
    assert_int_equal(mx_pairing_redeem(f->s, code, "d", NOW, pid), CX_E_REPLAY);
    assert_int_equal(mx_pairing_redeem(f->s, code, "b", NOW, pid), CX_OK); /* re-issue */
    assert_int_equal(mx_pairing_consume(f->s, p.id, "a"), CX_OK);
    assert_int_equal(mx_pairing_consume(f->s, p.id, "a"), CX_OK);
    assert_int_equal(mx_pairing_get(f->s, p.id, &g), CX_OK);
    assert_int_equal(g.uses, 1);
    assert_int_equal(mx_pairing_redeem(f->s, code, "d", NOW, pid), CX_E_REPLAY);
    assert_int_equal(mx_pairing_consume(f->s, p.id, "b"), CX_OK);
    assert_int_equal(mx_pairing_consume(f->s, p.id, "c"), CX_OK);
    assert_int_equal(mx_pairing_consume(f->s, p.id, "d"), CX_OK); /* never redeemed: no use */
    assert_int_equal(mx_pairing_get(f->s, p.id, &g), CX_OK);
    assert_int_equal(g.uses, 3);
    assert_int_equal(mx_pairing_redeem(f->s, code, "a", NOW, pid), CX_E_REPLAY);

    mx_pairing *arr = NULL;
    size_t n = 0;
    assert_int_equal(mx_pairing_list(f->s, &arr, &n), CX_OK);
    assert_int_equal(n, 1);
    assert_int_equal(arr[0].uses, 3);
    assert_int_equal(arr[0].max_uses, 3);
    free(arr);
}

static void test_pairing_expired_revoked_invalid(void **state)
{
    fixture *f = *state;
    char code[7], code2[7], pid[MX_ID_CHARS + 1];
    mx_pairing p, p2;
    assert_int_equal(mx_pairing_create(f->s, "admin", 1, 1000, NOW, code, &p), CX_OK);
    assert_int_equal(mx_pairing_redeem(f->s, code, "a", NOW + 999, pid), CX_OK);
    /* Expiry holds even for the Core whose redemption is pending. */
    assert_int_equal(mx_pairing_redeem(f->s, code, "a", NOW + 1000, pid), CX_E_EXPIRED);
    assert_int_equal(mx_pairing_redeem(f->s, code, "b", NOW + 5000, pid), CX_E_EXPIRED);

    assert_int_equal(mx_pairing_create(f->s, "root", 2, 60000, NOW, code2, &p2), CX_OK);
    assert_string_not_equal(code, code2);
    assert_int_equal(mx_pairing_revoke(f->s, p2.id), CX_OK);
    assert_int_equal(mx_pairing_revoke(f->s, p2.id), CX_E_NOTFOUND);
    assert_int_equal(mx_pairing_redeem(f->s, code2, "a", NOW, pid), CX_E_NOTFOUND);
    assert_string_equal(pid, "");

    assert_int_equal(mx_pairing_redeem(f->s, "abc", "a", NOW, pid), CX_E_NOTFOUND);
    assert_int_equal(mx_pairing_redeem(f->s, "AAAAA0", "a", NOW, pid), CX_E_NOTFOUND);
    assert_int_equal(mx_pairing_redeem(f->s, "ABCDEF", "a", NOW, pid), CX_E_NOTFOUND);
    assert_int_equal(mx_pairing_redeem(f->s, code, "", NOW, pid), CX_E_INVAL);

    assert_int_equal(mx_pairing_create(f->s, "admin", 0, 1000, NOW, code, NULL), CX_E_INVAL);
    assert_int_equal(mx_pairing_create(f->s, "admin", MX_PAIRING_MAX_USES + 1, 1000, NOW, code,
                                       NULL),
                     CX_E_INVAL);
    assert_int_equal(mx_pairing_create(f->s, "admin", 1, 0, NOW, code, NULL), CX_E_INVAL);
    assert_int_equal(mx_pairing_create(f->s, "admin", 1, MX_PAIRING_MAX_TTL_MS + 1, NOW, code,
                                       NULL),
                     CX_E_INVAL);

    /* Listing leaves revoked codes out; the sweep forgets long-expired ones. */
    mx_pairing *arr = NULL;
    size_t n = 0;
    assert_int_equal(mx_pairing_list(f->s, &arr, &n), CX_OK);
    assert_int_equal(n, 1);
    assert_string_equal(arr[0].id, p.id);
    free(arr);
    assert_int_equal(mx_pairing_sweep(f->s, NOW + 2000), CX_OK);
    assert_int_equal(mx_pairing_get(f->s, p.id, NULL), CX_OK);
    assert_int_equal(mx_pairing_sweep(f->s, NOW + 1000 + 24LL * 3600 * 1000), CX_OK);
    assert_int_equal(mx_pairing_get(f->s, p.id, NULL), CX_E_NOTFOUND);
    assert_int_equal(count_rows(f->s, "SELECT count(*) FROM pairing_pending"), 0);
}

/* ---- Cores ---- */

static void test_core_pairing_tokens(void **state)
{
    fixture *f = *state;
    char t1[65], t2[65], t3[65];
    mx_core c, c2;
    assert_int_equal(mx_core_issue_token(f->s, "core-a", "Build box", NOW, t1, &c), CX_OK);
    assert_true(cx_token_well_formed(t1));
    assert_int_equal(strlen(c.id), 36);
    assert_string_equal(c.core_id, "core-a");
    assert_string_equal(c.display_name, "Build box");
    assert_string_equal(c.token_prefix, "");
    assert_int_equal(c.paired_at, 0);

    /* The same Core redeemed again before acking: a new token voids the first. */
    assert_int_equal(mx_core_issue_token(f->s, "core-a", NULL, NOW, t2, &c2), CX_OK);
    assert_string_equal(c2.id, c.id);
    assert_string_equal(c2.display_name, "Build box");
    assert_int_equal(mx_core_check_token(f->s, "core-a", t1, NULL), CX_E_DENIED);
    /* The pending token works and becomes permanent (ack lost, Core reconnected). */
    assert_int_equal(mx_core_check_token(f->s, "core-a", t2, &c2), CX_OK);
    assert_true(c2.paired_at > 0);
    const int64_t first_paired = c2.paired_at;
    char pfx[9];
    cx_token_prefix(t2, pfx);
    assert_string_equal(c2.token_prefix, pfx);
    assert_int_equal(mx_core_check_token(f->s, "core-a", t2, NULL), CX_OK);
    assert_int_equal(mx_core_ack_token(f->s, "core-a"), CX_OK); /* late ack: harmless */
    assert_int_equal(mx_core_check_token(f->s, "core-a", t2, NULL), CX_OK);

    /* Re-pairing a known Core: the permanent token lives until the new one is acked. */
    assert_int_equal(mx_core_issue_token(f->s, "core-a", "Renamed", NOW, t3, &c2), CX_OK);
    assert_string_equal(c2.display_name, "Renamed");
    assert_int_equal(mx_core_check_token(f->s, "core-a", t2, NULL), CX_OK);
    assert_int_equal(mx_core_ack_token(f->s, "core-a"), CX_OK);
    assert_int_equal(mx_core_check_token(f->s, "core-a", t2, NULL), CX_E_DENIED);
    assert_int_equal(mx_core_check_token(f->s, "core-a", t3, &c2), CX_OK);
    assert_int_equal(c2.paired_at, first_paired); /* the first pairing time stays */

    assert_int_equal(mx_core_check_token(f->s, "core-x", t3, NULL), CX_E_NOTFOUND);
    assert_int_equal(mx_core_check_token(f->s, "core-a", "Ab3dEf", NULL), CX_E_DENIED);
    assert_int_equal(mx_core_check_token(f->s, "core-a", "", NULL), CX_E_DENIED);
    assert_int_equal(mx_core_ack_token(f->s, "core-x"), CX_E_NOTFOUND);

    assert_int_equal(mx_core_issue_token(f->s, "", NULL, NOW, t1, NULL), CX_E_INVAL);
    assert_int_equal(mx_core_issue_token(f->s, "has space", NULL, NOW, t1, NULL), CX_E_INVAL);
    assert_string_equal(t1, "");
    assert_int_equal(mx_core_issue_token(f->s, "core-b", "bad\nname", NOW, t1, &c2), CX_OK);
    assert_string_equal(c2.display_name, "core-b"); /* unshowable name: the id stands in */
    assert_int_equal(mx_core_issue_token(f->s, "core-b", NULL, NOW, t1, &c2), CX_OK);
    assert_string_equal(c2.display_name, "core-b");

    mx_core *arr = NULL;
    size_t n = 0;
    assert_int_equal(mx_core_list(f->s, &arr, &n), CX_OK);
    assert_int_equal(n, 2);
    assert_string_equal(arr[0].display_name, "core-b");
    assert_string_equal(arr[1].display_name, "Renamed");
    free(arr);
    assert_int_equal(mx_core_by_core_id(f->s, "core-a", &c2), CX_OK);
    assert_string_equal(c2.id, c.id);
    assert_int_equal(mx_core_by_id(f->s, c.id, &c2), CX_OK);
    assert_string_equal(c2.core_id, "core-a");
    assert_int_equal(mx_core_by_id(f->s, "nope", NULL), CX_E_NOTFOUND);

    assert_int_equal(mx_core_rename(f->s, c.id, "Über box"), CX_OK);
    assert_int_equal(mx_core_by_id(f->s, c.id, &c2), CX_OK);
    assert_string_equal(c2.display_name, "Über box");
    assert_int_equal(mx_core_rename(f->s, c.id, ""), CX_E_INVAL);
    assert_int_equal(mx_core_rename(f->s, c.id, "bad\xff"), CX_E_INVAL);
    assert_int_equal(mx_core_rename(f->s, "nope", "x"), CX_E_NOTFOUND);
    assert_int_equal(mx_core_seen(f->s, c.id, NOW + 77), CX_OK);
    assert_int_equal(mx_core_by_id(f->s, c.id, &c2), CX_OK);
    assert_int_equal(c2.last_seen_at, NOW + 77);
    assert_int_equal(mx_core_seen(f->s, "nope", NOW), CX_E_NOTFOUND);
}

static void test_core_rotation(void **state)
{
    fixture *f = *state;
    char t1[65], t2[65], t3[65], t4[65];
    mx_core c, c2;
    assert_int_equal(mx_core_issue_token(f->s, "core-a", "A", NOW, t1, &c), CX_OK);
    assert_int_equal(mx_core_ack_token(f->s, "core-a"), CX_OK);
    assert_int_equal(mx_core_check_token(f->s, "core-a", t1, NULL), CX_OK);

    /* Push rotation: both work until the ack, then only the new one. */
    assert_int_equal(mx_core_rotate(f->s, c.id, false, t2), CX_OK);
    assert_int_equal(mx_core_check_token(f->s, "core-a", t1, NULL), CX_OK);
    assert_int_equal(mx_core_ack_token(f->s, "core-a"), CX_OK);
    assert_int_equal(mx_core_check_token(f->s, "core-a", t1, NULL), CX_E_DENIED);
    assert_int_equal(mx_core_check_token(f->s, "core-a", t2, &c2), CX_OK);
    char pfx[9];
    cx_token_prefix(t2, pfx);
    assert_string_equal(c2.token_prefix, pfx);

    /* A pending rotation the Core stored but never acked: using it promotes it. */
    assert_int_equal(mx_core_rotate(f->s, c.id, false, t3), CX_OK);
    assert_int_equal(mx_core_check_token(f->s, "core-a", t3, NULL), CX_OK);
    assert_int_equal(mx_core_check_token(f->s, "core-a", t2, NULL), CX_E_DENIED);

    /* Offline rotation: the old token dies at once. */
    assert_int_equal(mx_core_rotate(f->s, c.id, true, t4), CX_OK);
    assert_int_equal(mx_core_check_token(f->s, "core-a", t3, NULL), CX_E_DENIED);
    assert_int_equal(mx_core_check_token(f->s, "core-a", t4, NULL), CX_OK);
    assert_int_equal(mx_core_rotate(f->s, "nope", true, t4), CX_E_NOTFOUND);
    assert_string_equal(t4, "");
}

static void test_grants_cascade(void **state)
{
    fixture *f = *state;
    mx_user u;
    make_user(f->s, "u", MX_ROLE_USER, &u);
    char tok[65];
    mx_core a, b;
    assert_int_equal(mx_core_issue_token(f->s, "core-a", "A", NOW, tok, &a), CX_OK);
    assert_int_equal(mx_core_issue_token(f->s, "core-b", "B", NOW, tok, &b), CX_OK);
    assert_false(mx_granted(f->s, u.id, a.id));
    assert_int_equal(mx_grant(f->s, u.id, a.id), CX_OK);
    assert_int_equal(mx_grant(f->s, u.id, a.id), CX_OK); /* idempotent */
    assert_int_equal(mx_grant(f->s, u.id, b.id), CX_OK);
    assert_true(mx_granted(f->s, u.id, a.id));
    assert_int_equal(mx_grant(f->s, u.id, "nope"), CX_E_NOTFOUND);
    assert_int_equal(mx_grant(f->s, "nope", a.id), CX_E_NOTFOUND);
    mx_user v;
    make_user(f->s, "v", MX_ROLE_USER, &v);
    assert_int_equal(mx_grant(f->s, v.id, b.id), CX_OK);
    mx_grant_row *g = NULL;
    size_t ng = 0;
    assert_int_equal(mx_grant_list(f->s, &g, &ng), CX_OK);
    assert_int_equal(ng, 3);
    for (size_t i = 1; i < ng; i++) /* sorted by user, then Core */
        assert_true(strcmp(g[i - 1].user_id, g[i].user_id) < 0 ||
                    (strcmp(g[i - 1].user_id, g[i].user_id) == 0 &&
                     strcmp(g[i - 1].core_id, g[i].core_id) < 0));
    size_t of_u = 0;
    for (size_t i = 0; i < ng; i++) {
        if (strcmp(g[i].user_id, u.id) == 0) {
            of_u++;
            assert_true(strcmp(g[i].core_id, a.id) == 0 || strcmp(g[i].core_id, b.id) == 0);
        } else {
            assert_string_equal(g[i].user_id, v.id);
            assert_string_equal(g[i].core_id, b.id);
        }
    }
    assert_int_equal(of_u, 2);
    free(g);
    assert_int_equal(mx_user_delete(f->s, v.id), CX_OK);

    assert_int_equal(mx_revoke_grant(f->s, u.id, b.id), CX_OK);
    assert_int_equal(mx_revoke_grant(f->s, u.id, b.id), CX_E_NOTFOUND);
    assert_false(mx_granted(f->s, u.id, b.id));

    assert_int_equal(mx_core_remove(f->s, a.id), CX_OK);
    assert_int_equal(mx_core_remove(f->s, a.id), CX_E_NOTFOUND);
    assert_false(mx_granted(f->s, u.id, a.id));
    assert_int_equal(count_rows(f->s, "SELECT count(*) FROM user_cores"), 0);
    assert_int_equal(mx_core_check_token(f->s, "core-a", tok, NULL), CX_E_NOTFOUND);
}

/* ---- audit ---- */

static void test_audit(void **state)
{
    fixture *f = *state;
    assert_int_equal(mx_audit(f->s, NOW, "cli", "user.create", "alice", NULL, "ok"), CX_OK);
    assert_int_equal(mx_audit(f->s, NOW + 1500, "bob", "login", NULL, "10.0.0.1", "denied"),
                     CX_OK);
    assert_int_equal(mx_audit(f->s, NOW, NULL, NULL, NULL, NULL, "ok"), CX_E_INVAL);
    json_t *arr = mx_audit_list(f->s, 10);
    assert_non_null(arr);
    assert_int_equal(json_array_size(arr), 2);
    json_t *o = json_array_get(arr, 0);
    assert_string_equal(json_string_value(json_object_get(o, "action")), "login");
    assert_string_equal(json_string_value(json_object_get(o, "actor")), "bob");
    assert_true(json_is_null(json_object_get(o, "target")));
    assert_string_equal(json_string_value(json_object_get(o, "address")), "10.0.0.1");
    assert_string_equal(json_string_value(json_object_get(o, "result")), "denied");
    assert_string_equal(json_string_value(json_object_get(o, "time")), "2023-11-14T22:13:21.500Z");
    o = json_array_get(arr, 1);
    assert_string_equal(json_string_value(json_object_get(o, "target")), "alice");
    assert_string_equal(json_string_value(json_object_get(o, "time")), "2023-11-14T22:13:20.000Z");
    json_decref(arr);
    arr = mx_audit_list(f->s, 1);
    assert_int_equal(json_array_size(arr), 1);
    json_decref(arr);
}

static void test_audit_trim(void **state)
{
    fixture *f = *state;
    /* Fill up to just before a trim point (a multiple of 1024 above the cap). */
    const long long last = 1024LL * 100 - 1; /* 102399 */
    char sql[256];
    snprintf(sql, sizeof sql,
             "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %lld)"
             " INSERT INTO audit (id, time, actor, action, result) SELECT i, i, 'x', 'fill', 'ok'"
             " FROM n",
             last);
    assert_int_equal(sqlite3_exec(mx_store_db(f->s), sql, NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(count_rows(f->s, "SELECT count(*) FROM audit"), last);
    assert_int_equal(mx_audit(f->s, NOW, "cli", "last", NULL, NULL, "ok"), CX_OK);
    assert_int_equal(count_rows(f->s, "SELECT count(*) FROM audit"), MX_AUDIT_MAX_ROWS);
    assert_int_equal(count_rows(f->s, "SELECT min(id) FROM audit"),
                     last + 1 - MX_AUDIT_MAX_ROWS + 1);
    json_t *arr = mx_audit_list(f->s, 0); /* default page */
    assert_int_equal(json_array_size(arr), 100);
    assert_string_equal(json_string_value(json_object_get(json_array_get(arr, 0), "action")),
                        "last");
    json_decref(arr);
}

/* ---- no plaintext secrets on disk ---- */

static bool file_contains(const char *path, const char *needle)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL)
        return false;
    size_t cap = 1 << 16, len = 0, r;
    char *buf = malloc(cap);
    assert_non_null(buf);
    while ((r = fread(buf + len, 1, cap - len, fp)) > 0) {
        len += r;
        if (len == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    fclose(fp);
    bool found = memmem(buf, len, needle, strlen(needle)) != NULL;
    free(buf);
    return found;
}

static void test_no_plaintext_on_disk(void **state)
{
    fixture *f = *state;
    mx_user u;
    make_user(f->s, "u", MX_ROLE_ADMIN, &u);
    char secrets[8][65];
    int k = 0;
    char code[7], code2[7], pid[MX_ID_CHARS + 1];
    mx_core c;
    assert_int_equal(mx_session_create(f->s, u.id, "", "", NOW, secrets[k++], NULL), CX_OK);
    assert_int_equal(mx_pairing_create(f->s, "admin", 2, 60000, NOW, code, NULL), CX_OK);
    assert_int_equal(mx_pairing_create(f->s, "admin", 1, 60000, NOW, code2, NULL), CX_OK);
    assert_int_equal(mx_pairing_redeem(f->s, code, "core-a", NOW, pid), CX_OK);
    assert_int_equal(mx_core_issue_token(f->s, "core-a", "A", NOW, secrets[k++], &c), CX_OK);
    assert_int_equal(mx_core_issue_token(f->s, "core-b", "B", NOW, secrets[k++], NULL), CX_OK);
    assert_int_equal(mx_core_ack_token(f->s, "core-b"), CX_OK);
    assert_int_equal(mx_core_rotate(f->s, c.id, false, secrets[k++]), CX_OK);
    char wal[160], db[160];
    path_in(f, "maestro.db", db, sizeof db);
    path_in(f, "maestro.db-wal", wal, sizeof wal);
    /* While open (WAL holds the writes) and after close (checkpointed into the db). */
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < k; i++) {
            assert_false(file_contains(db, secrets[i]));
            assert_false(file_contains(wal, secrets[i]));
        }
        assert_false(file_contains(db, code));
        assert_false(file_contains(wal, code));
        assert_false(file_contains(db, code2));
        assert_false(file_contains(wal, code2));
        if (round == 0) {
            mx_store_close(f->s);
            f->s = open_store(f);
            mx_store_close(f->s);
            f->s = NULL;
            assert_true(file_contains(db, "core-a")); /* the check can see content */
        }
    }
    f->s = open_store(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_key_and_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_settings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_users, setup, teardown),
        cmocka_unit_test_setup_teardown(test_last_admin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_delete_cascades, setup, teardown),
        cmocka_unit_test_setup_teardown(test_password_change_revokes_sessions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sessions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_check_hash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_totp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pairing_single_use, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pairing_multi_use, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pairing_expired_revoked_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_core_pairing_tokens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_core_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grants_cascade, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_trim, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_plaintext_on_disk, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
