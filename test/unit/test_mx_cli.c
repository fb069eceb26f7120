/* Unit tests for `condrix-maestro user|pair|cores|audit`: runs the verbs with argv arrays
 * against a real Maestro home in a temporary directory, with stdin, stdout and stderr
 * redirected to files, and checks exit codes, output and what the database holds after. */
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
#include <time.h>
#include <unistd.h>

#include "cli_admin.h"
#include "condrix/error.h"
#include "condrix/pairing.h"
#include "condrix/password.h"
#include "condrix/token.h"
#include "condrix/totp.h"
#include "store.h"

typedef struct fixture {
    char dir[64];
    char db[128];
    char in_path[128];
    char out_path[128];
    char err_path[128];
    const char *stdin_text; /* fed to the next run, NULL: empty */
    char *out;              /* stdout of the last run */
    char *err;              /* stderr of the last run */
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/cx_test_mx_cli_XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->db, sizeof f->db, "%s/maestro.db", f->dir);
    snprintf(f->in_path, sizeof f->in_path, "%s/in", f->dir);
    snprintf(f->out_path, sizeof f->out_path, "%s/out", f->dir);
    snprintf(f->err_path, sizeof f->err_path, "%s/err", f->dir);
    unsetenv("CONDRIX_MAESTRO_PUBLIC_URL");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    const char *names[] = {"maestro.db", "maestro.db-wal", "maestro.db-shm", "maestro.key",
                           "in",         "out",            "err"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char p[160];
        snprintf(p, sizeof p, "%s/%s", f->dir, names[i]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f->out);
    free(f->err);
    free(f);
    return 0;
}

static char *slurp(const char *path, size_t *len_out)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) {
        if (len_out)
            *len_out = 0;
        return strdup("");
    }
    size_t cap = 4096, len = 0, r;
    char *buf = malloc(cap + 1);
    assert_non_null(buf);
    while ((r = fread(buf + len, 1, cap - len, fp)) > 0) {
        len += r;
        if (len == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
            assert_non_null(buf);
        }
    }
    fclose(fp);
    buf[len] = '\0';
    if (len_out)
        *len_out = len;
    return buf;
}

/* Run `ARGS...` (NULL-terminated; the first is the verb group) with redirected stdio. */
static int run(fixture *f, ...)
{
    char *argv[16];
    int argc = 0;
    va_list ap;
    va_start(ap, f);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && argc < 15)
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;

    FILE *in = fopen(f->in_path, "wb");
    assert_non_null(in);
    if (f->stdin_text)
        fputs(f->stdin_text, in);
    fclose(in);
    fflush(stdout);
    fflush(stderr);
    int saved_in = dup(0), saved_out = dup(1), saved_err = dup(2);
    int fi = open(f->in_path, O_RDONLY);
    int fo = open(f->out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int fe = open(f->err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(saved_in >= 0 && saved_out >= 0 && saved_err >= 0 && fi >= 0 && fo >= 0 &&
                fe >= 0);
    dup2(fi, 0);
    dup2(fo, 1);
    dup2(fe, 2);
    int ex = mx_admin_cli(argc, argv, f->dir);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_in, 0);
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    close(saved_in);
    close(saved_out);
    close(saved_err);
    close(fi);
    close(fo);
    close(fe);
    free(f->out);
    free(f->err);
    f->out = slurp(f->out_path, NULL);
    f->err = slurp(f->err_path, NULL);
    f->stdin_text = NULL;
    return ex;
}

static json_t *out_json(const fixture *f)
{
    json_error_t e;
    json_t *o = json_loads(f->out, 0, &e);
    if (o == NULL)
        fail_msg("stdout is not JSON (%s): %s", e.text, f->out);
    return o;
}

