/* `condrix-core auth ...`: list, create, revoke and rotate access tokens and manage their
 * TOTP from a shell on the Core's machine. It opens the same core.db as a running server;
 * each change and its audit row commit together, and a new secret is printed exactly once. */
#include "cli_auth.h"

#include <jansson.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "condrix/cliout.h"
#include "condrix/clock.h"
#include "condrix/config.h"
#include "condrix/db.h"
#include "condrix/error.h"
#include "condrix/limits.h"
#include "condrix/totp.h"
#include "tokens.h"

#define PROG "condrix-core auth"
#define MAX_POSITIONAL 4
#define TOTP_ISSUER "Condrix"

typedef struct cli {
    bool json;            /* --json: machine output on stdout */
    const char *scopes;   /* --scopes value, NULL if absent */
    const char *expires;  /* --expires value, NULL if absent */
    unsigned scope_bits;  /* parsed --scopes, CX_SCOPE_ALL by default */
    int64_t expires_ms;   /* parsed --expires, Unix ms, 0 = never */
    const char *pos[MAX_POSITIONAL]; /* positional arguments after the verb(s) */
    int npos;
    cx_tokens *t;         /* open store, NULL until needed */
    int64_t now_ms;       /* wall clock at start, Unix ms */
} cli;

typedef struct verb {
    const char *name;  /* "create", "totp enable", ... */
    int nargs;         /* positional arguments it takes */
    const char *args;  /* for the usage line */
    const char *help;  /* one line */
} verb;

static const verb verbs[] = {
    {"list", 0, "", "list every token (never the values)"},
    {"create", 1, "NAME [--scopes a,b|all] [--expires 30d|2026-12-31[T10:00Z]]",
     "make a token and print it once (default scopes: all; default expiry: never)"},
    {"revoke", 1, "NAME", "delete a token; it stops working at once"},
    {"rotate", 1, "NAME", "give a token a new value (printed once); scopes, expiry, TOTP stay"},
    {"totp setup", 1, "NAME", "start TOTP: print the secret, otpauth URI and a QR code"},
    {"totp enable", 2, "NAME CODE", "finish TOTP setup with a current 6-digit code"},
    {"totp disable", 1, "NAME", "remove TOTP from a token"},
    {"totp status", 1, "NAME", "show whether TOTP is configured and enabled"},
};
#define N_VERBS (sizeof verbs / sizeof *verbs)

static void print_verb(FILE *out, const verb *v)
{
    fprintf(out, "  %s %s%s%s [--json]\n      %s\n", PROG, v->name, v->args[0] ? " " : "",
            v->args, v->help);
}

void cx_core_auth_usage(FILE *out)
{
    fprintf(out, "Usage:\n");
    for (size_t i = 0; i < N_VERBS; i++)
        print_verb(out, &verbs[i]);
    fprintf(out,
            "\nScopes: read:files write:files exec:terminal admin:workspace admin:project\n"
            "        admin:core chat:agent chat:maestro, or all / none.\n"
            "Expiry: a duration (90s, 15m, 12h, 30d, 2w), a UTC date or time\n"
            "        (2026-12-31, 2026-12-31T18:00Z), or never.\n"
            "Names:  1-64 of letters, digits, '.', '_', '-', starting with a letter or digit.\n"
            "Data:   --data-dir DIR (before or after the verb), else CONDRIX_HOME, else\n"
            "        ~/.condrix; a running Core may keep running.\n"
            "--json prints one JSON object on stdout. Exit status: 0 ok, 1 failed, 2 usage.\n");
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Set from the arguments before they are read, so every usage error can answer in JSON. */
static bool usage_json;

static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cx_cli_usage_errorv(PROG, usage_json, fmt, ap);
    va_end(ap);
    return CX_CORE_AUTH_EXIT_USAGE;
}

/* An operation failed: a message and a hint for the operator on stderr, and with --json
 * also {"error":{code,message}} on stdout so scripts need not parse stderr. */
