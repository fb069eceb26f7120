/* `condrix`: the command-line client. It signs in to Maestro (the session token is kept
 * in cli.json, 0600), lists and manages Cores, users, sessions and pairing codes, and can
 * talk to a single Core directly with its access token. Every command is one or two
 * requests over a WebSocket; output is for people unless --json asks for one JSON
 * object, and the exit status says what kind of failure happened. */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli.h"
#include "condrix/clock.h"
#include "condrix/config.h"
#include "condrix/error.h"
#include "condrix/totp.h"
#include "condrix/version.h"
#include "condrix/wsclient.h"

#define PROG "condrix"
#define MAX_POS 8

/* ---- options ---- */

enum opt_id {
    OPT_JSON,
    OPT_HELP,
    OPT_VERSION,
    OPT_TIMEOUT,
    OPT_YES,
    OPT_PASSWORD_STDIN,
    OPT_GENERATE,
    OPT_URL,
    OPT_TOKEN,
    OPT_TOTP,
    OPT_CA,
    OPT_USERNAME,
    OPT_ROLE,
    OPT_USES,
    OPT_TTL,
    OPT_LOCAL,
    N_OPT
};
#define BIT(id) (1u << (id))
#define GLOBAL_OPTS (BIT(OPT_JSON) | BIT(OPT_HELP) | BIT(OPT_TIMEOUT))

static const struct optdef {
    const char *name; /* long form, without "--" */
    char short_name;  /* 0 when none */
    bool has_arg;
} optdefs[N_OPT] = {
    [OPT_JSON] = {"json", 0, false},
    [OPT_HELP] = {"help", 'h', false},
    [OPT_VERSION] = {"version", 'V', false},
    [OPT_TIMEOUT] = {"timeout", 0, true},
    [OPT_YES] = {"yes", 'y', false},
    [OPT_PASSWORD_STDIN] = {"password-stdin", 0, false},
    [OPT_GENERATE] = {"generate", 0, false},
    [OPT_URL] = {"url", 0, true},
    [OPT_TOKEN] = {"token", 0, true},
    [OPT_TOTP] = {"totp", 0, true},
    [OPT_CA] = {"ca", 0, true},
    [OPT_USERNAME] = {"username", 'u', true},
    [OPT_ROLE] = {"role", 0, true},
    [OPT_USES] = {"uses", 0, true},
    [OPT_TTL] = {"ttl", 0, true},
    [OPT_LOCAL] = {"local", 0, false},
};

typedef struct opts {
    unsigned given;           /* BIT(opt_id) for each option present */
    const char *val[N_OPT];   /* values of options that take one */
    const char *pos[MAX_POS]; /* positional words, command words included */
    int npos;
} opts;

static bool has(const opts *o, enum opt_id id)
{
    return (o->given & BIT(id)) != 0;
}

/* ---- the state of one run ---- */

typedef struct ctx {
    opts *o;
    const struct cmd *cmd; /* the command being run */
    const char **args;     /* positional arguments after the command words */
    int nargs;
    bool json;           /* --json */
    uint32_t timeout_ms; /* per connection attempt and per answer */
    cli_err err;         /* why it failed, printed by main */
    cli_session sess;    /* cli.json, for Maestro commands */
    bool have_sess;
    cli_conn *conn; /* the open connection, NULL when none */
    json_t *me;     /* maestro/auth payload: {authenticated, user} */
    int64_t now_ms; /* wall clock at start */
} ctx;

typedef struct cmd {
    const char *name;       /* command words, space separated */
    int min_args, max_args; /* positional arguments after the words */
    unsigned opts;          /* options allowed besides the global ones */
    const char *usage;      /* arguments for the usage line */
    const char *help;       /* one line */
    int (*run)(ctx *x);
} cmd;

static int fail(ctx *x, int exit_code, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(ctx *x, int exit_code, const char *code, const char *fmt, ...)
{
    x->err.exit = exit_code;
    snprintf(x->err.code, sizeof x->err.code, "%s", code);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->err.message, sizeof x->err.message, fmt, ap);
    va_end(ap);
    return exit_code;
}

static int fail_err(ctx *x, const cli_err *e)
{
    x->err = *e;
    return e->exit;
}

/* ---- output ---- */

static void emit_json(json_t *obj)
{
    char *s = json_dumps(obj, JSON_COMPACT | JSON_ENSURE_ASCII);
    if (s) {
        printf("%s\n", s);
        free(s);
    } else {
        printf("{}\n");
    }
}

/* Text from the server, safe for a terminal: control bytes (escape sequences could
 * rewrite the screen) become '?'. Returns a static buffer for one use in a printf. */
static const char *safe(const char *s, char *buf, size_t size)
{
    size_t n = 0;
    if (!s)
        s = "";
    for (; *s && n + 1 < size; s++) {
        unsigned char ch = (unsigned char)*s;
        buf[n++] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
    }
    buf[n] = '\0';
    return buf;
}