static mx_store *store(const fixture *f)
{
    mx_store *s = NULL;
    assert_int_equal(mx_store_open(f->dir, &s, NULL), CX_OK);
    return s;
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

/* The password a user has now verifies. */
static void assert_password(const fixture *f, const char *name, const char *pw)
{
    mx_store *s = store(f);
    char hash[CX_PASSWORD_HASH_MAX];
    assert_int_equal(mx_user_by_name(s, name, NULL, hash), CX_OK);
    assert_int_equal(cx_password_verify(hash, pw), CX_OK);
    mx_store_close(s);
}

static void test_usage(void **state)
{
    fixture *f = *state;
    assert_int_equal(run(f, NULL), 2);
    assert_non_null(strstr(f->err, "Usage"));
    assert_int_equal(run(f, "frob", NULL), 2);
    assert_non_null(strstr(f->err, "unknown command"));
    assert_int_equal(run(f, "user", NULL), 2);
    assert_int_equal(run(f, "user", "frob", NULL), 2);
    assert_int_equal(run(f, "user", "add", NULL), 2);
    assert_int_equal(run(f, "user", "add", "a", "b", NULL), 2);
    assert_int_equal(run(f, "user", "add", "bad/name", NULL), 2);
    assert_non_null(strstr(f->err, "invalid username"));
    assert_int_equal(run(f, "user", "add", "x", "--password", "hunter22", NULL), 2);
    assert_non_null(strstr(f->err, "--password-stdin"));
    assert_int_equal(run(f, "user", "add", "x", "--password=hunter22", NULL), 2);
    assert_int_equal(run(f, "user", "add", "x", "--role", "root", NULL), 2);
    assert_int_equal(run(f, "user", "add", "x", "--role", NULL), 2);
    assert_int_equal(run(f, "user", "list", "--role", "admin", NULL), 2);
    assert_int_equal(run(f, "user", "role", "x", "boss", NULL), 2);
    assert_int_equal(run(f, "pair", "--uses", "0", NULL), 2);
    assert_int_equal(run(f, "pair", "--uses", "many", NULL), 2);
    assert_int_equal(run(f, "pair", "--ttl", "soon", NULL), 2);
    assert_int_equal(run(f, "pair", "--ttl", "31d", NULL), 2);
    assert_int_equal(run(f, "pair", "extra", NULL), 2);
    assert_int_equal(run(f, "audit", "--limit", "0", NULL), 2);
    assert_int_equal(run(f, "cores", "rename", "x", NULL), 2);
    assert_int_equal(run(f, "cores", "list", "--bogus", NULL), 2);
    /* Nothing was opened, so nothing was created. */
    assert_int_equal(access(f->db, F_OK), -1);

    assert_int_equal(run(f, "--help", NULL), 0);
    assert_non_null(strstr(f->out, "user totp-reset"));
    assert_non_null(strstr(f->out, "cores rotate"));
    assert_int_equal(run(f, "help", NULL), 0);
    assert_non_null(strstr(f->out, "audit"));
    assert_int_equal(run(f, "user", "--help", NULL), 0);
    assert_non_null(strstr(f->out, "user passwd"));
    assert_null(strstr(f->out, "cores list"));
    assert_int_equal(run(f, "pair", "-h", NULL), 0);
    assert_non_null(strstr(f->out, "--ttl"));
    assert_true(mx_admin_is_group("cores"));
    assert_false(mx_admin_is_group("serve"));
    assert_int_equal(access(f->db, F_OK), -1);
}

static void test_user_add_generated(void **state)
{
    fixture *f = *state;
    assert_int_equal(run(f, "user", "add", "Alice", "--role", "admin", "--json", NULL), 0);
    json_t *o = out_json(f);
    const char *pw = json_string_value(json_object_get(o, "password"));
    assert_non_null(pw);
    assert_true(strlen(pw) >= 16);
    json_t *u = json_object_get(o, "user");
    assert_string_equal(json_string_value(json_object_get(u, "username")), "Alice");
    assert_string_equal(json_string_value(json_object_get(u, "role")), "admin");
    assert_int_equal(strlen(json_string_value(json_object_get(u, "id"))), 36);
    assert_password(f, "alice", pw);

    /* The database never holds the password itself. */
    size_t len = 0;
    char *bytes = slurp(f->db, &len);
    assert_null(memmem(bytes, len, pw, strlen(pw)));
    free(bytes);
    json_decref(o);

    mx_store *s = store(f);
    assert_int_equal(count_rows(s, "SELECT count(*) FROM audit WHERE actor = 'cli' AND"
                                   " action = 'user.create' AND target = 'Alice'"
                                   " AND result = 'ok'"),
                     1);
    mx_store_close(s);

    /* Taken, whatever the case. */
    assert_int_equal(run(f, "user", "add", "ALICE", "--json", NULL), 1);
    o = out_json(f);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(o, "error"), "code")), "NAME_TAKEN");
    json_decref(o);

    /* Text mode shows the generated password once. */
    assert_int_equal(run(f, "user", "add", "bob", NULL), 0);
    assert_non_null(strstr(f->out, "Created user \"bob\" (role user)"));
    assert_non_null(strstr(f->out, "shown only now"));
    s = store(f);
    mx_user b;
    assert_int_equal(mx_user_by_name(s, "bob", &b, NULL), CX_OK);
    assert_int_equal(b.role, MX_ROLE_USER);
    mx_store_close(s);
}

