/* Unit tests for `condrix-core auth ...`: runs the verbs with argv arrays against a real
 * core.db in a temporary directory, capturing stdout and stderr, and checks exit codes,
 * output and what the database holds afterwards. */
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

#include "cli_auth.h"
#include "condrix/error.h"
#include "condrix/token.h"
#include "condrix/totp.h"
#include "tokens.h"

typedef struct fixture {
    char dir[64];
    char path[128];
    char out_path[128];
    char err_path[128];
    char *out; /* stdout of the last run */
    char *err; /* stderr of the last run */
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/cx_test_cli_auth_XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->path, sizeof f->path, "%s/core.db", f->dir);
    snprintf(f->out_path, sizeof f->out_path, "%s/out", f->dir);
    snprintf(f->err_path, sizeof f->err_path, "%s/err", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    const char *names[] = {"core.db", "core.db-wal", "core.db-shm", "out", "err"};
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

static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
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
    return buf;
}

/* Run `auth ARGS...` (NULL-terminated) with stdout and stderr sent to files. */
static int run(fixture *f, ...)
{
    char *argv[16];
    int argc = 0;
    argv[argc++] = (char *)"auth";
    va_list ap;
    va_start(ap, f);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && argc < 15)
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;

    fflush(stdout);
    fflush(stderr);
    int saved_out = dup(1), saved_err = dup(2);
    int fo = open(f->out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int fe = open(f->err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(saved_out >= 0 && saved_err >= 0 && fo >= 0 && fe >= 0);
    dup2(fo, 1);
    dup2(fe, 2);
    int ex = cx_core_auth_cli(argc, argv, f->path);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    close(saved_out);
    close(saved_err);
    close(fo);
    close(fe);
    free(f->out);
    free(f->err);
    f->out = slurp(f->out_path);
    f->err = slurp(f->err_path);
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

static cx_tokens *store(const fixture *f)
{
    cx_tokens *t = NULL;
    assert_int_equal(cx_tokens_open(f->path, &t, NULL), CX_OK);
    return t;
}

static long long count_rows(cx_tokens *t, const char *sql)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(cx_tokens_db(t), sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    long long v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void test_usage_errors(void **state)
{
    fixture *f = *state;
    assert_int_equal(run(f, NULL), 2);
    assert_non_null(strstr(f->err, "Usage"));
    assert_int_equal(run(f, "frobnicate", NULL), 2);
    assert_non_null(strstr(f->err, "unknown command"));
    assert_int_equal(run(f, "create", NULL), 2);
    assert_int_equal(run(f, "create", "a", "b", NULL), 2);
    assert_int_equal(run(f, "create", "-bad", NULL), 2);
    assert_int_equal(run(f, "create", "has/slash", NULL), 2);
    assert_non_null(strstr(f->err, "invalid token name"));
    assert_int_equal(run(f, "create", "x", "--bogus", NULL), 2);
    assert_int_equal(run(f, "create", "x", "--scopes", "read:nothing", NULL), 2);
    assert_int_equal(run(f, "create", "x", "--scopes", NULL), 2);
    assert_int_equal(run(f, "create", "x", "--expires", "soon", NULL), 2);
    assert_int_equal(run(f, "create", "x", "--expires", "2001-01-01", NULL), 2);
    assert_non_null(strstr(f->err, "past"));
    assert_int_equal(run(f, "create", "x", "--expires", "2099-02-30", NULL), 2);
    assert_int_equal(run(f, "revoke", "x", "--scopes", "all", NULL), 2);
    assert_int_equal(run(f, "totp", NULL), 2);
    assert_int_equal(run(f, "totp", "frob", "x", NULL), 2);
    assert_int_equal(run(f, "totp", "enable", "x", "12a456", NULL), 2);
    assert_int_equal(run(f, "totp", "enable", "x", "1234567", NULL), 2);
    assert_int_equal(run(f, "list", "extra", NULL), 2);
    /* Nothing was opened, so nothing was created. */
    assert_int_equal(access(f->path, F_OK), -1);

    assert_int_equal(run(f, "--help", NULL), 0);
    assert_non_null(strstr(f->out, "totp enable"));
    assert_int_equal(run(f, "create", "--help", NULL), 0);
    assert_non_null(strstr(f->out, "--scopes"));
    assert_int_equal(run(f, "totp", "-h", NULL), 0);
    assert_non_null(strstr(f->out, "totp status"));
}

static void test_create_list_json(void **state)
{
    fixture *f = *state;
    int64_t before = (int64_t)time(NULL) * 1000;
    assert_int_equal(run(f, "create", "laptop", "--scopes", "read:files,chat:agent",
                         "--expires=30d", "--json", NULL),
                     0);
    json_t *o = out_json(f);
    char tok[65];
    assert_non_null(json_string_value(json_object_get(o, "token")));
    snprintf(tok, sizeof tok, "%s", json_string_value(json_object_get(o, "token")));
    assert_true(cx_token_well_formed(tok));
    assert_string_equal(json_string_value(json_object_get(o, "name")), "laptop");
    assert_memory_equal(json_string_value(json_object_get(o, "prefix")), tok, 8);
    assert_int_equal(json_array_size(json_object_get(o, "scopes")), 2);
    assert_true(json_is_string(json_object_get(o, "expiresAt")));

    cx_tokens *t = store(f);
    cx_token_info info;
    assert_int_equal(cx_tokens_authenticate(t, tok, before, &info), CX_OK);
    assert_int_equal(info.scopes, CX_SCOPE_READ_FILES | CX_SCOPE_CHAT_AGENT);
    int64_t want = before + 30LL * 86400 * 1000;
    assert_true(info.expires_at >= want && info.expires_at < want + 5000);
    json_decref(o);

    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    /* Default scopes are all; an ISO expiry is taken as UTC. */
    assert_int_equal(run(f, "create", "ci", "--expires", "2099-01-02T03:04Z", NULL), 0);
    assert_non_null(strstr(f->out, "only time"));
    assert_int_equal(cx_tokens_get(t, "ci", &info), CX_OK);
    assert_int_equal(info.scopes, CX_SCOPE_ALL);
    assert_int_equal(info.expires_at, 4071006240000LL);

    /* Taken name: exit 1, a hint, and a JSON error for scripts. */
    assert_int_equal(run(f, "create", "laptop", NULL), 1);
    assert_non_null(strstr(f->err, "already exists"));
    assert_non_null(strstr(f->err, "hint:"));
    assert_int_equal(run(f, "create", "laptop", "--json", NULL), 1);
    o = out_json(f);
    assert_string_equal(json_string_value(json_object_get(json_object_get(o, "error"), "code")),
                        "NAME_TAKEN");
    json_decref(o);

    assert_int_equal(run(f, "list", NULL), 0);
    assert_non_null(strstr(f->out, "NAME"));
    assert_non_null(strstr(f->out, "LAST-USED"));
    assert_non_null(strstr(f->out, "read:files,chat:agent"));
    assert_non_null(strstr(f->out, info.prefix)); /* ci's prefix */
    assert_null(strstr(f->out, tok));             /* never a value */
    assert_true(strstr(f->out, "ci ") < strstr(f->out, "laptop"));

    assert_int_equal(run(f, "list", "--json", NULL), 0);
    o = out_json(f);
    json_t *arr = json_object_get(o, "tokens");
    assert_int_equal(json_array_size(arr), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(arr, 1), "name")),
                        "laptop");
    assert_null(json_object_get(json_array_get(arr, 1), "token"));
    json_decref(o);

    assert_int_equal(count_rows(t, "SELECT count(*) FROM audit WHERE event='token.create' AND "
                                   "result='ok' AND address='cli'"),
                     2);
    assert_int_equal(count_rows(t, "SELECT count(*) FROM audit WHERE event='token.create' AND "
                                   "result='exists' AND token_name='laptop'"),
                     2);
    cx_tokens_close(t);
}

static void test_rotate_revoke(void **state)
{
    fixture *f = *state;
    assert_int_equal(run(f, "create", "r", "--json", NULL), 0);
    json_t *o = out_json(f);
    char old[65];
    snprintf(old, sizeof old, "%s", json_string_value(json_object_get(o, "token")));
    json_decref(o);

    assert_int_equal(run(f, "rotate", "r", "--json", NULL), 0);
    o = out_json(f);
    const char *fresh = json_string_value(json_object_get(o, "token"));
    assert_true(cx_token_well_formed(fresh));
    cx_tokens *t = store(f);
    int64_t now = (int64_t)time(NULL) * 1000;
    assert_int_equal(cx_tokens_authenticate(t, old, now, NULL), CX_E_NOTFOUND);
    assert_int_equal(cx_tokens_authenticate(t, fresh, now, NULL), CX_OK);
    json_decref(o);

    assert_int_equal(run(f, "rotate", "r", NULL), 0);
    assert_non_null(strstr(f->out, "only time"));
    assert_int_equal(run(f, "rotate", "ghost", NULL), 1);
    assert_non_null(strstr(f->err, "no token named"));

    assert_int_equal(run(f, "revoke", "r", NULL), 0);
    assert_int_equal(cx_tokens_get(t, "r", NULL), CX_E_NOTFOUND);
    assert_int_equal(run(f, "revoke", "r", "--json", NULL), 1);
    o = out_json(f);
    assert_string_equal(json_string_value(json_object_get(json_object_get(o, "error"), "code")),
                        "NOT_FOUND");
    json_decref(o);
    assert_int_equal(count_rows(t, "SELECT count(*) FROM audit WHERE event='token.rotate'"), 3);
    assert_int_equal(count_rows(t, "SELECT count(*) FROM audit WHERE event='token.revoke' AND "
                                   "result='ok'"),
                     1);
    cx_tokens_close(t);

    assert_int_equal(run(f, "list", NULL), 0);
    assert_non_null(strstr(f->out, "No tokens"));
}

static void test_totp(void **state)
{
    fixture *f = *state;
    assert_int_equal(run(f, "create", "phone", NULL), 0);
    assert_int_equal(run(f, "totp", "status", "phone", "--json", NULL), 0);
    json_t *o = out_json(f);
    assert_true(json_is_false(json_object_get(o, "configured")));
    json_decref(o);
    assert_int_equal(run(f, "totp", "enable", "phone", "123456", NULL), 1);
    assert_non_null(strstr(f->err, "totp setup"));

    assert_int_equal(run(f, "totp", "setup", "phone", NULL), 0);
    assert_non_null(strstr(f->out, "otpauth://totp/Condrix:phone%40"));
    assert_non_null(strstr(f->out, "QR"));

    assert_int_equal(run(f, "totp", "setup", "phone", "--json", NULL), 0);
    o = out_json(f);
    const char *secret = json_string_value(json_object_get(o, "secret"));
    const char *uri = json_string_value(json_object_get(o, "otpauthUri"));
    assert_non_null(secret);
    assert_non_null(uri);
    assert_non_null(strstr(uri, secret));
    uint8_t key[20];
    assert_int_equal(cx_base32_decode(secret, key, sizeof key), 20);
    json_decref(o);

    char code[7], wrong[7];
    int64_t now_s = (int64_t)time(NULL);
    cx_totp_code(key, 20, now_s, code);
    memcpy(wrong, code, 7);
    wrong[0] = code[0] == '9' ? '0' : (char)(code[0] + 1);
    assert_int_equal(run(f, "totp", "enable", "phone", wrong, NULL), 1);
    assert_non_null(strstr(f->err, "wrong"));
    assert_int_equal(run(f, "totp", "status", "phone", NULL), 0);
    assert_non_null(strstr(f->out, "waiting"));

    assert_int_equal(run(f, "totp", "enable", "phone", code, "--json", NULL), 0);
    o = out_json(f);
    assert_true(json_is_true(json_object_get(o, "enabled")));
    json_decref(o);
    assert_int_equal(run(f, "totp", "status", "phone", "--json", NULL), 0);
    o = out_json(f);
    assert_true(json_is_true(json_object_get(o, "configured")));
    assert_true(json_is_true(json_object_get(o, "enabled")));
    json_decref(o);

    cx_tokens *t = store(f);
    /* The code used to enable is spent. */
    assert_int_equal(cx_tokens_totp_check(t, "phone", code, now_s), CX_E_REPLAY);
    assert_int_equal(run(f, "list", NULL), 0);
    assert_non_null(strstr(f->out, " on\n"));

    assert_int_equal(run(f, "totp", "disable", "phone", NULL), 0);
    bool conf = true, en = true;
    assert_int_equal(cx_tokens_totp_status(t, "phone", &conf, &en), CX_OK);
    assert_false(conf);
    assert_false(en);
    assert_int_equal(run(f, "totp", "disable", "ghost", NULL), 1);

    assert_int_equal(count_rows(t, "SELECT count(*) FROM audit WHERE event='totp.setup'"), 2);
    assert_int_equal(count_rows(t, "SELECT count(*) FROM audit WHERE event='totp.enable' AND "
                                   "result='denied'"),
                     1);
    assert_int_equal(count_rows(t, "SELECT count(*) FROM audit WHERE event='totp.enable' AND "
                                   "result='ok'"),
                     1);
    assert_int_equal(count_rows(t, "SELECT count(*) FROM audit WHERE event='totp.disable' AND "
                                   "result='ok'"),
                     1);
    cx_tokens_close(t);
}

static void test_unopenable_db(void **state)
{
    fixture *f = *state;
    char *argv[] = {(char *)"auth", (char *)"create", (char *)"x", NULL};
    fflush(stderr);
    int saved = dup(2);
    int fe = open(f->err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fe, 2);
    int ex = cx_core_auth_cli(3, argv, "/nonexistent-cx-dir/core.db");
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(fe);
    assert_int_equal(ex, 1);
    char *err = slurp(f->err_path);
    assert_non_null(strstr(err, "cannot open"));
    assert_non_null(strstr(err, "hint:"));
    free(err);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_usage_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_list_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotate_revoke, setup, teardown),
        cmocka_unit_test_setup_teardown(test_totp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unopenable_db, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