static const char *jstr(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static bool jtrue(const json_t *o, const char *key)
{
    return json_is_true(json_object_get(o, key));
}

static void fmt_when(int64_t ms, char *out, size_t size)
{
    if (ms <= 0) {
        snprintf(out, size, "never");
        return;
    }
    char ts[25];
    cx_msg_timestamp(ms, ts);
    /* "2026-11-22T10:00:00.000Z" -> "2026-11-22 10:00 UTC" */
    snprintf(out, size, "%.10s %.5s UTC", ts, ts + 11);
}

/* A table: column widths from the cells (bytes; names are mostly ASCII). */
typedef struct table {
    int ncol;
    const char *head[8];
    char *cells[256][8]; /* at most 256 rows shown, each cell malloc'd */
    size_t nrow;
    size_t dropped; /* rows beyond the cap */
} table;

static void table_add(table *t, ...)
{
    if (t->nrow >= sizeof t->cells / sizeof *t->cells) {
        t->dropped++;
        return;
    }
    va_list ap;
    va_start(ap, t);
    for (int i = 0; i < t->ncol; i++) {
        const char *s = va_arg(ap, const char *);
        char buf[256];
        t->cells[t->nrow][i] = strdup(safe(s ? s : "-", buf, sizeof buf));
    }
    va_end(ap);
    t->nrow++;
}

static void table_print(table *t)
{
    size_t w[8];
    for (int i = 0; i < t->ncol; i++)
        w[i] = strlen(t->head[i]);
    for (size_t r = 0; r < t->nrow; r++)
        for (int i = 0; i < t->ncol; i++)
            if (t->cells[r][i] && strlen(t->cells[r][i]) > w[i])
                w[i] = strlen(t->cells[r][i]);
    for (int i = 0; i < t->ncol; i++)
        printf("%-*s%s", i + 1 < t->ncol ? (int)w[i] : 0, t->head[i],
               i + 1 < t->ncol ? "  " : "\n");
    for (size_t r = 0; r < t->nrow; r++) {
        for (int i = 0; i < t->ncol; i++) {
            const char *c = t->cells[r][i] ? t->cells[r][i] : "?";
            printf("%-*s%s", i + 1 < t->ncol ? (int)w[i] : 0, c, i + 1 < t->ncol ? "  " : "\n");
            free(t->cells[r][i]);
        }
    }
    if (t->dropped)
        printf("... and %zu more (use --json for all)\n", t->dropped);
}

/* ---- talking to servers ---- */

static bool is_code(const cx_msg *m, const char *code)
{
    const char *c = m->error ? jstr(m->error, "code") : NULL;
    return c && strcmp(c, code) == 0;
}

/* A failed response as the run's error. */
static int server_fail(ctx *x, const cx_msg *m, const char *url)
{
    const char *code = m->error ? jstr(m->error, "code") : NULL;
    const char *message = m->error ? jstr(m->error, "message") : NULL;
    long retry = -1;
    json_t *details = m->error ? json_object_get(m->error, "details") : NULL;
    json_t *ra = json_object_get(details, "retryAfter");
    if (!ra)
        ra = json_object_get(m->payload, "retryAfter");
    if (json_is_integer(ra))
        retry = (long)json_integer_value(ra);
    x->err.exit = cli_exit_for_code(code);
    snprintf(x->err.code, sizeof x->err.code, "%s", code ? code : "ERROR");
    char sm[256];
    cli_explain(code, message ? safe(message, sm, sizeof sm) : NULL, retry, url, x->err.message,
                sizeof x->err.message);
    return x->err.exit;
}

static int connect_to(ctx *x, const char *url, const char *ca)
{
    cli_err e;
    if (cli_conn_open(url, ca, x->timeout_ms, &x->conn, &e) != CX_OK)
        return fail_err(x, &e);
    return CLI_EXIT_OK;
}

/* One request on the open connection. On 0, *out (may be NULL) holds the payload
 * (a new reference); otherwise x->err says why. url is for the advice in errors. */
static int request(ctx *x, const char *ns, const char *action, json_t *payload, json_t **out)
{
    cx_msg m;
    cli_err e;
    if (out)
        *out = NULL;
    if (cli_conn_request(x->conn, ns, action, payload, &m, &e) != CX_OK) {
        if (e.exit == CLI_EXIT_SESSION && x->have_sess)
            return fail(x, CLI_EXIT_SESSION, e.code,
                        "session ended by the server: run `condrix login %s`", x->sess.url);
        return fail_err(x, &e);
    }
    int rc = CLI_EXIT_OK;
    if (m.success != 1)
        rc = server_fail(x, &m, x->have_sess ? x->sess.url : NULL);
    else if (out)
        *out = json_incref(m.payload);
    cx_msg_free(&m);
    return rc;
}

/* Load cli.json, connect, and authenticate the session: the start of every Maestro
 * command. */
static int maestro_begin(ctx *x)
{
    cli_err e;
    if (cli_session_load(&x->sess, &e) != CX_OK)
        return fail_err(x, &e);
    x->have_sess = true;
    if (x->sess.expires_at) {
        int64_t exp;
        if (cx_clock_parse_iso8601(x->sess.expires_at, &exp) == CX_OK && exp <= x->now_ms)
            return fail(x, CLI_EXIT_SESSION, "SESSION_EXPIRED",
                        "session expired: run `condrix login %s`", x->sess.url);
    }
    int rc = connect_to(x, x->sess.url, x->sess.ca);
    if (rc)
        return rc;
    json_t *p = json_pack("{s:s}", "sessionToken", x->sess.token);
    if (!p)
        return fail(x, CLI_EXIT_NET, "INTERNAL", "out of memory");
    cx_msg m;
    if (cli_conn_request(x->conn, "maestro", "auth", p, &m, &e) != CX_OK)
        return fail_err(x, &e);
    if (m.success != 1) {
        rc = server_fail(x, &m, x->sess.url);
        cx_msg_free(&m);
        return rc;
    }
    x->me = json_incref(m.payload);
    cx_msg_free(&m);
    return CLI_EXIT_OK;
}

/* A signed-in Maestro request. */
static int mcall(ctx *x, const char *action, json_t *payload, json_t **out)
{
    return request(x, "maestro", action, payload, out);
}

/* Print the payload for --json, or nothing. true when printed. */
static bool json_out(ctx *x, json_t *payload)
{
    if (!x->json)
        return false;
    json_t *empty = payload ? NULL : json_object();
    emit_json(payload ? payload : empty);
    json_decref(empty);
    return true;
}

/* ---- reading secrets ---- */

/* Read a secret: from the terminal with echo off, or a line of stdin. Empty answers
 * are refused unless allow_empty. */
static int read_secret(ctx *x, const char *prompt, char *buf, size_t size, bool allow_empty)
{
    int rc = cli_prompt(prompt, true, buf, size);
    if (rc == CX_E_TOOBIG)
        return fail(x, CLI_EXIT_USAGE, "USAGE", "the input is too long");
    if (rc == CX_E_NOTFOUND && allow_empty) {
        buf[0] = '\0';
        return CLI_EXIT_OK;
    }
    if (rc != CX_OK) {
        /* "Current password: " -> "current password" */
        char what[64];
        size_t n = strcspn(prompt, ":(");
        snprintf(what, sizeof what, "%.*s", (int)(n > 0 && prompt[n - 1] == ' ' ? n - 1 : n),
                 prompt);
        if (what[0] >= 'A' && what[0] <= 'Z')
            what[0] = (char)(what[0] - 'A' + 'a');
        return fail(x, CLI_EXIT_USAGE, "USAGE",
                    "no %s given: type it at the terminal or send it as a line on stdin", what);
    }
    if (!buf[0] && !allow_empty)
        return fail(x, CLI_EXIT_USAGE, "USAGE", "nothing entered");
    return CLI_EXIT_OK;
}

/* A new password, typed twice on a terminal; one line from a pipe. Empty is allowed
 * only when allow_empty (the server then generates one). */
static int read_new_password(ctx *x, const char *prompt, char *buf, size_t size, bool allow_empty)
{
    int rc = read_secret(x, prompt, buf, size, allow_empty);
    if (rc || !buf[0] || !cli_stdin_tty())
        return rc;
    char again[CLI_SECRET_MAX];
    rc = read_secret(x, "Repeat: ", again, sizeof again, true);
    if (!rc && sodium_memcmp(again, buf, sizeof again < size ? sizeof again : size) != 0)
        rc = fail(x, CLI_EXIT_USAGE, "USAGE", "the passwords do not match");
    sodium_memzero(again, sizeof again);
    if (rc)
        sodium_memzero(buf, size);
    return rc;
}

static bool six_digits(const char *s)
{
    if (!s || strlen(s) != 6)
        return false;
    for (int i = 0; i < 6; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

/* Ask for a TOTP code (visible: it is good for seconds and only once). */
static int read_totp(ctx *x, char out[16])
{
    int rc = cli_prompt("TOTP code: ", false, out, 16);
    if (rc == CX_E_NOTFOUND)
        return fail(
            x, CLI_EXIT_REFUSED, "TOTP_REQUIRED",
            "a TOTP code is required: give it with --totp CODE or on the next line of stdin");
    if (rc != CX_OK || !six_digits(out))
        return fail(x, CLI_EXIT_USAGE, "USAGE", "a TOTP code is 6 digits");
    return CLI_EXIT_OK;
}

/* ---- login, logout, whoami ---- */

static int check_url(ctx *x, const char *url)
{
    bool tls;
    char host[256], path[512];
    int port;
    if (cx_wsc_parse_url(url, &tls, host, sizeof host, &port, path, sizeof path) != CX_OK)
        return fail(x, CLI_EXIT_USAGE, "USAGE",
                    "%s is not a server URL: use ws://host:port or wss://host", url);
    return CLI_EXIT_OK;
}

static int resolve_ca(ctx *x, const char *ca, char **out)
{
    *out = NULL;
    if (!ca)
        return CLI_EXIT_OK;
    char *p = realpath(ca, NULL);
    if (!p || access(p, R_OK) != 0) {
        free(p);
        return fail(x, CLI_EXIT_USAGE, "USAGE", "--ca %s: %s", ca, strerror(errno));
    }
    *out = p;
    return CLI_EXIT_OK;
}

static bool totp_asked(const cx_msg *m)
{
    return is_code(m, "TOTP_REQUIRED") || jtrue(m->payload, "requiresTotp") ||
           jtrue(m->payload, "totpRequired");
}

static int cmd_login(ctx *x)
{
    const char *url = x->args[0];
    char username[256] = "", password[CLI_SECRET_MAX] = "", code[16] = "";
    char *ca = NULL;
    json_t *payload = NULL;
    cx_msg m = {0};
    bool have_msg = false;
    int rc = check_url(x, url);
    if (rc)
        goto out;
    if ((rc = resolve_ca(x, x->o->val[OPT_CA], &ca)))
        goto out;
    if (has(x->o, OPT_TOTP)) {
        if (!six_digits(x->o->val[OPT_TOTP])) {
            rc = fail(x, CLI_EXIT_USAGE, "USAGE", "--totp takes the 6-digit code");
            goto out;
        }
        snprintf(code, sizeof code, "%s", x->o->val[OPT_TOTP]);
    }
    if (has(x->o, OPT_USERNAME)) {
        snprintf(username, sizeof username, "%s", x->o->val[OPT_USERNAME]);
    } else {
        int r = cli_prompt("Username: ", false, username, sizeof username);
        if (r != CX_OK || !username[0]) {
            rc = fail(x, CLI_EXIT_USAGE, "USAGE", "no username: give --username NAME");
            goto out;
        }
    }
    if ((rc = read_secret(x, "Password: ", password, sizeof password, false)))
        goto out;
    if ((rc = connect_to(x, url, ca)))
        goto out;

    for (int attempt = 0; attempt < 2; attempt++) {
        payload = json_pack("{s:s, s:s}", "username", username, "password", password);
        if (!payload || (code[0] && json_object_set_new(payload, "totpCode", json_string(code)))) {
            rc = fail(x, CLI_EXIT_NET, "INTERNAL", "out of memory");
            goto out;
        }
        cli_err e;
        int r = cli_conn_request(x->conn, "maestro", "login", payload, &m, &e);
        payload = NULL;
        if (r != CX_OK) {
            rc = fail_err(x, &e);
            goto out;
        }
        have_msg = true;
        if (m.success == 1 || !totp_asked(&m) || code[0])
            break;
        /* The password was right; the account wants its second factor. */
        cx_msg_free(&m);
        have_msg = false;
        if ((rc = read_totp(x, code)))
            goto out;
        if (!cli_conn_is_open(x->conn)) {
            cli_conn_close(x->conn);
            x->conn = NULL;
            if ((rc = connect_to(x, url, ca)))
                goto out;
        }
    }
    if (m.success != 1) {
        rc = server_fail(x, &m, url);
        goto out;
    }
    const char *token = jstr(m.payload, "sessionToken");
    if (!token || !token[0]) {
        rc = fail(x, CLI_EXIT_REFUSED, "INVALID_MESSAGE",
                  "the server's answer has no session token");
        goto out;
    }
    json_t *user = json_object_get(m.payload, "user");
    const char *uname = jstr(user, "username");
    json_t *exp = json_object_get(m.payload, "expiresAt");
    char expbuf[32] = "";
    if (json_is_string(exp))
        snprintf(expbuf, sizeof expbuf, "%s", json_string_value(exp));
    else if (cli_time_ms(exp) > 0)
        cx_msg_timestamp(cli_time_ms(exp), expbuf);
    cli_session s = {
        .url = (char *)url,
        .username = (char *)(uname ? uname : username),
        .token = (char *)token,
        .expires_at = expbuf[0] ? expbuf : NULL,
        .ca = ca,
    };
    cli_err e;
    if (cli_session_save(&s, &e) != CX_OK) {
        rc = fail_err(x, &e);
        goto out;
    }
    cli_json_wipe(m.payload, "sessionToken");
    json_object_del(m.payload, "sessionToken");
    if (x->json) {
        json_object_set_new(m.payload, "url", json_string(url));
        emit_json(m.payload);
    } else {
        char b1[128], b2[64];
        fmt_when(cli_time_ms(exp), b2, sizeof b2);
        printf("Signed in to %s as %s (%s). The session lasts until %s.\n", url,
               safe(s.username, b1, sizeof b1), jstr(user, "role") ? jstr(user, "role") : "?", b2);
    }
    rc = CLI_EXIT_OK;
out:
    if (have_msg) {
        cli_json_wipe(m.payload, "sessionToken");
        cx_msg_free(&m);
    }
    json_decref(payload);
    sodium_memzero(password, sizeof password);
    sodium_memzero(code, sizeof code);
    free(ca);
    return rc;
}

static int cmd_logout(ctx *x)
{
    if (has(x->o, OPT_LOCAL)) {
        cli_err e;
        if (cli_session_remove(&e) != CX_OK)
            return fail_err(x, &e);
        json_t *p = json_pack("{s:b, s:b}", "loggedOut", 1, "local", 1);
        if (!json_out(x, p))
            printf("Forgotten here. The session itself stays valid on the server until it\n"
                   "expires or is revoked (sessions revoke, from any signed-in client).\n");
        json_decref(p);
        return CLI_EXIT_OK;
    }
    int rc = maestro_begin(x);
    if (rc == CLI_EXIT_SESSION && x->have_sess) {
        /* The server already ended it: only the local file is left to go. */
        cli_err e;
        if (cli_session_remove(&e) != CX_OK)
            return fail_err(x, &e);
        json_t *p = json_pack("{s:b, s:b}", "loggedOut", 1, "alreadyEnded", 1);
        if (!json_out(x, p))
            printf("Signed out (the session had already ended).\n");
        json_decref(p);
        return CLI_EXIT_OK;
    }
    if (rc == CLI_EXIT_NET)
        snprintf(x->err.message + strlen(x->err.message),
                 sizeof x->err.message - strlen(x->err.message),
                 "; still signed in: try again when the server is reachable, or forget the "
                 "session here with `condrix logout --local`");
    if (rc)
        return rc;
    json_t *p = NULL;
    if ((rc = mcall(x, "logout", NULL, &p)))
        return rc;
    cli_err e;
    if (cli_session_remove(&e) != CX_OK) {
        json_decref(p);
        return fail_err(x, &e);
    }
    if (!json_out(x, p))
        printf("Signed out of %s.\n", x->sess.url);
    json_decref(p);
    return CLI_EXIT_OK;
}

static int cmd_whoami(ctx *x)
{
    int rc = maestro_begin(x);
    if (rc)
        return rc;
    json_t *user = json_object_get(x->me, "user");
    if (x->json) {
        json_t *out = json_deep_copy(x->me);
        if (out) {
            json_object_set_new(out, "url", json_string(x->sess.url));
            if (x->sess.expires_at)
                json_object_set_new(out, "expiresAt", json_string(x->sess.expires_at));
        }
        emit_json(out);
        json_decref(out);
        return CLI_EXIT_OK;
    }
    char b1[128], b2[64], b3[64];
    const char *name = jstr(user, "username") ? jstr(user, "username") : x->sess.username;
    printf("%s (%s) on %s\n", safe(name, b1, sizeof b1),
           safe(jstr(user, "role") ? jstr(user, "role") : "?", b2, sizeof b2), x->sess.url);
    if (x->sess.expires_at) {
        int64_t ms = 0;
        (void)cx_clock_parse_iso8601(x->sess.expires_at, &ms);
        fmt_when(ms, b3, sizeof b3);
        printf("Session valid until %s\n", b3);
    }
    return CLI_EXIT_OK;
}

/* ---- Cores ---- */

/* cores.list; *cores borrows from *payload (decref that). */
static int list_cores(ctx *x, json_t **payload, json_t **cores)
{
    int rc = mcall(x, "cores.list", NULL, payload);
    if (rc)
        return rc;
    *cores = cli_payload_array(*payload, "cores");
    if (!*cores) {
        json_decref(*payload);
        *payload = NULL;
        return fail(x, CLI_EXIT_REFUSED, "INVALID_MESSAGE", "the server's cores.list has no list");
    }
    return CLI_EXIT_OK;
}

/* The Core the user named; *core borrows from *payload (decref that). */
static int find_core(ctx *x, const char *query, json_t **payload, json_t **core)
{
    json_t *cores;
    int rc = list_cores(x, payload, &cores);
    if (rc)
        return rc;
    long i = cli_find_core(cores, query);
    char b[160];
    if (i == -2 || i == -1) {
        json_decref(*payload);
        *payload = NULL;
        if (i == -2)
            return fail(x, CLI_EXIT_USAGE, "AMBIGUOUS",
                        "several Cores are named \"%s\": give the ID (see `condrix cores`)",
                        safe(query, b, sizeof b));
        return fail(x, CLI_EXIT_REFUSED, "NOT_FOUND",
                    "no Core \"%s\": see `condrix cores` for IDs and names",
                    safe(query, b, sizeof b));
    }
    *core = json_array_get(cores, (size_t)i);
    return CLI_EXIT_OK;
}

static int cmd_cores(ctx *x)
{
    int rc = maestro_begin(x);
    if (rc)
        return rc;
    json_t *p = NULL, *cores = NULL;
    if ((rc = list_cores(x, &p, &cores)))
        return rc;
    if (!json_out(x, p)) {
        if (json_array_size(cores) == 0) {
            printf("No Cores to show. An admin attaches one with `condrix pair`; a plain user\n"
                   "sees only the Cores an admin granted to them.\n");
        } else {
            table t = {.ncol = 5, .head = {"ID", "NAME", "STATUS", "LAST-SEEN", "PREFIX"}};
            size_t i;
            json_t *c;
            json_array_foreach(cores, i, c)
            {
                char ago[32];
                bool online = json_is_string(json_object_get(c, "status")) &&
                              strcmp(jstr(c, "status"), "online") == 0;
                if (online)
                    snprintf(ago, sizeof ago, "now");
                else
                    cli_ago(x->now_ms, cli_time_ms(json_object_get(c, "lastSeenAt")), ago,
                            sizeof ago);
                const char *prefix = jstr(c, "tokenPrefix");
                table_add(&t, jstr(c, "id"), jstr(c, "displayName"), jstr(c, "status"), ago,
                          prefix && *prefix ? prefix : "-");
            }
            table_print(&t);
        }
    }
    json_decref(p);
    return CLI_EXIT_OK;
}

static int cmd_cores_rename(ctx *x)
{
    int rc = maestro_begin(x);
    json_t *lp = NULL, *core = NULL, *p = NULL;
    if (rc || (rc = find_core(x, x->args[0], &lp, &core)))
        return rc;
    char old[160], new[160];
    safe(jstr(core, "displayName"), old, sizeof old);
    rc = mcall(x, "cores.rename",
               json_pack("{s:s, s:s}", "id", jstr(core, "id"), "displayName", x->args[1]), &p);
    if (!rc && !json_out(x, p))
        printf("Renamed \"%s\" to \"%s\".\n", old, safe(x->args[1], new, sizeof new));
    json_decref(p);
    json_decref(lp);
    return rc;
}

static int cmd_cores_remove(ctx *x)
{
    int rc = maestro_begin(x);
    json_t *lp = NULL, *core = NULL, *p = NULL;
    if (rc || (rc = find_core(x, x->args[0], &lp, &core)))
        return rc;
    char name[160], q[256];
    safe(jstr(core, "displayName"), name, sizeof name);
    if (!has(x->o, OPT_YES)) {
        snprintf(q, sizeof q,
                 "Remove the Core \"%s\"? It is disconnected and its token stops working.", name);
        if (!cli_stdin_tty()) {
            json_decref(lp);
            return fail(x, CLI_EXIT_USAGE, "USAGE",
                        "add --yes to remove a Core without a question");
        }
        if (!cli_confirm(q)) {
            json_decref(lp);
            return fail(x, CLI_EXIT_USAGE, "CANCELLED", "cancelled; nothing was removed");
        }
    }
    rc = mcall(x, "cores.remove", json_pack("{s:s}", "id", jstr(core, "id")), &p);
    if (!rc && !json_out(x, p))
        printf("Removed \"%s\"; its token no longer works.\n", name);
    json_decref(p);
    json_decref(lp);
    return rc;
}

static int cmd_rotate(ctx *x)
{
    int rc = maestro_begin(x);
    json_t *lp = NULL, *core = NULL, *p = NULL;
    if (rc || (rc = find_core(x, x->args[0], &lp, &core)))
        return rc;
    char name[160];
    safe(jstr(core, "displayName"), name, sizeof name);
    rc = mcall(x, "cores.rotateToken", json_pack("{s:s}", "id", jstr(core, "id")), &p);
    if (!rc && !json_out(x, p)) {
        const char *token = jstr(p, "token");
        if (jtrue(p, "pushed") || !token) {
            printf("Rotated: the new token was pushed to \"%s\", which stored it. Nothing else to "
                   "do.\n",
                   name);
        } else {
            printf("\"%s\" is offline, so its new token could not be pushed.\n"
                   "The new token, shown only this once:\n\n  %s\n\n"
                   "On that machine, restart the Core with it:\n\n"
                   "  CONDRIX_MAESTRO_URL=%s CONDRIX_MAESTRO_TOKEN=<the token> condrix-core\n",
                   name, token, x->sess.url);
        }
    }
    if (p)
        cli_json_wipe(p, "token");
    json_decref(p);
    json_decref(lp);
    return rc;
}

/* ---- pairing ---- */

/* Characters a shell does not treat specially, so the command can be pasted as is. */
static bool shell_plain(const char *s)
{
    for (; *s; s++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                    "-_./:@%+=,",
                    *s))
            return false;
    return true;
}

static int cmd_pair(ctx *x)
{
    long uses = 1;
    int64_t ttl = 0;
    if (has(x->o, OPT_USES) && cx_parse_int(x->o->val[OPT_USES], 1, 1000, &uses) != CX_OK)
        return fail(x, CLI_EXIT_USAGE, "USAGE", "--uses takes a number from 1 to 1000");
    if (has(x->o, OPT_TTL) &&
        (cx_parse_duration(x->o->val[OPT_TTL], &ttl) != CX_OK || ttl < 1 || ttl > 30 * 86400))
        return fail(x, CLI_EXIT_USAGE, "USAGE",
                    "--ttl takes a duration up to 30 days, like 90s, 15m, 2h or 7d");
    int rc = maestro_begin(x);
    if (rc)
        return rc;
    json_t *req = json_pack("{s:I}", "maxUses", (json_int_t)uses);
    if (req && ttl > 0)
        json_object_set_new(req, "ttlSeconds", json_integer((json_int_t)ttl));
    json_t *p = NULL;
    if ((rc = mcall(x, "pairing.create", req, &p)))
        return rc;
    const char *code = jstr(p, "code");
    if (!code) {
        json_decref(p);
        return fail(x, CLI_EXIT_REFUSED, "INVALID_MESSAGE", "the server's answer has no code");
    }
    if (!json_out(x, p)) {
        int64_t exp = cli_time_ms(json_object_get(p, "expiresAt"));
        json_t *mu = json_object_get(p, "maxUses");
        long max_uses = json_is_integer(mu) ? (long)json_integer_value(mu) : uses;
        char when[64], span[64], b[64];
        fmt_when(exp, when, sizeof when);
        cli_span(exp > x->now_ms ? (exp - x->now_ms + 500) / 1000 : 0, span, sizeof span);
        printf("Pairing code (%ld use%s, valid for %s, until %s):\n\n", max_uses,
               max_uses == 1 ? "" : "s", span, when);
        /* Spaced out and boxed, so it reads easily off a screen into another one. */
        char spaced[64] = "";
        size_t n = 0;
        for (const char *c = safe(code, b, sizeof b); *c && n + 3 < sizeof spaced; c++) {
            spaced[n++] = *c;
            spaced[n++] = c[1] ? ' ' : '\0';
        }
        spaced[n] = '\0';
        size_t w = strlen(spaced) + 4;
        printf("    +");
        for (size_t i = 0; i < w; i++)
            putchar('-');
        printf("+\n    |  %s  |\n    +", spaced);
        for (size_t i = 0; i < w; i++)
            putchar('-');
        printf("+\n\nStart the Core on the machine to attach with:\n\n  ");
        const char *url = x->sess.url;
        if (shell_plain(url))
            printf("CONDRIX_MAESTRO_URL=%s", url);
        else
            printf("CONDRIX_MAESTRO_URL='%s'", url);
        printf(" CONDRIX_MAESTRO_TOKEN=%s condrix-core\n\n"
               "It trades the code for a permanent token of its own; the code is then used up.\n",
               b);
    }
    json_decref(p);
    return CLI_EXIT_OK;
}

static int cmd_pair_list(ctx *x)
{
    int rc = maestro_begin(x);
    json_t *p = NULL;
    if (rc || (rc = mcall(x, "pairing.list", NULL, &p)))
        return rc;
    if (!json_out(x, p)) {
        json_t *arr = cli_payload_array(p, "codes");
        if (!arr)
            arr = cli_payload_array(p, "pairings");
        if (json_array_size(arr) == 0) {
            printf("No pairing codes.\n");
        } else {
            table t = {.ncol = 5, .head = {"ID", "CREATED-BY", "CREATED", "EXPIRES", "USES"}};
            size_t i;
            json_t *c;
            json_array_foreach(arr, i, c)
            {
                char cr[32], ex[32], uses[32];
                cli_ago(x->now_ms, cli_time_ms(json_object_get(c, "createdAt")), cr, sizeof cr);
                cli_ago(x->now_ms, cli_time_ms(json_object_get(c, "expiresAt")), ex, sizeof ex);
                snprintf(uses, sizeof uses, "%lld/%lld",
                         (long long)json_integer_value(json_object_get(c, "uses")),
                         (long long)json_integer_value(json_object_get(c, "maxUses")));
                table_add(&t, jstr(c, "id"), jstr(c, "createdBy"), cr, ex, uses);
            }
            table_print(&t);
        }
    }
    json_decref(p);
    return CLI_EXIT_OK;
}

static int cmd_pair_revoke(ctx *x)
{
    int rc = maestro_begin(x);
    json_t *p = NULL;
    if (rc || (rc = mcall(x, "pairing.revoke", json_pack("{s:s}", "id", x->args[0]), &p)))
        return rc;
    if (!json_out(x, p))
        printf("Pairing code %s revoked.\n", x->args[0]);
    json_decref(p);
    return CLI_EXIT_OK;
}

/* ---- users ---- */

static int valid_role(ctx *x, const char *role)
{
    if (strcmp(role, "admin") != 0 && strcmp(role, "user") != 0)
        return fail(x, CLI_EXIT_USAGE, "USAGE", "a role is admin or user");
    return CLI_EXIT_OK;
}

/* The user the admin named; *user borrows from *payload. Requests about a user carry
 * its id both as `id` (users.delete/setRole/resetPassword) and `userId` (grants). */
static int find_user(ctx *x, const char *query, json_t **payload, json_t **user)
{
    int rc = mcall(x, "users.list", NULL, payload);
    if (rc)
        return rc;
    json_t *users = cli_payload_array(*payload, "users");
    long i = cli_find_user(users, query);
    if (i < 0) {
        char b[160];
        json_decref(*payload);
        *payload = NULL;
        return fail(x, CLI_EXIT_REFUSED, "NOT_FOUND", "no user \"%s\": see `condrix users list`",
                    safe(query, b, sizeof b));
    }
    *user = json_array_get(users, (size_t)i);
    return CLI_EXIT_OK;
}

static int cmd_users_list(ctx *x)
{
    int rc = maestro_begin(x);
    json_t *p = NULL;
    if (rc || (rc = mcall(x, "users.list", NULL, &p)))
        return rc;
    if (!json_out(x, p)) {
        json_t *users = cli_payload_array(p, "users");
        table t = {.ncol = 5, .head = {"ID", "USERNAME", "ROLE", "TOTP", "CREATED"}};
        size_t i;
        json_t *u;
        json_array_foreach(users, i, u)
        {
            char cr[32];
            cli_ago(x->now_ms, cli_time_ms(json_object_get(u, "createdAt")), cr, sizeof cr);
            table_add(&t, jstr(u, "id"), jstr(u, "username"), jstr(u, "role"),
                      jtrue(u, "totpEnabled") ? "on" : "off", cr);
        }
        table_print(&t);
    }
    json_decref(p);
    return CLI_EXIT_OK;
}

/* Print a password the server generated, once. */
static void show_generated(json_t *p, const char *who)
{
    const char *pw = jstr(p, "password");
    if (!pw)
        pw = jstr(p, "generatedPassword");
    if (pw)
        printf("The password of %s, shown only this once:\n\n  %s\n\n"
               "Hand it over privately; they can change it with `condrix passwd`.\n",
               who, pw);
}

/* The password for users add/passwd: --generate, or read (empty: generated). */
static int new_user_password(ctx *x, const char *who, char *buf, size_t size)
{
    buf[0] = '\0';
    if (has(x->o, OPT_GENERATE))
        return CLI_EXIT_OK;
    char prompt[256];
    snprintf(prompt, sizeof prompt, "Password for %s (empty: let the server make one): ", who);
    return read_new_password(x, prompt, buf, size, true);
}

static int cmd_users_add(ctx *x)
{
    const char *role = has(x->o, OPT_ROLE) ? x->o->val[OPT_ROLE] : "user";
    char pw[CLI_SECRET_MAX], b[160];
    int rc = valid_role(x, role);
    if (rc || (rc = maestro_begin(x)))
        return rc;
    safe(x->args[0], b, sizeof b);
    if ((rc = new_user_password(x, b, pw, sizeof pw)))
        return rc;
    json_t *req = json_pack("{s:s, s:s}", "username", x->args[0], "role", role);
    if (req && pw[0])
        json_object_set_new(req, "password", json_string(pw));
    sodium_memzero(pw, sizeof pw);
    json_t *p = NULL;
    rc = mcall(x, "users.create", req, &p);
    if (!rc && !json_out(x, p)) {
        printf("Created the user %s (%s).\n", b, role);
        show_generated(p, b);
    }
    if (p)
        cli_json_wipe(p, "password");
    json_decref(p);
    return rc;
}

static int cmd_users_remove(ctx *x)
{
    int rc = maestro_begin(x);
    json_t *lp = NULL, *u = NULL, *p = NULL;
    if (rc || (rc = find_user(x, x->args[0], &lp, &u)))
        return rc;
    char b[160], q[256];
    safe(jstr(u, "username"), b, sizeof b);
    if (!has(x->o, OPT_YES)) {
        snprintf(q, sizeof q, "Delete the user %s and end their sessions?", b);
        if (!cli_stdin_tty() || !cli_confirm(q)) {
            json_decref(lp);
            return fail(x, CLI_EXIT_USAGE, "USAGE",
                        cli_stdin_tty() ? "cancelled; nothing was removed"
                                        : "add --yes to delete a user without a question");
        }
    }
    rc = mcall(x, "users.delete",
               json_pack("{s:s, s:s}", "id", jstr(u, "id"), "userId", jstr(u, "id")), &p);
    if (!rc && !json_out(x, p))
        printf("Deleted the user %s.\n", b);
    json_decref(p);
    json_decref(lp);
    return rc;
}

static int cmd_users_role(ctx *x)
{
    int rc = valid_role(x, x->args[1]);
    json_t *lp = NULL, *u = NULL, *p = NULL;
    if (rc || (rc = maestro_begin(x)) || (rc = find_user(x, x->args[0], &lp, &u)))
        return rc;
    char b[160];
    safe(jstr(u, "username"), b, sizeof b);
    rc = mcall(x, "users.setRole",
               json_pack("{s:s, s:s, s:s}", "id", jstr(u, "id"), "userId", jstr(u, "id"), "role",
                         x->args[1]),
               &p);
    if (!rc && !json_out(x, p))
        printf("%s is now %s.\n", b, x->args[1]);
    json_decref(p);
    json_decref(lp);
    return rc;
}

static int cmd_users_passwd(ctx *x)
{
    int rc = maestro_begin(x);
    json_t *lp = NULL, *u = NULL, *p = NULL;
    if (rc || (rc = find_user(x, x->args[0], &lp, &u)))
        return rc;
    char b[160], pw[CLI_SECRET_MAX];
    safe(jstr(u, "username"), b, sizeof b);
    if ((rc = new_user_password(x, b, pw, sizeof pw))) {
        json_decref(lp);
        return rc;
    }
    json_t *req = json_pack("{s:s, s:s}", "id", jstr(u, "id"), "userId", jstr(u, "id"));
    if (req && pw[0])
        json_object_set_new(req, "password", json_string(pw));
    sodium_memzero(pw, sizeof pw);
    rc = mcall(x, "users.resetPassword", req, &p);
    if (!rc && !json_out(x, p)) {
        printf("The password of %s was reset; their sessions were ended.\n", b);
        show_generated(p, b);
    }
    if (p)
        cli_json_wipe(p, "password");
    json_decref(p);
    json_decref(lp);
    return rc;
}

static int grant_or_revoke(ctx *x, bool grant)
{
    int rc = maestro_begin(x);
    json_t *up = NULL, *u = NULL, *cp = NULL, *c = NULL, *p = NULL;
    if (rc || (rc = find_user(x, x->args[0], &up, &u)))
        return rc;
    if ((rc = find_core(x, x->args[1], &cp, &c))) {
        json_decref(up);
        return rc;
    }
    char b1[160], b2[160];
    safe(jstr(u, "username"), b1, sizeof b1);
    safe(jstr(c, "displayName"), b2, sizeof b2);
    rc = mcall(x, grant ? "users.grantCore" : "users.revokeCore",
               json_pack("{s:s, s:s}", "userId", jstr(u, "id"), "coreId", jstr(c, "id")), &p);
    if (!rc && !json_out(x, p))
        printf(grant ? "%s may now see the Core \"%s\".\n" : "%s no longer sees the Core \"%s\".\n",
               b1, b2);
    json_decref(p);
    json_decref(cp);
    json_decref(up);
    return rc;
}

static int cmd_users_grant(ctx *x)
{
    return grant_or_revoke(x, true);
}

static int cmd_users_revoke(ctx *x)
{
    return grant_or_revoke(x, false);
}

/* ---- sessions ---- */

static int cmd_sessions_list(ctx *x)
{
    int rc = maestro_begin(x);
    json_t *p = NULL;
    if (rc || (rc = mcall(x, "sessions.list", NULL, &p)))
        return rc;
    if (!json_out(x, p)) {
        json_t *arr = cli_payload_array(p, "sessions");
        table t = {.ncol = 6, .head = {"ID", "CREATED", "LAST-SEEN", "EXPIRES", "IP", "CLIENT"}};
        size_t i;
        json_t *s;
        json_array_foreach(arr, i, s)
        {
            char id[64], cr[32], seen[32], ex[32];
            snprintf(id, sizeof id, "%s%s", jstr(s, "id") ? jstr(s, "id") : "?",
                     jtrue(s, "current") ? " *" : "");
            cli_ago(x->now_ms, cli_time_ms(json_object_get(s, "createdAt")), cr, sizeof cr);
            cli_ago(x->now_ms, cli_time_ms(json_object_get(s, "lastSeenAt")), seen, sizeof seen);
            cli_ago(x->now_ms, cli_time_ms(json_object_get(s, "expiresAt")), ex, sizeof ex);
            char ua[41];
            snprintf(ua, sizeof ua, "%s", jstr(s, "userAgent") ? jstr(s, "userAgent") : "-");
            table_add(&t, id, cr, seen, ex, jstr(s, "ip"), ua);
        }
        table_print(&t);
        printf("(* this session)\n");
    }
    json_decref(p);
    return CLI_EXIT_OK;
}

static int cmd_sessions_revoke(ctx *x)
{
    int rc = maestro_begin(x);
    json_t *p = NULL;
    if (rc || (rc = mcall(x, "sessions.revoke", json_pack("{s:s}", "id", x->args[0]), &p)))
        return rc;
    if (!json_out(x, p))
        printf("Session %s revoked.\n", x->args[0]);
    json_decref(p);
    return CLI_EXIT_OK;
}

/* ---- TOTP and password of the signed-in user ---- */

static int cmd_totp_status(ctx *x)
{
    int rc = maestro_begin(x);
    json_t *p = NULL;
    if (rc || (rc = mcall(x, "auth.totp.status", NULL, &p)))
        return rc;
    if (!json_out(x, p))
        printf("TOTP is %s for %s.\n", jtrue(p, "enabled") ? "enabled" : "not enabled",
               x->sess.username ? x->sess.username : "you");
    json_decref(p);
    return CLI_EXIT_OK;
}

static int cmd_totp_setup(ctx *x)
{
    int rc = maestro_begin(x);
    json_t *p = NULL;
    if (rc || (rc = mcall(x, "auth.totp.setup", NULL, &p)))
        return rc;
    if (!json_out(x, p)) {
        const char *uri = jstr(p, "otpauthUri");
        const char *secret = jstr(p, "secret");
        char *qr = uri ? cx_qr_terminal(uri) : NULL;
        if (qr) {
            printf("Scan this with your authenticator app:\n\n%s\n", qr);
            free(qr);
        }
        if (secret)
            printf("Or enter the secret by hand: %s\n", secret);
        if (uri)
            printf("otpauth URI: %s\n", uri);
        printf("\nThen turn it on with a current code: condrix totp enable CODE\n");
    }
    if (p)
        cli_json_wipe(p, "secret");
    json_decref(p);
    return CLI_EXIT_OK;
}

static int cmd_totp_enable(ctx *x)
{
    if (!six_digits(x->args[0]))
        return fail(x, CLI_EXIT_USAGE, "USAGE", "the code is the 6 digits your app shows");
    int rc = maestro_begin(x);
    json_t *p = NULL;
    if (rc || (rc = mcall(x, "auth.totp.enable", json_pack("{s:s}", "code", x->args[0]), &p)))
        return rc;
    if (!json_out(x, p))
        printf("TOTP is enabled: sign-ins now ask for a code.\n");
    json_decref(p);
    return CLI_EXIT_OK;
}

static int cmd_totp_disable(ctx *x)
{
    int rc = maestro_begin(x);
    if (rc)
        return rc;
    char pw[CLI_SECRET_MAX];
    if ((rc = read_secret(x, "Password: ", pw, sizeof pw, false)))
        return rc;
    json_t *req = json_pack("{s:s}", "password", pw);
    sodium_memzero(pw, sizeof pw);
    json_t *p = NULL;
    if ((rc = mcall(x, "auth.totp.disable", req, &p)))
        return rc;
    if (!json_out(x, p))
        printf("TOTP is disabled.\n");
    json_decref(p);
    return CLI_EXIT_OK;
}

static int cmd_passwd(ctx *x)
{
    int rc = maestro_begin(x);
    if (rc)
        return rc;
    char old[CLI_SECRET_MAX], pw[CLI_SECRET_MAX];
    if ((rc = read_secret(x, "Current password: ", old, sizeof old, false)))
        return rc;
    if ((rc = read_new_password(x, "New password: ", pw, sizeof pw, false))) {
        sodium_memzero(old, sizeof old);
        return rc;
    }
    json_t *req = json_pack("{s:s, s:s}", "oldPassword", old, "newPassword", pw);
    sodium_memzero(old, sizeof old);
    sodium_memzero(pw, sizeof pw);
    json_t *p = NULL;
    if ((rc = mcall(x, "auth.changePassword", req, &p)))
        return rc;
    if (!json_out(x, p))
        printf("Password changed; your other sessions were signed out.\n");
    json_decref(p);
    return CLI_EXIT_OK;
}

/* ---- a Core, directly ---- */

/* Connect to the Core of --url and authenticate with its access token. */
static int core_begin(ctx *x)
{
    const char *url =
        has(x->o, OPT_URL) ? x->o->val[OPT_URL] : cx_env_str("CONDRIX_CORE_URL", NULL);
    char token[CLI_SECRET_MAX] = "", code[16] = "";
    char *ca = NULL;
    int rc;
    if (!url)
        return fail(x, CLI_EXIT_USAGE, "USAGE", "give the Core's address: --url ws://host:9100");
    if ((rc = check_url(x, url)) || (rc = resolve_ca(x, x->o->val[OPT_CA], &ca)))
        return rc;
    if (has(x->o, OPT_TOTP)) {
        if (!six_digits(x->o->val[OPT_TOTP])) {
            free(ca);
            return fail(x, CLI_EXIT_USAGE, "USAGE", "--totp takes the 6-digit code");
        }
        snprintf(code, sizeof code, "%s", x->o->val[OPT_TOTP]);
    }
    const char *given =
        has(x->o, OPT_TOKEN) ? x->o->val[OPT_TOKEN] : cx_env_str("CONDRIX_CORE_TOKEN", NULL);
    if (given) {
        if (strlen(given) >= sizeof token) {
            free(ca);
            return fail(x, CLI_EXIT_USAGE, "USAGE", "the access token is too long");
        }
        snprintf(token, sizeof token, "%s", given);
    } else if ((rc = read_secret(x, "Access token (empty for a dev-mode Core): ", token,
                                 sizeof token, true))) {
        free(ca);
        return rc;
    }
    rc = connect_to(x, url, ca);
    for (int attempt = 0; !rc && attempt < 2; attempt++) {
        /* No token: a dev-mode Core lets a local client in; any other answers
         * TOKEN_REQUIRED, which says what to set. */
        json_t *p = token[0] ? json_pack("{s:s, s:s}", "token", token, "clientType", "cli")
                             : json_pack("{s:s}", "clientType", "cli");
        if (p && code[0])
            json_object_set_new(p, "totpCode", json_string(code));
        cx_msg m;
        cli_err e;
        if (!p) {
            rc = fail(x, CLI_EXIT_NET, "INTERNAL", "out of memory");
            break;
        }
        if (cli_conn_request(x->conn, "core", "auth", p, &m, &e) != CX_OK) {
            rc = fail_err(x, &e);
            break;
        }
        bool again = m.success != 1 && totp_asked(&m) && !code[0];
        if (m.success != 1 && !again)
            rc = server_fail(x, &m, NULL);
        cx_msg_free(&m);
        if (!again)
            break;
        /* The token is right and has TOTP on: the connection stays open for the code. */
        if ((rc = read_totp(x, code)))
            break;
        if (!cli_conn_is_open(x->conn)) {
            cli_conn_close(x->conn);
            x->conn = NULL;
            rc = connect_to(x, url, ca);
        }
    }
    sodium_memzero(token, sizeof token);
    sodium_memzero(code, sizeof code);
    free(ca);
    return rc;
}

static int cmd_core_info(ctx *x)
{
    json_t *p = NULL;
    int rc = core_begin(x);
    if (rc || (rc = request(x, "core", "info", NULL, &p)))
        return rc;
    if (!json_out(x, p)) {
        char b1[160], b2[160], b3[256];
        json_t *m = json_object_get(p, "maestro");
        const char *murl = jstr(m, "url");
        printf("Core      %s (%s)\n", safe(jstr(p, "displayName"), b1, sizeof b1),
               safe(jstr(p, "coreId"), b2, sizeof b2));
        printf("Version   %s\n", safe(jstr(p, "version"), b1, sizeof b1));
        printf("Dev mode  %s\n", jtrue(p, "devMode") ? "yes" : "no");
        if (murl && *murl)
            printf("Maestro   %s (%s, %s)\n", safe(murl, b3, sizeof b3),
                   jtrue(m, "connected") ? "connected" : "not connected",
                   jtrue(m, "paired") ? "paired" : "not paired");
        else
            printf("Maestro   not configured\n");
    }
    json_decref(p);
    return CLI_EXIT_OK;
}

static int cmd_core_health(ctx *x)
{
    json_t *p = NULL;
    int rc = core_begin(x);
    if (rc || (rc = request(x, "core", "health", NULL, &p)))
        return rc;
    if (!json_out(x, p)) {
        char b[64];
        json_t *up = json_object_get(p, "uptimeSeconds");
        json_t *conns = json_object_get(p, "connections");
        int64_t s = json_is_number(up) ? (int64_t)json_number_value(up) : 0;
        if (s >= 86400)
            snprintf(b, sizeof b, "%lldd %lldh", (long long)(s / 86400),
                     (long long)(s % 86400 / 3600));
        else if (s >= 3600)
            snprintf(b, sizeof b, "%lldh %lldm", (long long)(s / 3600), (long long)(s % 3600 / 60));
        else if (s >= 60)
            snprintf(b, sizeof b, "%lldm %llds", (long long)(s / 60), (long long)(s % 60));
        else
            snprintf(b, sizeof b, "%llds", (long long)s);
        char st[64];
        printf("%s: up %s, %lld connection%s\n",
               safe(jstr(p, "status") ? jstr(p, "status") : "?", st, sizeof st), b,
               (long long)json_integer_value(conns), json_integer_value(conns) == 1 ? "" : "s");
    }
    json_decref(p);
    return CLI_EXIT_OK;
}

/* ---- the command table ---- */

#define O_CORE (BIT(OPT_URL) | BIT(OPT_TOKEN) | BIT(OPT_TOTP) | BIT(OPT_CA))
#define O_PW (BIT(OPT_PASSWORD_STDIN))

static const cmd cmds[] = {
    {"login", 1, 1, BIT(OPT_USERNAME) | BIT(OPT_CA) | BIT(OPT_TOTP) | O_PW,
     "URL [--username NAME] [--ca FILE] [--password-stdin] [--totp CODE]",
     "sign in to Maestro (asks for the password, and a TOTP code when needed)", cmd_login},
    {"logout", 0, 0, BIT(OPT_LOCAL), "[--local]",
     "end the session on the server and forget it here (--local: only forget it here, for\n"
     "      a server out of reach; the session stays valid there until it expires or is revoked)",
     cmd_logout},
    {"whoami", 0, 0, 0, "", "show who is signed in, where, and until when", cmd_whoami},
    {"cores", 0, 0, 0, "", "list the Cores you may see", cmd_cores},
    {"cores list", 0, 0, 0, "", "same as `condrix cores`", cmd_cores},
    {"cores rename", 2, 2, 0, "CORE NAME", "give a Core another display name", cmd_cores_rename},
    {"cores remove", 1, 1, BIT(OPT_YES), "CORE [--yes]",
     "forget a Core: it is disconnected and its token stops working", cmd_cores_remove},
    {"pair", 0, 0, BIT(OPT_USES) | BIT(OPT_TTL), "[--uses N] [--ttl 15m]",
     "make a pairing code to attach a new Core", cmd_pair},
    {"pair list", 0, 0, 0, "", "list pairing codes (never the codes themselves)", cmd_pair_list},
    {"pair revoke", 1, 1, 0, "ID", "revoke a pairing code", cmd_pair_revoke},
    {"rotate", 1, 1, 0, "CORE",
     "give a Core a new token (pushed to it when online, else shown once)", cmd_rotate},
    {"users", 0, 0, 0, "", "same as `condrix users list`", cmd_users_list},
    {"users list", 0, 0, 0, "", "list users", cmd_users_list},
    {"users add", 1, 1, BIT(OPT_ROLE) | BIT(OPT_GENERATE) | O_PW,
     "NAME [--role user|admin] [--generate | --password-stdin]",
     "create a user (asks for a password; empty or --generate: the server makes one)",
     cmd_users_add},
    {"users remove", 1, 1, BIT(OPT_YES), "NAME [--yes]", "delete a user", cmd_users_remove},
    {"users role", 2, 2, 0, "NAME user|admin", "change a user's role", cmd_users_role},
    {"users passwd", 1, 1, BIT(OPT_GENERATE) | O_PW, "NAME [--generate | --password-stdin]",
     "set a user's password (their sessions end)", cmd_users_passwd},
    {"users grant", 2, 2, 0, "NAME CORE", "let a user see a Core", cmd_users_grant},
    {"users revoke", 2, 2, 0, "NAME CORE", "stop a user seeing a Core", cmd_users_revoke},
    {"sessions", 0, 0, 0, "", "same as `condrix sessions list`", cmd_sessions_list},
    {"sessions list", 0, 0, 0, "", "list your sessions", cmd_sessions_list},
    {"sessions revoke", 1, 1, 0, "ID", "end one of your sessions", cmd_sessions_revoke},
    {"totp", 0, 0, 0, "", "same as `condrix totp status`", cmd_totp_status},
    {"totp status", 0, 0, 0, "", "is TOTP on for you?", cmd_totp_status},
    {"totp setup", 0, 0, 0, "", "start TOTP: prints a QR code and the secret", cmd_totp_setup},
    {"totp enable", 1, 1, 0, "CODE", "finish TOTP setup with a current code", cmd_totp_enable},
    {"totp disable", 0, 0, O_PW, "[--password-stdin]", "turn TOTP off (asks for your password)",
     cmd_totp_disable},
    {"passwd", 0, 0, O_PW, "[--password-stdin]", "change your password", cmd_passwd},
    {"core info", 0, 0, O_CORE, "--url URL [--totp CODE] [--ca FILE]",
     "ask a Core directly who it is (token from CONDRIX_CORE_TOKEN)", cmd_core_info},
    {"core health", 0, 0, O_CORE, "--url URL [--totp CODE] [--ca FILE]",
     "ask a Core directly how it is (token from CONDRIX_CORE_TOKEN)", cmd_core_health},
};
#define N_CMDS (sizeof cmds / sizeof *cmds)

static size_t word_count(const char *name)
{
    size_t n = 1;
    for (; *name; name++)
        n += *name == ' ';
    return n;
}

/* Does cmd's name equal the first words of pos? */
static bool cmd_matches(const cmd *c, const char *const *pos, int npos)
{
    const char *p = c->name;
    for (int i = 0; i < npos; i++) {
        size_t n = strlen(pos[i]);
        if (strncmp(p, pos[i], n) != 0 || (p[n] != ' ' && p[n] != '\0'))
            return false;
        p += n;
        if (*p == '\0')
            return true;
        p++;
    }
    return false;
}

/* The command whose words match most of the leading positionals. */
static const cmd *find_cmd(const opts *o)
{
    const cmd *best = NULL;
    for (size_t i = 0; i < N_CMDS; i++) {
        size_t w = word_count(cmds[i].name);
        if ((int)w <= o->npos && cmd_matches(&cmds[i], o->pos, (int)w) &&
            (!best || w > word_count(best->name)))
            best = &cmds[i];
    }
    return best;
}

static void print_cmd(FILE *out, const cmd *c)
{
    fprintf(out, "  %s %s%s%s\n      %s\n", PROG, c->name, c->usage[0] ? " " : "", c->usage,
            c->help);
}

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: %s COMMAND [ARGS] [--json] [--timeout SECONDS]\n"
            "\nThe client of Condrix: sign in to Maestro, manage Cores, users and sessions,\n"
            "or ask a Core directly.\n\nCommands:\n",
            PROG);
    for (size_t i = 0; i < N_CMDS; i++)
        print_cmd(out, &cmds[i]);
    fprintf(
        out,
        "\nCORE is a Core's ID or display name (see `condrix cores`).\n"
        "Options everywhere:\n"
        "  --json             print one JSON object on stdout (errors: "
        "{\"error\":{code,message}})\n"
        "  --timeout SECONDS  wait this long to connect and for each answer (default 10)\n"
        "  -h, --help         help (also after a command); -V, --version\n"
        "\nEnvironment:\n"
        "  CONDRIX_HOME        where cli.json (the session, mode 0600) lives (default ~/.condrix)\n"
        "  CONDRIX_CORE_TOKEN  the access token for `condrix core ...` (keeps it out of the\n"
        "                      process list; --token T works too but shows in `ps`)\n"
        "  CONDRIX_CORE_URL    the Core's address when --url is not given\n"
        "\nPasswords are read from the terminal with echo off, or as lines on stdin when\n"
        "stdin is not a terminal (or with --password-stdin). Never put them in arguments.\n"
        "\nExit status: 0 ok; 1 the server refused (the error code says why); 2 usage;\n"
        "3 cannot connect, TLS failure or timeout; 4 not signed in or session expired.\n");
}