static void test_user_add_stdin(void **state)
{
    fixture *f = *state;
    f->stdin_text = "correct horse battery\r\n";
    assert_int_equal(run(f, "user", "add", "carol", "--password-stdin", "--json", NULL), 0);
    json_t *o = out_json(f);
    assert_null(json_object_get(o, "password")); /* given, so not echoed */
    json_decref(o);
    assert_password(f, "carol", "correct horse battery");

    f->stdin_text = "short\n";
    assert_int_equal(run(f, "user", "add", "dave", "--password-stdin", NULL), 1);
    assert_non_null(strstr(f->err, "characters"));
    assert_int_equal(run(f, "user", "add", "dave", "--password-stdin", NULL), 1); /* empty */
    mx_store *s = store(f);
    assert_int_equal(mx_user_by_name(s, "dave", NULL, NULL), CX_E_NOTFOUND);
    mx_store_close(s);
}

static void test_user_list(void **state)
{
    fixture *f = *state;
    /* A home without maestro.db (a mistyped --data-dir): refused, nothing created. */
    assert_int_equal(run(f, "user", "list", NULL), 1);
    assert_non_null(strstr(f->err, "no Maestro database in"));
    struct stat st;
    assert_int_not_equal(stat(f->db, &st), 0);
    /* Once Maestro has started there (it made the database), the verbs work. */
    mx_store_close(store(f));
    assert_int_equal(run(f, "user", "list", NULL), 0);
    assert_non_null(strstr(f->out, "No users yet"));
    assert_int_equal(run(f, "user", "add", "zed", "--role", "admin", NULL), 0);
    assert_int_equal(run(f, "user", "add", "amy", NULL), 0);
    assert_int_equal(run(f, "user", "list", "--json", NULL), 0);
    json_t *o = out_json(f);
    json_t *users = json_object_get(o, "users");
    assert_int_equal(json_array_size(users), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(users, 0), "username")),
                        "amy");
    assert_string_equal(json_string_value(json_object_get(json_array_get(users, 1), "role")),
                        "admin");
    assert_null(strstr(f->out, "argon2"));
    json_decref(o);
    assert_int_equal(run(f, "user", "list", NULL), 0);
    assert_non_null(strstr(f->out, "USERNAME"));
    assert_non_null(strstr(f->out, "zed"));
    assert_null(strstr(f->out, "argon2"));
}

static void test_user_passwd(void **state)
{
    fixture *f = *state;
    assert_int_equal(run(f, "user", "add", "eve", NULL), 0);
    mx_store *s = store(f);
    mx_user u;
    char t1[65], t2[65];
    assert_int_equal(mx_user_by_name(s, "eve", &u, NULL), CX_OK);
    assert_int_equal(mx_session_create(s, u.id, "", "", 1000, t1, NULL), CX_OK);
    assert_int_equal(mx_session_create(s, u.id, "", "", 1000, t2, NULL), CX_OK);
    mx_store_close(s);

    assert_int_equal(run(f, "user", "passwd", "EVE", "--json", NULL), 0);
    json_t *o = out_json(f);
    const char *pw = json_string_value(json_object_get(o, "password"));
    assert_non_null(pw);
    assert_password(f, "eve", pw);
    json_decref(o);
    s = store(f);
    assert_int_equal(mx_session_check(s, t1, 2000, NULL), CX_E_NOTFOUND);
    assert_int_equal(mx_session_check(s, t2, 2000, NULL), CX_E_NOTFOUND);
    assert_int_equal(count_rows(s, "SELECT count(*) FROM audit WHERE action = 'user.password'"),
                     1);
    mx_store_close(s);

    f->stdin_text = "another good one";
    assert_int_equal(run(f, "user", "passwd", "eve", "--password-stdin", NULL), 0);
    assert_non_null(strstr(f->out, "signed out"));
    assert_null(strstr(f->out, "another good one"));
    assert_password(f, "eve", "another good one");

    assert_int_equal(run(f, "user", "passwd", "nobody", NULL), 1);
    assert_non_null(strstr(f->err, "no user"));
}

