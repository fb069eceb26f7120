/* Unit tests for the Core's token store against real SQLite files: creation and names,
 * authentication, rotation, revocation, seeding, TOTP with replay refusal across handles,
 * settings, audit rows and the scope helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "condrix/error.h"
#include "condrix/token.h"
#include "condrix/totp.h"
#include "tokens.h"

#define NOW 1700000000000LL /* a fixed clock, Unix ms */

typedef struct fixture {
    char dir[64];
    char path[128];
    cx_tokens *t;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/cx_test_tokens_XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->path, sizeof f->path, "%s/core.db", f->dir);
    char *err = NULL;
    if (cx_tokens_open(f->path, &f->t, &err) != CX_OK) {
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
    cx_tokens_close(f->t);
    const char *suffixes[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        char p[160];
        snprintf(p, sizeof p, "%s%s", f->path, suffixes[i]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
    return 0;
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

static bool file_contains(const char *path, const char *needle)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL)
        return false;
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    size_t r;
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

static void test_create_and_names(void **state)
{
    fixture *f = *state;
    char tok[65];
    assert_int_equal(cx_tokens_create(f->t, "laptop", CX_SCOPE_READ_FILES, 0, NOW, tok), CX_OK);
    assert_true(cx_token_well_formed(tok));

    cx_token_info info;
    assert_int_equal(cx_tokens_get(f->t, "laptop", &info), CX_OK);
    assert_string_equal(info.name, "laptop");
    assert_int_equal(strlen(info.prefix), 8);
    assert_memory_equal(info.prefix, tok, 8);
    assert_int_equal(info.scopes, CX_SCOPE_READ_FILES);
    assert_int_equal(info.created_at, NOW);
    assert_int_equal(info.expires_at, 0);
    assert_int_equal(info.last_used_at, 0);
    assert_false(info.totp_enabled);
    assert_false(info.totp_configured);

    /* The value itself is nowhere on disk, only its 32-byte hash. */
    assert_int_equal(count_rows(f->t, "SELECT count(*) FROM auth_tokens WHERE "
                                      "length(token_hash) = 32"),
                     1);
    assert_false(file_contains(f->path, tok));
    char wal[160];
    snprintf(wal, sizeof wal, "%s-wal", f->path);
    assert_false(file_contains(wal, tok));
    assert_true(file_contains(wal, "laptop")); /* the search itself works */

    char tok2[65];
    assert_int_equal(cx_tokens_create(f->t, "laptop", CX_SCOPE_ALL, 0, NOW, tok2), CX_E_EXISTS);
    assert_string_equal(tok2, ""); /* no value escapes a failed create */

    const char *bad[] = {"", "-dash", ".dot", "_u", "has space", "a/b", "ü", "tab\t", "a:b"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(cx_tokens_create(f->t, bad[i], 0, 0, NOW, tok2), CX_E_INVAL);
    assert_int_equal(cx_tokens_create(f->t, NULL, 0, 0, NOW, tok2), CX_E_INVAL);

    char name[CX_TOKEN_NAME_MAX_CHARS + 2];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0'; /* 65 characters */
    assert_int_equal(cx_tokens_create(f->t, name, 0, 0, NOW, tok2), CX_E_INVAL);
    name[CX_TOKEN_NAME_MAX_CHARS] = '\0'; /* 64 */
    assert_int_equal(cx_tokens_create(f->t, name, 0, 0, NOW, tok2), CX_OK);
    assert_int_equal(cx_tokens_create(f->t, "9a.b_c-D", 0, 0, NOW, tok2), CX_OK);
    assert_int_equal(cx_tokens_create(f->t, "x", 1u << 8, 0, NOW, tok2), CX_E_INVAL);

    size_t n = 0;
    assert_int_equal(cx_tokens_count(f->t, &n), CX_OK);
    assert_int_equal(n, 3);
}

static void test_authenticate(void **state)
{
    fixture *f = *state;
    char tok[65], exp_tok[65];
    assert_int_equal(cx_tokens_create(f->t, "a", CX_SCOPE_ALL, 0, NOW, tok), CX_OK);
    assert_int_equal(cx_tokens_create(f->t, "e", CX_SCOPE_CHAT_AGENT, NOW + 1000, NOW, exp_tok),
                     CX_OK);

    cx_token_info info;
    assert_int_equal(cx_tokens_authenticate(f->t, tok, NOW, &info), CX_OK);
    assert_string_equal(info.name, "a");
    assert_int_equal(info.scopes, CX_SCOPE_ALL);
    assert_int_equal(cx_tokens_authenticate(f->t, tok, NOW, NULL), CX_OK);

    char other[65];
    cx_token_generate(other);
    assert_int_equal(cx_tokens_authenticate(f->t, other, NOW, &info), CX_E_NOTFOUND);

    char upper[65];
    for (int i = 0; i < 65; i++)
        upper[i] = (char)(tok[i] >= 'a' && tok[i] <= 'f' ? tok[i] - 32 : tok[i]);
    if (strcmp(upper, tok) != 0)
        assert_int_equal(cx_tokens_authenticate(f->t, upper, NOW, &info), CX_E_FORMAT);
    assert_int_equal(cx_tokens_authenticate(f->t, "abc", NOW, &info), CX_E_FORMAT);
    assert_int_equal(cx_tokens_authenticate(f->t, "", NOW, &info), CX_E_FORMAT);
    char longer[70];
    snprintf(longer, sizeof longer, "%s0", tok);
    assert_int_equal(cx_tokens_authenticate(f->t, longer, NOW, &info), CX_E_FORMAT);

    assert_int_equal(cx_tokens_authenticate(f->t, exp_tok, NOW + 999, &info), CX_OK);
    memset(&info, 0, sizeof info);
    assert_int_equal(cx_tokens_authenticate(f->t, exp_tok, NOW + 1000, &info), CX_E_EXPIRED);
    assert_string_equal(info.name, "e"); /* filled, for the log line */
    assert_int_equal(cx_tokens_authenticate(f->t, exp_tok, NOW + 5000, &info), CX_E_EXPIRED);
}

/* Enable TOTP on name and return the active key (20 bytes). */
static void enable_totp(cx_tokens *t, const char *name, int64_t now_s, uint8_t key[20])
{
    char b32[CX_TOKENS_TOTP_B32_SIZE];
    assert_int_equal(cx_tokens_totp_setup(t, name, b32), CX_OK);
    assert_int_equal(strlen(b32), 32);
    assert_int_equal(cx_base32_decode(b32, key, 20), 20);
    char code[7];
    cx_totp_code(key, 20, now_s, code);
    assert_int_equal(cx_tokens_totp_enable(t, name, code, now_s), CX_OK);
}

static void test_rotate(void **state)
{
    fixture *f = *state;
    char tok[65], fresh[65];
    unsigned scopes = CX_SCOPE_READ_FILES | CX_SCOPE_ADMIN_CORE;
    assert_int_equal(cx_tokens_create(f->t, "r", scopes, NOW + 86400000, NOW, tok), CX_OK);
    uint8_t key[20];
    enable_totp(f->t, "r", NOW / 1000, key);

    assert_int_equal(cx_tokens_rotate(f->t, "r", NOW + 5, fresh), CX_OK);
    assert_true(cx_token_well_formed(fresh));
    assert_string_not_equal(fresh, tok);
    assert_int_equal(cx_tokens_authenticate(f->t, tok, NOW, NULL), CX_E_NOTFOUND);
    cx_token_info info;
    assert_int_equal(cx_tokens_authenticate(f->t, fresh, NOW, &info), CX_OK);
    assert_string_equal(info.name, "r");
    assert_int_equal(info.scopes, scopes);
    assert_int_equal(info.expires_at, NOW + 86400000);
    assert_int_equal(info.created_at, NOW);
    assert_true(info.totp_enabled);
    assert_memory_equal(info.prefix, fresh, 8);

    /* The same TOTP secret still works after rotation. */
    char code[7];
    cx_totp_code(key, 20, NOW / 1000 + 30, code);
    assert_int_equal(cx_tokens_totp_check(f->t, "r", code, NOW / 1000 + 30), CX_OK);

    assert_int_equal(cx_tokens_rotate(f->t, "nope", NOW, fresh), CX_E_NOTFOUND);
    assert_string_equal(fresh, "");
}

static void test_revoke(void **state)
{
    fixture *f = *state;
    char tok[65];
    assert_int_equal(cx_tokens_create(f->t, "gone", CX_SCOPE_ALL, 0, NOW, tok), CX_OK);
    assert_int_equal(cx_tokens_revoke(f->t, "gone"), CX_OK);
    assert_int_equal(cx_tokens_authenticate(f->t, tok, NOW, NULL), CX_E_NOTFOUND);
    assert_int_equal(cx_tokens_get(f->t, "gone", NULL), CX_E_NOTFOUND);
    assert_int_equal(cx_tokens_revoke(f->t, "gone"), CX_E_NOTFOUND);
    /* The name is free again, and the old value stays dead. */
    char tok2[65];
    assert_int_equal(cx_tokens_create(f->t, "gone", 0, 0, NOW, tok2), CX_OK);
    assert_int_equal(cx_tokens_authenticate(f->t, tok, NOW, NULL), CX_E_NOTFOUND);
    assert_int_equal(cx_tokens_authenticate(f->t, tok2, NOW, NULL), CX_OK);
}

static void test_seed(void **state)
{
    fixture *f = *state;
    char tok[65], tok2[65];
    cx_token_generate(tok);
    cx_token_generate(tok2);
    assert_int_equal(cx_tokens_seed(f->t, "env", tok, CX_SCOPE_ALL, NOW), CX_OK);
    assert_int_equal(cx_tokens_seed(f->t, "env", tok, CX_SCOPE_ALL, NOW + 1), CX_OK);
    size_t n = 0;
    assert_int_equal(cx_tokens_count(f->t, &n), CX_OK);
    assert_int_equal(n, 1);
    cx_token_info info;
    assert_int_equal(cx_tokens_authenticate(f->t, tok, NOW, &info), CX_OK);
    assert_int_equal(info.scopes, CX_SCOPE_ALL);
    assert_int_equal(info.created_at, NOW); /* the second seed changed nothing */

    uint8_t key[20];
    enable_totp(f->t, "env", NOW / 1000, key);

    /* The environment changed: the new value replaces the old, TOTP stays. */
    assert_int_equal(cx_tokens_seed(f->t, "env", tok2, CX_SCOPE_ALL, NOW), CX_OK);
    assert_int_equal(cx_tokens_authenticate(f->t, tok, NOW, NULL), CX_E_NOTFOUND);
    assert_int_equal(cx_tokens_authenticate(f->t, tok2, NOW, &info), CX_OK);
    assert_true(info.totp_enabled);
    assert_int_equal(cx_tokens_count(f->t, &n), CX_OK);
    assert_int_equal(n, 1);

    assert_int_equal(cx_tokens_seed(f->t, "env", "not-a-token", CX_SCOPE_ALL, NOW), CX_E_FORMAT);
    assert_int_equal(cx_tokens_seed(f->t, "other", tok2, CX_SCOPE_ALL, NOW), CX_E_EXISTS);
    assert_int_equal(cx_tokens_seed(f->t, "-bad", tok, CX_SCOPE_ALL, NOW), CX_E_INVAL);
    /* The failed seeds left no transaction open: a write still works. */
    assert_int_equal(cx_tokens_create(f->t, "after", 0, 0, NOW, tok), CX_OK);
}

/* A code that differs from code in its last digit. */
static void make_wrong(const char *code, char wrong[7])
{
    memcpy(wrong, code, 7);
    wrong[5] = code[5] == '9' ? '0' : (char)(code[5] + 1);
}

static void test_totp_flow(void **state)
{
    fixture *f = *state;
    char tok[65];
    const int64_t T = 1700000010; /* seconds, mid-step */
    assert_int_equal(cx_tokens_create(f->t, "t", CX_SCOPE_ALL, 0, NOW, tok), CX_OK);

    bool conf = true, en = true;
    assert_int_equal(cx_tokens_totp_status(f->t, "t", &conf, &en), CX_OK);
    assert_false(conf);
    assert_false(en);
    assert_int_equal(cx_tokens_totp_enable(f->t, "t", "123456", T), CX_E_INVAL); /* no setup */
    assert_int_equal(cx_tokens_totp_check(f->t, "t", "123456", T), CX_E_INVAL);  /* not on */

    char b32[CX_TOKENS_TOTP_B32_SIZE];
    uint8_t key[20];
    assert_int_equal(cx_tokens_totp_setup(f->t, "t", b32), CX_OK);
    assert_int_equal(cx_base32_decode(b32, key, sizeof key), 20);
    assert_int_equal(cx_tokens_totp_status(f->t, "t", &conf, &en), CX_OK);
    assert_true(conf);
    assert_false(en);
    /* A pending secret is not in force yet. */
    assert_int_equal(cx_tokens_totp_check(f->t, "t", "123456", T), CX_E_INVAL);

    char code[7], wrong[7];
    cx_totp_code(key, 20, T, code);
    make_wrong(code, wrong);
    assert_int_equal(cx_tokens_totp_enable(f->t, "t", wrong, T), CX_E_DENIED);
    assert_int_equal(cx_tokens_totp_enable(f->t, "t", "12345", T), CX_E_FORMAT);
    assert_int_equal(cx_tokens_totp_enable(f->t, "t", code, T), CX_OK);
    assert_int_equal(cx_tokens_totp_status(f->t, "t", &conf, &en), CX_OK);
    assert_true(conf);
    assert_true(en);
    cx_token_info info;
    assert_int_equal(cx_tokens_authenticate(f->t, tok, NOW, &info), CX_OK);
    assert_true(info.totp_enabled);

    /* The code that enabled TOTP is spent (a step once accepted is never accepted again). */
    assert_int_equal(cx_tokens_totp_check(f->t, "t", code, T), CX_E_REPLAY);
    cx_totp_code(key, 20, T + 30, code);
    assert_int_equal(cx_tokens_totp_check(f->t, "t", code, T + 30), CX_OK);
    assert_int_equal(cx_tokens_totp_check(f->t, "t", code, T + 30), CX_E_REPLAY);
    cx_totp_code(key, 20, T, code); /* an older step is refused too */
    assert_int_equal(cx_tokens_totp_check(f->t, "t", code, T + 30), CX_E_REPLAY);
    cx_totp_code(key, 20, T + 60, code);
    make_wrong(code, wrong);
    assert_int_equal(cx_tokens_totp_check(f->t, "t", wrong, T + 60), CX_E_DENIED);
    assert_int_equal(cx_tokens_totp_check(f->t, "t", "12 456", T + 60), CX_E_FORMAT);

    /* A new setup does not disturb the active secret until it is enabled. */
    char b32b[CX_TOKENS_TOTP_B32_SIZE];
    uint8_t key2[20];
    assert_int_equal(cx_tokens_totp_setup(f->t, "t", b32b), CX_OK);
    assert_string_not_equal(b32, b32b);
    assert_int_equal(cx_base32_decode(b32b, key2, sizeof key2), 20);
    assert_int_equal(cx_tokens_totp_check(f->t, "t", code, T + 60), CX_OK);
    cx_totp_code(key2, 20, T + 90, code);
    assert_int_equal(cx_tokens_totp_enable(f->t, "t", code, T + 90), CX_OK);
    cx_totp_code(key, 20, T + 120, code); /* the old secret is out of force */
    cx_totp_code(key2, 20, T + 120, wrong);
    if (strcmp(code, wrong) != 0)
        assert_int_equal(cx_tokens_totp_check(f->t, "t", code, T + 120), CX_E_DENIED);
    assert_int_equal(cx_tokens_totp_check(f->t, "t", wrong, T + 120), CX_OK);

    assert_int_equal(cx_tokens_totp_disable(f->t, "t"), CX_OK);
    assert_int_equal(cx_tokens_totp_status(f->t, "t", &conf, &en), CX_OK);
    assert_false(conf);
    assert_false(en);
    assert_int_equal(cx_tokens_totp_check(f->t, "t", wrong, T + 150), CX_E_INVAL);
    assert_int_equal(count_rows(f->t, "SELECT count(*) FROM auth_tokens WHERE totp_secret IS "
                                      "NOT NULL OR totp_pending IS NOT NULL"),
                     0);

    assert_int_equal(cx_tokens_totp_setup(f->t, "nope", b32), CX_E_NOTFOUND);
    assert_int_equal(cx_tokens_totp_enable(f->t, "nope", code, T), CX_E_NOTFOUND);
    assert_int_equal(cx_tokens_totp_check(f->t, "nope", code, T), CX_E_NOTFOUND);
    assert_int_equal(cx_tokens_totp_disable(f->t, "nope"), CX_E_NOTFOUND);
    assert_int_equal(cx_tokens_totp_status(f->t, "nope", NULL, NULL), CX_E_NOTFOUND);
}

static void test_two_handles(void **state)
{
    fixture *f = *state;
    cx_tokens *cli = NULL;
    assert_int_equal(cx_tokens_open(f->path, &cli, NULL), CX_OK);

    char tok[65], fresh[65];
    assert_int_equal(cx_tokens_create(cli, "shared", CX_SCOPE_ALL, 0, NOW, tok), CX_OK);
    assert_int_equal(cx_tokens_authenticate(f->t, tok, NOW, NULL), CX_OK);
    assert_int_equal(cx_tokens_rotate(cli, "shared", NOW, fresh), CX_OK);
    assert_int_equal(cx_tokens_authenticate(f->t, tok, NOW, NULL), CX_E_NOTFOUND);
    assert_int_equal(cx_tokens_authenticate(f->t, fresh, NOW, NULL), CX_OK);

    /* A step accepted through one handle is spent for the other. */
    const int64_t T = 1700000100;
    uint8_t key[20];
    enable_totp(cli, "shared", T, key);
    char code[7];
    cx_totp_code(key, 20, T + 30, code);
    assert_int_equal(cx_tokens_totp_check(f->t, "shared", code, T + 30), CX_OK);
    assert_int_equal(cx_tokens_totp_check(cli, "shared", code, T + 30), CX_E_REPLAY);

    assert_int_equal(cx_tokens_touch(f->t, "shared", NOW + 7), CX_OK);
    cx_token_info info;
    assert_int_equal(cx_tokens_get(cli, "shared", &info), CX_OK);
    assert_int_equal(info.last_used_at, NOW + 7);

    assert_int_equal(cx_tokens_revoke(cli, "shared"), CX_OK);
    assert_int_equal(cx_tokens_authenticate(f->t, fresh, NOW, NULL), CX_E_NOTFOUND);
    assert_int_equal(cx_tokens_touch(f->t, "shared", NOW), CX_E_NOTFOUND);
    cx_tokens_close(cli);

    /* What was written survives closing and reopening. */
    assert_int_equal(cx_tokens_create(f->t, "kept", 0, 0, NOW, tok), CX_OK);
    cx_tokens_close(f->t);
    f->t = NULL;
    assert_int_equal(cx_tokens_open(f->path, &f->t, NULL), CX_OK);
    assert_int_equal(cx_tokens_authenticate(f->t, tok, NOW, NULL), CX_OK);
}

/* The race the conditional UPDATE exists for: two processes read the same last step, both
 * verify the same code, both try to accept it. The trace hook runs the other handle's
 * check just as this handle's accepting UPDATE starts, after its read. */
typedef struct race {
    cx_tokens *other; /* the "other process" */
    const char *code;
    int64_t now_s;
    int other_rc;     /* what the other handle got */
    bool fired;
} race;

static int race_hook(unsigned type, void *ctx, void *p, void *x)
{
    (void)type;
    (void)x;
    race *r = ctx;
    const char *sql = sqlite3_sql((sqlite3_stmt *)p);
    if (!r->fired && sql != NULL && strstr(sql, "SET totp_last_step") != NULL) {
        r->fired = true;
        r->other_rc = cx_tokens_totp_check(r->other, "shared", r->code, r->now_s);
    }
    return 0;
}

static void test_totp_race(void **state)
{
    fixture *f = *state;
    cx_tokens *other = NULL;
    assert_int_equal(cx_tokens_open(f->path, &other, NULL), CX_OK);
    char tok[65];
    assert_int_equal(cx_tokens_create(f->t, "shared", CX_SCOPE_ALL, 0, NOW, tok), CX_OK);
    const int64_t T = 1700000100;
    uint8_t key[20];
    enable_totp(f->t, "shared", T, key);
    char code[7];
    cx_totp_code(key, 20, T + 30, code);

    race r = {.other = other, .code = code, .now_s = T + 30, .other_rc = 1};
    sqlite3_trace_v2(cx_tokens_db(f->t), SQLITE_TRACE_STMT, race_hook, &r);
    int rc = cx_tokens_totp_check(f->t, "shared", code, T + 30);
    sqlite3_trace_v2(cx_tokens_db(f->t), 0, NULL, NULL);
    assert_true(r.fired);
    assert_int_equal(r.other_rc, CX_OK);
    assert_int_equal(rc, CX_E_REPLAY); /* exactly one of the two accepted */
    cx_tokens_close(other);
}

static void test_file_mode(void **state)
{
    fixture *f = *state;
    char tok[65];
    assert_int_equal(cx_tokens_create(f->t, "m", 0, 0, NOW, tok), CX_OK);
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char p[160];
    snprintf(p, sizeof p, "%s-wal", f->path);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
}

static void test_list(void **state)
{
    fixture *f = *state;
    cx_token_info *arr = (cx_token_info *)1;
    size_t n = 99;
    assert_int_equal(cx_tokens_list(f->t, &arr, &n), CX_OK);
    assert_null(arr);
    assert_int_equal(n, 0);

    const char *names[] = {"b", "a", "C", "a.1", "a-0"};
    char tok[65];
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(cx_tokens_create(f->t, names[i], CX_SCOPE_READ_FILES, 0, NOW + (int64_t)i,
                                          tok),
                         CX_OK);
    assert_int_equal(cx_tokens_list(f->t, &arr, &n), CX_OK);
    assert_int_equal(n, 5);
    const char *want[] = {"C", "a", "a-0", "a.1", "b"};
    for (size_t i = 0; i < 5; i++) {
        assert_string_equal(arr[i].name, want[i]);
        assert_int_equal(arr[i].scopes, CX_SCOPE_READ_FILES);
    }
    assert_int_equal(arr[4].created_at, NOW);
    free(arr);
}

static void test_settings(void **state)
{
    fixture *f = *state;
    char *v = (char *)1;
    assert_int_equal(cx_tokens_setting_get(f->t, "core.id", &v), CX_OK);
    assert_null(v);
    assert_int_equal(cx_tokens_setting_set(f->t, "core.id", "abc"), CX_OK);
    assert_int_equal(cx_tokens_setting_get(f->t, "core.id", &v), CX_OK);
    assert_string_equal(v, "abc");
    free(v);
    assert_int_equal(cx_tokens_setting_set(f->t, "core.id", "def"), CX_OK);
    assert_int_equal(cx_tokens_setting_get(f->t, "core.id", &v), CX_OK);
    assert_string_equal(v, "def");
    free(v);
    assert_int_equal(cx_tokens_setting_set(f->t, "core.id", NULL), CX_E_INVAL);
    assert_int_equal(count_rows(f->t, "SELECT count(*) FROM settings"), 1);
}

static void test_audit(void **state)
{
    fixture *f = *state;
    assert_int_equal(cx_tokens_audit(f->t, NOW, "token.create", "x", "cli", "ok"), CX_OK);
    assert_int_equal(cx_tokens_audit(f->t, NOW + 1, "auth.fail", NULL, "10.0.0.1", "denied"),
                     CX_OK);
    assert_int_equal(cx_tokens_audit(f->t, NOW, NULL, NULL, NULL, "ok"), CX_E_INVAL);
    assert_int_equal(count_rows(f->t, "SELECT count(*) FROM audit"), 2);
    assert_int_equal(count_rows(f->t, "SELECT count(*) FROM audit WHERE event='token.create' AND "
                                      "token_name='x' AND address='cli' AND result='ok' AND "
                                      "time=1700000000000"),
                     1);
    assert_int_equal(count_rows(f->t, "SELECT count(*) FROM audit WHERE token_name IS NULL AND "
                                      "address='10.0.0.1' AND result='denied'"),
                     1);
}

static void test_scope_helpers(void **state)
{
    (void)state;
    assert_string_equal(cx_scope_name(CX_SCOPE_READ_FILES), "read:files");
    assert_string_equal(cx_scope_name(CX_SCOPE_CHAT_MAESTRO), "chat:maestro");
    assert_string_equal(cx_scope_name(CX_SCOPE_ADMIN_CORE), "admin:core");
    assert_null(cx_scope_name(CX_SCOPE_READ_FILES | CX_SCOPE_WRITE_FILES));
    assert_null(cx_scope_name(0));
    assert_null(cx_scope_name(1u << 8));

    unsigned s = 0;
    assert_int_equal(cx_scopes_parse("all", &s), CX_OK);
    assert_int_equal(s, CX_SCOPE_ALL);
    assert_int_equal(cx_scopes_parse("*", &s), CX_OK);
    assert_int_equal(s, CX_SCOPE_ALL);
    assert_int_equal(cx_scopes_parse("read:files, chat:agent", &s), CX_OK);
    assert_int_equal(s, CX_SCOPE_READ_FILES | CX_SCOPE_CHAT_AGENT);
    assert_int_equal(cx_scopes_parse("none", &s), CX_OK);
    assert_int_equal(s, 0);
    s = 77;
    assert_int_equal(cx_scopes_parse("", &s), CX_E_INVAL);
    assert_int_equal(cx_scopes_parse("read:files,", &s), CX_E_INVAL);
    assert_int_equal(cx_scopes_parse("read:file", &s), CX_E_INVAL);
    assert_int_equal(cx_scopes_parse("read:filesx", &s), CX_E_INVAL);
    assert_int_equal(s, 77);

    json_t *arr = json_pack("[ss]", "admin:core", "exec:terminal");
    assert_int_equal(cx_scopes_from_json(arr, &s), CX_OK);
    assert_int_equal(s, CX_SCOPE_ADMIN_CORE | CX_SCOPE_EXEC_TERMINAL);
    json_decref(arr);
    arr = json_array();
    assert_int_equal(cx_scopes_from_json(arr, &s), CX_OK);
    assert_int_equal(s, 0);
    json_decref(arr);
    arr = json_pack("[si]", "admin:core", 3);
    assert_int_equal(cx_scopes_from_json(arr, &s), CX_E_INVAL);
    json_decref(arr);
    arr = json_pack("[s]", "admin:everything");
    assert_int_equal(cx_scopes_from_json(arr, &s), CX_E_INVAL);
    json_decref(arr);
    arr = json_string("admin:core");
    assert_int_equal(cx_scopes_from_json(arr, &s), CX_E_INVAL);
    json_decref(arr);

    arr = cx_scopes_to_json(CX_SCOPE_CHAT_MAESTRO | CX_SCOPE_READ_FILES);
    char *text = json_dumps(arr, JSON_COMPACT);
    assert_string_equal(text, "[\"read:files\",\"chat:maestro\"]");
    free(text);
    json_decref(arr);
    arr = cx_scopes_to_json(CX_SCOPE_ALL);
    assert_int_equal(json_array_size(arr), 8);
    assert_int_equal(cx_scopes_from_json(arr, &s), CX_OK);
    assert_int_equal(s, CX_SCOPE_ALL);
    json_decref(arr);

    char buf[128];
    assert_string_equal(cx_scopes_format(CX_SCOPE_ALL, buf, sizeof buf), "all");
    assert_string_equal(cx_scopes_format(0, buf, sizeof buf), "none");
    assert_string_equal(cx_scopes_format(CX_SCOPE_WRITE_FILES | CX_SCOPE_ADMIN_PROJECT, buf,
                                         sizeof buf),
                        "write:files,admin:project");
    char small[8];
    cx_scopes_format(CX_SCOPE_WRITE_FILES | CX_SCOPE_ADMIN_PROJECT, small, sizeof small);
    assert_int_equal(strlen(small), 7);
}

static void test_info_json(void **state)
{
    (void)state;
    cx_token_info info = {.name = "n", .prefix = "abcdef01", .scopes = CX_SCOPE_ADMIN_CORE,
                          .created_at = 1700000000123LL, .expires_at = 0, .last_used_at = 0,
                          .totp_enabled = true};
    json_t *o = cx_tokens_info_to_json(&info);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "name")), "n");
    assert_string_equal(json_string_value(json_object_get(o, "prefix")), "abcdef01");
    assert_string_equal(json_string_value(json_object_get(o, "createdAt")),
                        "2023-11-14T22:13:20.123Z");
    assert_true(json_is_null(json_object_get(o, "expiresAt")));
    assert_true(json_is_null(json_object_get(o, "lastUsedAt")));
    assert_true(json_is_true(json_object_get(o, "totpEnabled")));
    assert_string_equal(json_string_value(json_array_get(json_object_get(o, "scopes"), 0)),
                        "admin:core");
    assert_null(json_object_get(o, "token"));
    json_decref(o);
}

static void test_open_errors(void **state)
{
    (void)state;
    cx_tokens *t = (cx_tokens *)1;
    char *err = NULL;
    assert_int_equal(cx_tokens_open("/nonexistent-dir-cx/core.db", &t, &err), CX_E_IO);
    assert_null(t);
    assert_non_null(err);
    free(err);
    cx_tokens_close(NULL);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_and_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_authenticate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_revoke, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_totp_flow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_handles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_totp_race, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_settings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit, setup, teardown),
        cmocka_unit_test(test_scope_helpers),
        cmocka_unit_test(test_info_json),
        cmocka_unit_test(test_open_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