static void cmd_help(FILE *out, const cmd *c)
{
    /* The command and its siblings (`condrix users --help` shows every users verb). */
    const char *sp = strchr(c->name, ' ');
    size_t group = sp ? (size_t)(sp - c->name) : strlen(c->name);
    fprintf(out, "Usage:\n");
    for (size_t i = 0; i < N_CMDS; i++)
        if (strncmp(cmds[i].name, c->name, group) == 0 &&
            (cmds[i].name[group] == ' ' || cmds[i].name[group] == '\0'))
            print_cmd(out, &cmds[i]);
    if (strncmp(c->name, "core ", 5) == 0)
        fprintf(out,
                "\nThe access token comes from CONDRIX_CORE_TOKEN (preferred: it stays out of\n"
                "the process list), --token T, or is asked for. Example:\n"
                "  CONDRIX_CORE_TOKEN=... condrix core info --url ws://127.0.0.1:9100\n");
    fprintf(out, "\nOptions: --json, --timeout SECONDS. Exit status: 0 ok, 1 refused, 2 usage,\n"
                 "3 connection, 4 not signed in.\n");
}

/* Parse argv: options anywhere (--name, --name=value, --name value, -h), "--" ends
 * them. Returns 0 or CLI_EXIT_USAGE with x->err set. */