static int fail(const cli *c, const char *code, const char *hint, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(const cli *c, const char *code, const char *hint, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cx_cli_failv(PROG, c->json, code, hint, fmt, ap);
    va_end(ap);
    return CX_CORE_AUTH_EXIT_FAILED;
}

/* Report a store error about token name in words an operator can act on. */
static int fail_rc(const cli *c, int rc, const char *name)
{
    char hint[160];
    switch (rc) {
    case CX_E_NOTFOUND:
        return fail(c, "NOT_FOUND", "'" PROG " list' shows the tokens that exist",
                    "no token named \"%s\"", name);
    case CX_E_EXISTS:
        snprintf(hint, sizeof hint, "choose another name, or replace its value with '%s rotate %s'",
                 PROG, name);
        return fail(c, "NAME_TAKEN", hint, "a token named \"%s\" already exists", name);
    case CX_E_DENIED:
    case CX_E_REPLAY:
        return fail(c, "INVALID_TOTP",
                    "enter the code the app shows right now (and check this machine's clock)",
                    "wrong or already used code for token \"%s\"", name);
    case CX_E_DB:
        return fail(c, "INTERNAL",
                    "the database may be locked by a long transaction or the disk full; retry",
                    "database error: %s", c->t ? sqlite3_errmsg(cx_tokens_db(c->t)) : "?");
    default:
        return fail(c, "INTERNAL", NULL, "failed: %s", cx_strerror(rc));
    }
}

/* The change is committed but its new secret could not be printed. */
static int fail_unshown(const cli *c, const char *name)
{
    char hint[160];
    snprintf(hint, sizeof hint, "run '%s rotate %s' for a value you can see", PROG, name);
    return fail(c, "INTERNAL", hint, "out of memory: token \"%s\" was saved but not shown", name);
}

static bool all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

/* A UTC date or date-time: YYYY-MM-DD, optionally followed by T or a space, HH:MM, :SS and
 * a trailing Z. Out: Unix ms. */
static int parse_iso(const char *s, int64_t *out)
{
    size_t len = strlen(s);
    if (len < 10 || !all_digits(s, 4) || s[4] != '-' || !all_digits(s + 5, 2) || s[7] != '-' ||
        !all_digits(s + 8, 2))
        return CX_E_INVAL;
    struct tm tm = {0};
    tm.tm_year = atoi(s) - 1900;
    tm.tm_mon = atoi(s + 5) - 1;
    tm.tm_mday = atoi(s + 8);
    const char *p = s + 10;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        p++;
        if (strlen(p) < 5 || !all_digits(p, 2) || p[2] != ':' || !all_digits(p + 3, 2))
            return CX_E_INVAL;
        tm.tm_hour = atoi(p);
        tm.tm_min = atoi(p + 3);
        p += 5;
        if (*p == ':') {
            if (!all_digits(p + 1, 2))
                return CX_E_INVAL;
            tm.tm_sec = atoi(p + 1);
            p += 3;
        }
    }
    if (*p == 'Z' || *p == 'z')
        p++;
    if (*p != '\0')
        return CX_E_INVAL;
    if (tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 ||
        tm.tm_min > 59 || tm.tm_sec > 60)
        return CX_E_INVAL;
    struct tm check = tm;
    time_t t = timegm(&tm);
    /* timegm normalises 2026-02-31 to March; a date that moved was not a real date. */
    if (t == (time_t)-1 || tm.tm_mday != check.tm_mday || tm.tm_mon != check.tm_mon)
        return CX_E_INVAL;
    *out = (int64_t)t * 1000;
    return CX_OK;
}

/* --expires: a duration from now, an ISO date, or "never" (0). */
static int parse_expires(const char *s, int64_t now, int64_t *out)
{
    if (strcmp(s, "never") == 0) {
        *out = 0;
        return CX_OK;
    }
    int64_t secs = 0;
    if (parse_iso(s, out) == CX_OK)
        return *out > CX_TIME_MAX_MS ? CX_E_INVAL : *out > now ? CX_OK : CX_E_EXPIRED;
    if (cx_parse_duration(s, &secs) != CX_OK || secs <= 0 || secs > (CX_TIME_MAX_MS - now) / 1000)
        return CX_E_INVAL;
    *out = now + secs * 1000;
    return CX_OK;
}