static void test_user_role_remove_last_admin(void **state)
{
    fixture *f = *state;
    assert_int_equal(run(f, "user", "add", "root", "--role", "admin", NULL), 0);
    assert_int_equal(run(f, "user", "add", "joe", NULL), 0);
    assert_int_equal(run(f, "user", "role", "root", "user", "--json", NULL), 1);
    json_t *o = out_json(f);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(o, "error"), "code")), "FORBIDDEN");
    json_decref(o);
    assert_non_null(strstr(f->err, "last admin"));
    assert_int_equal(run(f, "user", "remove", "root", NULL), 1);

    assert_int_equal(run(f, "user", "role", "joe", "admin", "--json", NULL), 0);
    o = out_json(f);
    assert_string_equal(json_string_value(json_object_get(o, "role")), "admin");
    json_decref(o);
    assert_int_equal(run(f, "user", "role", "root", "user", NULL), 0);
    assert_int_equal(run(f, "user", "remove", "root", "--json", NULL), 0);
    o = out_json(f);
    assert_true(json_is_true(json_object_get(o, "removed")));
    json_decref(o);
    assert_int_equal(run(f, "user", "remove", "root", NULL), 1);
    assert_int_equal(run(f, "user", "remove", "joe", NULL), 1);

    mx_store *s = store(f);
    assert_int_equal(mx_user_count(s), 1);
    assert_int_equal(mx_user_admin_count(s), 1);
    /* Refused attempts are audited too. */
    assert_int_equal(count_rows(s, "SELECT count(*) FROM audit WHERE result = 'denied'"), 3);
    mx_store_close(s);
}

static void test_user_totp_reset(void **state)
{
    fixture *f = *state;
    assert_int_equal(run(f, "user", "add", "tim", NULL), 0);
    mx_store *s = store(f);
    mx_user u;
    uint8_t secret[20];
    char code[7];
    cx_totp_new_secret(secret);
    assert_int_equal(mx_user_by_name(s, "tim", &u, NULL), CX_OK);
    assert_int_equal(mx_user_totp_set_pending(s, u.id, secret, sizeof secret), CX_OK);
    cx_totp_code(secret, sizeof secret, time(NULL), code);
    assert_int_equal(mx_user_totp_check(s, u.id, code, time(NULL), true), CX_OK);
    mx_store_close(s);

    assert_int_equal(run(f, "user", "totp-reset", "tim", "--json", NULL), 0);
    json_t *o = out_json(f);
    assert_true(json_is_false(json_object_get(o, "totpEnabled")));
    json_decref(o);
    s = store(f);
    bool en = true;
    size_t an = 1, pn = 1;
    uint8_t a[MX_TOTP_SECRET_MAX], p[MX_TOTP_SECRET_MAX];
    assert_int_equal(mx_user_totp_get(s, u.id, a, &an, p, &pn, &en), CX_OK);
    assert_false(en);
    assert_int_equal(an + pn, 0);
    mx_store_close(s);
    assert_int_equal(run(f, "user", "totp-reset", "nobody", NULL), 1);
}