static int parse_args(ctx *x, opts *o, int argc, char **argv)
{
    bool only_pos = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_pos || a[0] != '-' || a[1] == '\0') {
            if (o->npos >= MAX_POS)
                return fail(x, CLI_EXIT_USAGE, "USAGE", "too many arguments");
            o->pos[o->npos++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_pos = true;
            continue;
        }
        int id = -1;
        const char *inline_val = NULL;
        if (a[1] == '-') {
            const char *name = a + 2;
            const char *eq = strchr(name, '=');
            size_t n = eq ? (size_t)(eq - name) : strlen(name);
            for (int k = 0; k < N_OPT; k++)
                if (strlen(optdefs[k].name) == n && strncmp(optdefs[k].name, name, n) == 0)
                    id = k;
            if (eq)
                inline_val = eq + 1;
        } else if (a[2] == '\0') {
            for (int k = 0; k < N_OPT; k++)
                if (optdefs[k].short_name && optdefs[k].short_name == a[1])
                    id = k;
        }
        if (id < 0)
            return fail(x, CLI_EXIT_USAGE, "USAGE", "unknown option %s (see `condrix --help`)", a);
        if (optdefs[id].has_arg) {
            if (!inline_val) {
                if (i + 1 >= argc)
                    return fail(x, CLI_EXIT_USAGE, "USAGE", "%s needs a value", a);
                inline_val = argv[++i];
            }
            o->val[id] = inline_val;
        } else if (inline_val) {
            return fail(x, CLI_EXIT_USAGE, "USAGE", "--%s takes no value", optdefs[id].name);
        }
        o->given |= BIT(id);
    }
    return CLI_EXIT_OK;
}