static int open_store(cli *c, const char *db_path)
{
    char *err = NULL;
    int rc = cx_tokens_open(db_path, &c->t, &err);
    if (rc == CX_OK)
        return CX_OK;
    fail(c, "INTERNAL",
         "check that the Core's home exists and is yours (CONDRIX_HOME, default ~/.condrix)",
         "cannot open %s: %s", db_path, err ? err : cx_strerror(rc));
    free(err);
    return rc;
}

/* Commit a change together with its audit row; on any failure roll both back. rc is the
 * change's own result: a failed change still leaves an audit row of the attempt. */
static int finish_change(cli *c, int rc, const char *event, const char *name)
{
    sqlite3 *db = cx_tokens_db(c->t);
    const char *result = rc == CX_OK ? "ok" : rc == CX_E_DENIED || rc == CX_E_REPLAY ? "denied"
                                            : rc == CX_E_NOTFOUND ? "not_found"
                                            : rc == CX_E_EXISTS ? "exists" : "error";
    int arc = cx_tokens_audit(c->t, c->now_ms, event, name, "cli", result);
    if (arc != CX_OK) {
        cx_db_rollback(db);
        return rc != CX_OK ? rc : arc;
    }
    if (cx_db_commit(db) != CX_OK) {
        cx_db_rollback(db);
        return rc != CX_OK ? rc : CX_E_DB;
    }
    return rc;
}

static int begin_change(cli *c)
{
    int rc = cx_db_begin(cx_tokens_db(c->t));
    if (rc != CX_OK)
        fail_rc(c, rc, "");
    return rc;
}

/* ---- verbs ---- */

static int do_list(cli *c)
{
    cx_token_info *arr = NULL;
    size_t n = 0;
    int rc = cx_tokens_list(c->t, &arr, &n);
    if (rc != CX_OK)
        return fail_rc(c, rc, "");
    int ex = CX_CORE_AUTH_EXIT_OK;
    if (c->json) {
        json_t *list = json_array();
        json_t *o = list ? json_pack("{s:o}", "tokens", list) : NULL;
        for (size_t i = 0; o != NULL && i < n; i++) {
            if (json_array_append_new(list, cx_tokens_info_to_json(&arr[i])) != 0) {
                json_decref(o);
                o = NULL;
            }
        }
        ex = cx_cli_emit_json(PROG, o);
        goto out;
    }
    if (n == 0) {
        printf("No tokens yet. Make one with: %s create NAME --scopes all\n", PROG);
        goto out;
    }

    enum { C_NAME, C_PREFIX, C_SCOPES, C_CREATED, C_EXPIRES, C_USED, C_TOTP, NCOL };
    static const char *const head[NCOL] = {"NAME",    "PREFIX",    "SCOPES", "CREATED",
                                           "EXPIRES", "LAST-USED", "TOTP"};
    typedef char cell[160];
    cell(*rows)[NCOL] = calloc(n, sizeof *rows);
    if (rows == NULL) {
        ex = fail(c, "INTERNAL", NULL, "out of memory");
        goto out;
    }
    size_t w[NCOL];
    for (int k = 0; k < NCOL; k++)
        w[k] = strlen(head[k]);
    for (size_t i = 0; i < n; i++) {
        const cx_token_info *in = &arr[i];
        char tb[32];
        snprintf(rows[i][C_NAME], sizeof(cell), "%s", in->name);
        snprintf(rows[i][C_PREFIX], sizeof(cell), "%s", in->prefix);
        cx_scopes_format(in->scopes, rows[i][C_SCOPES], sizeof(cell));
        snprintf(rows[i][C_CREATED], sizeof(cell), "%s",
                 cx_cli_human_time(in->created_at, "-", tb));
        snprintf(rows[i][C_EXPIRES], sizeof(cell), "%s%s",
                 cx_cli_human_time(in->expires_at, "never", tb),
                 in->expires_at != 0 && in->expires_at <= c->now_ms ? " (expired)" : "");
        snprintf(rows[i][C_USED], sizeof(cell), "%s",
                 cx_cli_human_time(in->last_used_at, "never", tb));
        snprintf(rows[i][C_TOTP], sizeof(cell), "%s",
                 in->totp_enabled ? "on" : in->totp_configured ? "pending" : "off");
        for (int k = 0; k < NCOL; k++) {
            size_t l = strlen(rows[i][k]);
            if (l > w[k])
                w[k] = l;
        }
    }
    for (int k = 0; k < NCOL; k++)
        printf("%-*s%s", k == NCOL - 1 ? 0 : (int)w[k], head[k], k == NCOL - 1 ? "\n" : "  ");
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < NCOL; k++)
            printf("%-*s%s", k == NCOL - 1 ? 0 : (int)w[k], rows[i][k],
                   k == NCOL - 1 ? "\n" : "  ");
    printf("(times in UTC)\n");
    free(rows);