static void test_pair(void **state)
{
    fixture *f = *state;
    mx_store_close(store(f)); /* a Maestro has started here */
    int64_t before = (int64_t)time(NULL) * 1000;
    assert_int_equal(run(f, "pair", "--uses", "2", "--ttl", "1h", "--json", NULL), 0);
    json_t *o = out_json(f);
    char code[7];
    snprintf(code, sizeof code, "%s", json_string_value(json_object_get(o, "code")));
    assert_true(cx_pairing_well_formed(code));
    assert_int_equal(json_integer_value(json_object_get(o, "maxUses")), 2);
    char expect[128];
    snprintf(expect, sizeof expect,
             "CONDRIX_MAESTRO_URL=ws://127.0.0.1:9200 CONDRIX_MAESTRO_TOKEN=%s condrix-core", code);
    assert_string_equal(json_string_value(json_object_get(o, "command")), expect);
    /* Without CONDRIX_MAESTRO_PUBLIC_URL the command names this Maestro as configured. */
    {
        setenv("CONDRIX_MAESTRO_PORT", "9443", 1);
        setenv("CONDRIX_MAESTRO_TLS_CERT", "/etc/condrix/maestro-cert.pem", 1);
        assert_int_equal(run(f, "pair", "--json", NULL), 0);
        json_t *o2 = out_json(f);
        const char *cmd = json_string_value(json_object_get(o2, "command"));
        assert_non_null(cmd);
        assert_non_null(strstr(cmd, "CONDRIX_MAESTRO_URL=wss://127.0.0.1:9443 "));
        json_decref(o2);
        unsetenv("CONDRIX_MAESTRO_PORT");
        unsetenv("CONDRIX_MAESTRO_TLS_CERT");
    }
    char pid[MX_ID_CHARS + 1], id[MX_ID_CHARS + 1];
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(o, "id")));
    json_decref(o);

    mx_store *s = store(f);
    mx_pairing p;
    assert_int_equal(mx_pairing_get(s, id, &p), CX_OK);
    assert_string_equal(p.created_by, "cli");
    assert_true(p.expires_at >= before + 3600000 && p.expires_at <= before + 3600000 + 5000);
    assert_int_equal(mx_pairing_redeem(s, code, "core-1", before + 1000, pid), CX_OK);
    assert_string_equal(pid, id);
    assert_int_equal(count_rows(s, "SELECT count(*) FROM audit WHERE action = 'pairing.create'"),
                     2); /* the two codes above */
    mx_store_close(s);

    /* Text mode, default: one use, a public URL from the environment, quoted if need be. */
    setenv("CONDRIX_MAESTRO_PUBLIC_URL", "wss://maestro.example.com/ws", 1);
    assert_int_equal(run(f, "pair", NULL), 0);
    assert_non_null(strstr(f->out, "CONDRIX_MAESTRO_URL=wss://maestro.example.com/ws "
                                   "CONDRIX_MAESTRO_TOKEN="));
    assert_non_null(strstr(f->out, "uses:    1"));
    assert_non_null(strstr(f->out, "15 minutes"));
    setenv("CONDRIX_MAESTRO_PUBLIC_URL", "wss://x/a b", 1);
    assert_int_equal(run(f, "pair", NULL), 0);
    assert_non_null(strstr(f->out, "CONDRIX_MAESTRO_URL='wss://x/a b' "));
    unsetenv("CONDRIX_MAESTRO_PUBLIC_URL");
}