static void print_error(const ctx *x)
{
    if (x->json) {
        json_t *e =
            json_pack("{s:{s:s, s:s}}", "error", "code", x->err.code, "message", x->err.message);
        emit_json(e);
        json_decref(e);
    }
    fprintf(stderr, "%s: %s\n", PROG, x->err.message[0] ? x->err.message : x->err.code);
}

int main(int argc, char **argv)
{
    opts o = {0};
    ctx x = {.o = &o, .timeout_ms = CLI_DEFAULT_TIMEOUT_MS};
    int rc;

    /* A dead server must not kill us with SIGPIPE mid-write; errors are reported. */
    signal(SIGPIPE, SIG_IGN);
    if (sodium_init() < 0) {
        fprintf(stderr, "%s: libsodium failed to start\n", PROG);
        return CLI_EXIT_NET;
    }
    x.now_ms = cx_clock_now_ms();
    rc = parse_args(&x, &o, argc, argv);
    x.json = has(&o, OPT_JSON);
    if (rc)
        goto out;
    if (has(&o, OPT_VERSION)) {
        printf("%s %s (protocol %d)\n", PROG, CX_VERSION, CX_PROTOCOL_VERSION);
        return CLI_EXIT_OK;
    }
    if (o.npos == 0 && has(&o, OPT_HELP)) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    if (o.npos == 0) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (strcmp(o.pos[0], "help") == 0) {
        const cmd *c = NULL;
        if (o.npos > 1) {
            opts sub = o;
            memmove(sub.pos, sub.pos + 1, sizeof *sub.pos * (size_t)(sub.npos - 1));
            sub.npos--;
            c = find_cmd(&sub);
        }
        if (c)
            cmd_help(stdout, c);
        else
            usage(stdout);
        return CLI_EXIT_OK;
    }
    const cmd *c = find_cmd(&o);
    if (!c) {
        /* `condrix core --help` names a group whose verbs all have two words. */
        for (size_t i = 0; i < N_CMDS && has(&o, OPT_HELP); i++) {
            size_t n = strlen(o.pos[0]);
            if (strncmp(cmds[i].name, o.pos[0], n) == 0 && cmds[i].name[n] == ' ') {
                cmd_help(stdout, &cmds[i]);
                return CLI_EXIT_OK;
            }
        }
        /* A group word with a wrong verb (`condrix core bogus`): list the group's verbs. */
        char verbs[256] = "", b[64], b2[64];
        size_t n = strlen(o.pos[0]), used = 0;
        for (size_t i = 0; i < N_CMDS; i++) {
            if (strncmp(cmds[i].name, o.pos[0], n) == 0 && cmds[i].name[n] == ' ') {
                int w = snprintf(verbs + used, sizeof verbs - used, "%s%s %s", used ? ", " : "",
                                 PROG, cmds[i].name);
                if (w < 0 || (size_t)w >= sizeof verbs - used)
                    break;
                used += (size_t)w;
            }
        }
        if (used && o.npos > 1)
            rc = fail(&x, CLI_EXIT_USAGE, "USAGE", "unknown command \"%s %s\"; try one of: %s",
                      safe(o.pos[0], b, sizeof b), safe(o.pos[1], b2, sizeof b2), verbs);
        else if (used)
            rc = fail(&x, CLI_EXIT_USAGE, "USAGE", "\"%s\" needs a verb: one of %s",
                      safe(o.pos[0], b, sizeof b), verbs);
        else
            rc = fail(&x, CLI_EXIT_USAGE, "USAGE", "unknown command \"%s\" (see `condrix --help`)",
                      safe(o.pos[0], b, sizeof b));
        goto out;
    }
    x.cmd = c;
    if (has(&o, OPT_HELP)) {
        cmd_help(stdout, c);
        return CLI_EXIT_OK;
    }
    int words = (int)word_count(c->name);
    x.args = o.pos + words;
    x.nargs = o.npos - words;
    if (x.nargs < c->min_args || x.nargs > c->max_args) {
        char b[64];
        if (x.nargs > c->max_args)
            rc = fail(&x, CLI_EXIT_USAGE, "USAGE", "unexpected argument \"%s\"; usage: %s %s%s%s",
                      safe(x.args[c->max_args], b, sizeof b), PROG, c->name,
                      *c->usage ? " " : "", c->usage);
        else
            rc = fail(&x, CLI_EXIT_USAGE, "USAGE", "missing arguments; usage: %s %s%s%s", PROG,
                      c->name, *c->usage ? " " : "", c->usage);
        goto out;
    }
    unsigned extra = o.given & ~(c->opts | GLOBAL_OPTS);
    if (extra) {
        int k = __builtin_ctz(extra);
        rc = fail(&x, CLI_EXIT_USAGE, "USAGE", "%s %s does not take --%s", PROG, c->name,
                  optdefs[k].name);
        goto out;
    }
    if (has(&o, OPT_TIMEOUT)) {
        long secs;
        if (cx_parse_int(o.val[OPT_TIMEOUT], 1, 3600, &secs) != CX_OK) {
            rc = fail(&x, CLI_EXIT_USAGE, "USAGE", "--timeout takes seconds, 1 to 3600");
            goto out;
        }
        x.timeout_ms = (uint32_t)secs * 1000;
    }
    rc = c->run(&x);
out:
    if (rc)
        print_error(&x);
    fflush(stdout);
    cli_conn_close(x.conn);
    json_decref(x.me);
    if (x.have_sess)
        cli_session_free(&x.sess);
    return rc;
}