out:
    free(arr);
    return ex;
}

static void print_secret_warning(const char *name)
{
    printf("Store it now: this is the only time it is shown, and it cannot be recovered.\n"
           "If it is lost, '%s rotate %s' makes a new one.\n",
           PROG, name);
}

static int do_create(cli *c, const char *name)
{
    unsigned scopes = c->scope_bits;
    int64_t expires = c->expires_ms;
    char token[65] = "";
    int ex;
    if (begin_change(c) != CX_OK)
        return CX_CORE_AUTH_EXIT_FAILED;
    int rc = cx_tokens_create(c->t, name, scopes, expires, c->now_ms, token);
    rc = finish_change(c, rc, "token.create", name);
    if (rc != CX_OK) {
        ex = fail_rc(c, rc, name);
        goto out;
    }
    char prefix[9];
    snprintf(prefix, sizeof prefix, "%.8s", token);
    if (c->json) {
        json_t *tok = json_string(token);
        json_t *o = tok ? json_pack("{s:s,s:O,s:s,s:o,s:o}", "name", name, "token", tok, "prefix",
                                    prefix, "scopes", cx_scopes_to_json(scopes), "expiresAt",
                                    cx_cli_json_time(expires))
                        : NULL;
        ex = o ? cx_cli_emit_json(PROG, o) : fail_unshown(c, name);
        cx_cli_wipe_json_string(tok);
        json_decref(tok);
        goto out;
    }
    char sb[160], tb[32];
    printf("Created token \"%s\"\n  scopes:  %s\n  expires: %s%s\n\n  %s\n\n", name,
           cx_scopes_format(scopes, sb, sizeof sb), cx_cli_human_time(expires, "never", tb),
           expires ? " UTC" : "", token);
    print_secret_warning(name);
    ex = CX_CORE_AUTH_EXIT_OK;
out:
    sodium_memzero(token, sizeof token);
    return ex;
}

static int do_rotate(cli *c, const char *name)
{
    char token[65] = "";
    int ex;
    if (begin_change(c) != CX_OK)
        return CX_CORE_AUTH_EXIT_FAILED;
    int rc = cx_tokens_rotate(c->t, name, c->now_ms, token);
    rc = finish_change(c, rc, "token.rotate", name);
    if (rc != CX_OK) {
        ex = fail_rc(c, rc, name);
        goto out;
    }
    char prefix[9];
    snprintf(prefix, sizeof prefix, "%.8s", token);
    if (c->json) {
        json_t *tok = json_string(token);
        json_t *o = tok ? json_pack("{s:s,s:O,s:s}", "name", name, "token", tok, "prefix", prefix)
                        : NULL;
        ex = o ? cx_cli_emit_json(PROG, o) : fail_unshown(c, name);
        cx_cli_wipe_json_string(tok);
        json_decref(tok);
        goto out;
    }
    printf("Rotated token \"%s\": the old value no longer works.\n\n  %s\n\n", name, token);
    print_secret_warning(name);
    ex = CX_CORE_AUTH_EXIT_OK;
out:
    sodium_memzero(token, sizeof token);
    return ex;
}