static void test_cores(void **state)
{
    fixture *f = *state;
    mx_store_close(store(f)); /* a Maestro has started here */
    assert_int_equal(run(f, "cores", "list", NULL), 0);
    assert_non_null(strstr(f->out, "No Cores yet"));
    mx_store *s = store(f);
    char t1[65], tok_b[65];
    mx_core a, b;
    assert_int_equal(mx_core_issue_token(s, "core-aaa", "Alpha", 1000, t1, &a), CX_OK);
    assert_int_equal(mx_core_ack_token(s, "core-aaa"), CX_OK);
    assert_int_equal(mx_core_issue_token(s, "core-bbb", "Beta", 1000, tok_b, &b), CX_OK);
    mx_user u;
    assert_int_equal(mx_user_create(s, "u", "$argon2id$x", MX_ROLE_USER, 1000, &u), CX_OK);
    assert_int_equal(mx_grant(s, u.id, b.id), CX_OK);
    mx_store_close(s);

    assert_int_equal(run(f, "cores", "list", "--json", NULL), 0);
    json_t *o = out_json(f);
    json_t *cores = json_object_get(o, "cores");
    assert_int_equal(json_array_size(cores), 2);
    json_t *c0 = json_array_get(cores, 0);
    assert_string_equal(json_string_value(json_object_get(c0, "displayName")), "Alpha");
    assert_string_equal(json_string_value(json_object_get(c0, "coreId")), "core-aaa");
    assert_memory_equal(json_string_value(json_object_get(c0, "tokenPrefix")), t1, 8);
    assert_true(json_is_string(json_object_get(c0, "pairedAt")));
    assert_true(json_is_null(json_object_get(json_array_get(cores, 1), "pairedAt")));
    json_decref(o);
    assert_int_equal(run(f, "cores", "list", NULL), 0);
    assert_non_null(strstr(f->out, "core-bbb"));
    assert_non_null(strstr(f->out, "pending"));

    /* Rename by the Core's own id, rotate by Maestro's id. */
    assert_int_equal(run(f, "cores", "rename", "core-aaa", "Alpha Prime", "--json", NULL), 0);
    o = out_json(f);
    assert_string_equal(json_string_value(json_object_get(o, "id")), a.id);
    json_decref(o);
    assert_int_equal(run(f, "cores", "rename", "core-aaa", "bad\x01name", NULL), 1);
    assert_int_equal(run(f, "cores", "rename", "nope", "x", NULL), 1);
    assert_int_equal(run(f, "cores", "rotate", a.id, "--json", NULL), 0);
    o = out_json(f);
    char t2[65];
    snprintf(t2, sizeof t2, "%s", json_string_value(json_object_get(o, "token")));
    assert_true(cx_token_well_formed(t2));
    assert_true(json_is_false(json_object_get(o, "pushed")));
    json_decref(o);
    s = store(f);
    mx_core got;
    assert_int_equal(mx_core_by_id(s, a.id, &got), CX_OK);
    assert_string_equal(got.display_name, "Alpha Prime");
    assert_int_equal(mx_core_check_token(s, "core-aaa", t1, NULL), CX_E_DENIED);
    assert_int_equal(mx_core_check_token(s, "core-aaa", t2, NULL), CX_OK);
    mx_store_close(s);
    assert_int_equal(run(f, "cores", "rotate", "core-aaa", NULL), 0);
    assert_non_null(strstr(f->out, "old one no longer works"));

    assert_int_equal(run(f, "cores", "remove", "core-bbb", "--json", NULL), 0);
    assert_int_equal(run(f, "cores", "remove", "core-bbb", NULL), 1);
    s = store(f);
    assert_int_equal(mx_core_by_core_id(s, "core-bbb", NULL), CX_E_NOTFOUND);
    assert_false(mx_granted(s, u.id, b.id));
    assert_int_equal(count_rows(s, "SELECT count(*) FROM audit WHERE action LIKE 'core.%'"
                                   " AND actor = 'cli'"),
                     7); /* failed attempts included */
    mx_store_close(s);
}

static void test_audit(void **state)
{
    fixture *f = *state;
    mx_store_close(store(f)); /* a Maestro has started here */
    assert_int_equal(run(f, "audit", NULL), 0);
    assert_non_null(strstr(f->out, "empty"));
    assert_int_equal(run(f, "user", "add", "root", "--role", "admin", NULL), 0);
    assert_int_equal(run(f, "user", "remove", "root", NULL), 1);
    assert_int_equal(run(f, "pair", NULL), 0);
    assert_int_equal(run(f, "audit", "--limit", "2", "--json", NULL), 0);
    json_t *o = out_json(f);
    json_t *rows = json_object_get(o, "audit");
    assert_int_equal(json_array_size(rows), 2);
    json_t *r0 = json_array_get(rows, 0);
    assert_string_equal(json_string_value(json_object_get(r0, "action")), "pairing.create");
    assert_string_equal(json_string_value(json_object_get(r0, "actor")), "cli");
    assert_string_equal(json_string_value(json_object_get(json_array_get(rows, 1), "result")),
                        "denied");
    json_decref(o);
    assert_int_equal(run(f, "audit", NULL), 0);
    assert_non_null(strstr(f->out, "user.create"));
    assert_non_null(strstr(f->out, "ACTION"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_usage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_add_generated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_add_stdin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_passwd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_role_remove_last_admin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_totp_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pair, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cores, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