static int do_revoke(cli *c, const char *name)
{
    if (begin_change(c) != CX_OK)
        return CX_CORE_AUTH_EXIT_FAILED;
    int rc = cx_tokens_revoke(c->t, name);
    rc = finish_change(c, rc, "token.revoke", name);
    if (rc != CX_OK)
        return fail_rc(c, rc, name);
    if (c->json)
        return cx_cli_emit_json(PROG, json_pack("{s:s,s:b}", "name", name, "revoked", 1));
    printf("Revoked token \"%s\": it can no longer authenticate.\n", name);
    return CX_CORE_AUTH_EXIT_OK;
}

static int do_totp_setup(cli *c, const char *name)
{
    char secret[CX_TOKENS_TOTP_B32_SIZE] = "";
    char *uri = NULL, *qr = NULL;
    int ex;
    if (begin_change(c) != CX_OK)
        return CX_CORE_AUTH_EXIT_FAILED;
    int rc = cx_tokens_totp_setup(c->t, name, secret);
    rc = finish_change(c, rc, "totp.setup", name);
    if (rc != CX_OK) {
        ex = fail_rc(c, rc, name);
        goto out;
    }
    char host[256] = "";
    if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0')
        snprintf(host, sizeof host, "condrix-core");
    char account[CX_TOKEN_NAME_MAX_CHARS + 1 + sizeof host];
    snprintf(account, sizeof account, "%s@%s", name, host);
    uri = cx_totp_uri(TOTP_ISSUER, account, secret);
    if (uri == NULL) {
        /* The secret is stored; the operator can still type it in by hand. */
        ex = fail(c, "INTERNAL", "run 'totp setup' again", "out of memory making the URI");
        goto out;
    }
    if (c->json) {
        json_t *s = json_string(secret), *u = json_string(uri);
        json_t *o = s && u ? json_pack("{s:s,s:O,s:O}", "name", name, "secret", s, "otpauthUri", u)
                           : NULL;
        ex = cx_cli_emit_json(PROG, o);
        cx_cli_wipe_json_string(s);
        cx_cli_wipe_json_string(u);
        json_decref(s);
        json_decref(u);
        goto out;
    }
    qr = cx_qr_terminal(uri);
    printf("TOTP setup started for token \"%s\" (not active until enabled).\n\n", name);
    if (qr != NULL)
        printf("Scan this QR code with an authenticator app:\n\n%s\n", qr);
    printf("Or enter the secret by hand:\n\n  %s\n\notpauth URI:\n  %s\n\n", secret, uri);
    printf("Then turn it on with the current code:\n  %s totp enable %s CODE\n"
           "The secret is shown only now; keep it somewhere safe as a backup.\n",
           PROG, name);
    ex = CX_CORE_AUTH_EXIT_OK;
out:
    sodium_memzero(secret, sizeof secret);
    if (uri != NULL) {
        sodium_memzero(uri, strlen(uri));
        free(uri);
    }
    if (qr != NULL) {
        sodium_memzero(qr, strlen(qr));
        free(qr);
    }
    return ex;
}

static int do_totp_enable(cli *c, const char *name, const char *code)
{
    if (begin_change(c) != CX_OK)
        return CX_CORE_AUTH_EXIT_FAILED;
    int rc = cx_tokens_totp_enable(c->t, name, code, c->now_ms / 1000);
    rc = finish_change(c, rc, "totp.enable", name);
    if (rc == CX_E_INVAL) {
        char hint[160];
        snprintf(hint, sizeof hint, "start with '%s totp setup %s'", PROG, name);
        return fail(c, "INVALID_ARGUMENT", hint, "no TOTP setup is pending for token \"%s\"", name);
    }
    if (rc != CX_OK)
        return fail_rc(c, rc, name);
    if (c->json)
        return cx_cli_emit_json(PROG, json_pack("{s:s,s:b}", "name", name, "enabled", 1));
    printf("TOTP enabled for token \"%s\": signing in with it now also needs a code.\n", name);
    return CX_CORE_AUTH_EXIT_OK;
}

static int do_totp_disable(cli *c, const char *name)
{
    if (begin_change(c) != CX_OK)
        return CX_CORE_AUTH_EXIT_FAILED;
    int rc = cx_tokens_totp_disable(c->t, name);
    rc = finish_change(c, rc, "totp.disable", name);
    if (rc != CX_OK)
        return fail_rc(c, rc, name);
    if (c->json)
        return cx_cli_emit_json(PROG, json_pack("{s:s,s:b}", "name", name, "disabled", 1));
    printf("TOTP disabled for token \"%s\".\n", name);
    return CX_CORE_AUTH_EXIT_OK;
}

static int do_totp_status(cli *c, const char *name)
{
    bool configured = false, enabled = false;
    int rc = cx_tokens_totp_status(c->t, name, &configured, &enabled);
    if (rc != CX_OK)
        return fail_rc(c, rc, name);
    if (c->json)
        return cx_cli_emit_json(PROG, json_pack("{s:s,s:b,s:b}", "name", name, "configured",
                                                configured, "enabled", enabled));
    printf("Token \"%s\": TOTP %s\n", name,
           enabled ? "enabled" : configured ? "set up, waiting for 'totp enable'" : "not set up");
    return CX_CORE_AUTH_EXIT_OK;
}

/* ---- dispatch ---- */

static bool wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            return false;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return true;
    }
    return false;
}

int cx_core_auth_cli(int argc, char **argv, const char *db_path)
{
    cli c = {0};
    const char *words[MAX_POSITIONAL + 2];
    int nwords = 0;
    bool only_positional = false;
    const char *data_dir = NULL;
    char dir_db[4096];
    usage_json = cx_cli_wants_json(argc, argv);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool missing = false;
        if (!only_positional && strcmp(a, "--") == 0) {
            only_positional = true;
        } else if (!only_positional && strcmp(a, "--json") == 0) {
            c.json = true;
        } else if (!only_positional && (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)) {
            /* handled below, once the verb is known */
        } else if (!only_positional &&
                   cx_cli_take_value(argc, argv, &i, "--data-dir", &data_dir, &missing)) {
            /* Also accepted after the verb, where people put it. */
            if (missing)
                return usage_error("--data-dir needs a directory");
            snprintf(dir_db, sizeof dir_db, "%s/core.db", data_dir);
            db_path = dir_db;
        } else if (!only_positional &&
                   cx_cli_take_value(argc, argv, &i, "--scopes", &c.scopes, &missing)) {
            if (missing)
                return usage_error("--scopes needs a value (e.g. --scopes read:files,chat:agent)");
        } else if (!only_positional &&
                   cx_cli_take_value(argc, argv, &i, "--expires", &c.expires, &missing)) {
            if (missing)
                return usage_error("--expires needs a value (e.g. --expires 30d)");
        } else if (!only_positional && a[0] == '-' && a[1] != '\0') {
            return usage_error("unknown option '%s'", a);
        } else {
            if (nwords == MAX_POSITIONAL + 2)
                return usage_error("too many arguments");
            words[nwords++] = a;
        }
    }

    bool help = wants_help(argc, argv);
    if (nwords == 0) {
        if (help) {
            cx_core_auth_usage(stdout);
            return CX_CORE_AUTH_EXIT_OK;
        }
        cx_core_auth_usage(stderr);
        return usage_error("a verb is needed (list, create, revoke, rotate, totp ...)");
    }

    /* The verb is one word, or "totp" and a second word. */
    const verb *v = NULL;
    int used = 0;
    for (size_t k = 0; k < N_VERBS && v == NULL; k++) {
        const char *name = verbs[k].name;
        const char *sp = strchr(name, ' ');
        if (sp == NULL) {
            if (strcmp(words[0], name) == 0) {
                v = &verbs[k];
                used = 1;
            }
        } else if (nwords >= 2 && strlen(words[0]) == (size_t)(sp - name) &&
                   strncmp(words[0], name, (size_t)(sp - name)) == 0 &&
                   strcmp(words[1], sp + 1) == 0) {
            v = &verbs[k];
            used = 2;
        }
    }
    if (v == NULL) {
        if (strcmp(words[0], "totp") == 0) {
            if (help) {
                for (size_t k = 0; k < N_VERBS; k++)
                    if (strncmp(verbs[k].name, "totp ", 5) == 0)
                        print_verb(stdout, &verbs[k]);
                return CX_CORE_AUTH_EXIT_OK;
            }
            return usage_error("'totp' needs one of: setup, enable, disable, status");
        }
        return usage_error("unknown command '%s'", words[0]);
    }
    if (help) {
        printf("Usage:\n");
        print_verb(stdout, v);
        return CX_CORE_AUTH_EXIT_OK;
    }
    for (int k = used; k < nwords; k++)
        c.pos[c.npos++] = words[k];
    if (c.npos != v->nargs)
        return usage_error("'%s' takes %s%s", v->name, v->nargs ? "" : "no arguments",
                           v->nargs ? v->args : "");
    if ((c.scopes != NULL || c.expires != NULL) && strcmp(v->name, "create") != 0)
        return usage_error("--scopes and --expires go with 'create' only");
    /* A name this store can never hold is a typo, whatever the verb. */
    if (v->nargs > 0 && !cx_tokens_name_valid(c.pos[0]))
        return usage_error("invalid token name '%s' (1-64 of letters, digits, '.', '_', '-', "
                           "starting with a letter or digit)",
                           c.pos[0]);
    c.now_ms = cx_clock_now_ms();
    c.scope_bits = CX_SCOPE_ALL;
    if (c.scopes != NULL && cx_scopes_parse(c.scopes, &c.scope_bits) != CX_OK)
        return usage_error("unknown scope in '%s' (known: read:files write:files exec:terminal "
                           "admin:workspace admin:project admin:core chat:agent chat:maestro, "
                           "or all / none)",
                           c.scopes);
    if (c.expires != NULL) {
        int prc = parse_expires(c.expires, c.now_ms, &c.expires_ms);
        if (prc == CX_E_EXPIRED)
            return usage_error("the expiry '%s' is already in the past", c.expires);
        if (prc != CX_OK)
            return usage_error("cannot read the expiry '%s' (try 30d, 12h, 2026-12-31 or never)",
                               c.expires);
    }
    if (strcmp(v->name, "totp enable") == 0 &&
        (strlen(c.pos[1]) != CX_TOTP_DIGITS || !all_digits(c.pos[1], CX_TOTP_DIGITS)))
        return usage_error("the code must be exactly %d digits", CX_TOTP_DIGITS);
    if (db_path == NULL)
        return usage_error("no database path");

    /* A mistyped --data-dir must not quietly make an empty Core database: only `create`
     * (a token made before the first start) may create it. */
    struct stat st;
    if (strcmp(v->name, "create") != 0 && stat(db_path, &st) != 0) {
        fail(&c, "NOT_FOUND",
             "check --data-dir / CONDRIX_HOME; the Core makes it at its first start, and only "
             "`auth create` may run before that",
             "no Core database at %s", db_path);
        return CX_CORE_AUTH_EXIT_FAILED;
    }
    if (open_store(&c, db_path) != CX_OK)
        return CX_CORE_AUTH_EXIT_FAILED;
    int ex;
    if (strcmp(v->name, "list") == 0)
        ex = do_list(&c);
    else if (strcmp(v->name, "create") == 0)
        ex = do_create(&c, c.pos[0]);
    else if (strcmp(v->name, "revoke") == 0)
        ex = do_revoke(&c, c.pos[0]);
    else if (strcmp(v->name, "rotate") == 0)
        ex = do_rotate(&c, c.pos[0]);
    else if (strcmp(v->name, "totp setup") == 0)
        ex = do_totp_setup(&c, c.pos[0]);
    else if (strcmp(v->name, "totp enable") == 0)
        ex = do_totp_enable(&c, c.pos[0], c.pos[1]);
    else if (strcmp(v->name, "totp disable") == 0)
        ex = do_totp_disable(&c, c.pos[0]);
    else
        ex = do_totp_status(&c, c.pos[0]);
    fflush(stdout);
    cx_tokens_close(c.t);
    return ex;
}
