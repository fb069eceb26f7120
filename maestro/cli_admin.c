/* `condrix-maestro user|pair|cores|audit ...`: manage users, pairing codes and Cores from a
 * shell on Maestro's machine. It opens the same maestro.db as a running server; each change
 * and its audit row commit together, and a new secret (password, code, token) is printed
 * exactly once. Passwords are hashed here, before the write lock is taken, because Argon2id
 * takes a while and the server must not wait for it. */
#include "cli_admin.h"

#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdarg.h>
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
#include "condrix/msg.h"
#include "condrix/password.h"
#include "store.h"

#define PROG "condrix-maestro"
#define ACTOR "cli"
#define MAX_WORDS 6
#define GENERATED_PASSWORD_CHARS 20
#define AUDIT_DEFAULT_LIMIT 50
#define AUDIT_MAX_LIMIT 10000

/* Options a verb accepts, beyond --json and --help. */
enum {
    OPT_ROLE = 1 << 0,
    OPT_PASSWORD_STDIN = 1 << 1,
    OPT_USES = 1 << 2,
    OPT_TTL = 1 << 3,
    OPT_LIMIT = 1 << 4,
};

typedef struct verb {
    const char *name; /* "user add", "pair", ... */
    int nargs;        /* positional arguments it takes */
    unsigned opts;    /* OPT_* it accepts */
    const char *args; /* for the usage line */
    const char *help; /* one line */
} verb;

static const verb verbs[] = {
    {"user add", 1, OPT_ROLE | OPT_PASSWORD_STDIN, "NAME [--role admin|user] [--password-stdin]",
     "make a user (default role: user); without --password-stdin a password is generated "
     "and printed once"},
    {"user list", 0, 0, "", "list the users (never their passwords)"},
    {"user passwd", 1, OPT_PASSWORD_STDIN, "NAME [--password-stdin]",
     "set a new password (generated unless given on stdin); signs the user out everywhere"},
    {"user role", 2, 0, "NAME admin|user", "change a user's role (the last admin stays admin)"},
    {"user remove", 1, 0, "NAME", "delete a user, their sessions and grants"},
    {"user totp-reset", 1, 0, "NAME", "turn off a user's TOTP (lost authenticator)"},
    {"pair", 0, OPT_USES | OPT_TTL, "[--uses N] [--ttl 15m]",
     "make a pairing code for new Cores (default: 1 use, 15 minutes), printed once"},
    {"cores list", 0, 0, "", "list the paired Cores"},
    {"cores rename", 2, 0, "ID NAME", "change a Core's display name"},
    {"cores remove", 1, 0, "ID", "forget a Core: its token dies, grants go"},
    {"cores rotate", 1, 0, "ID", "give a Core a new token now (printed once); the old one dies"},
    {"audit", 0, OPT_LIMIT, "[--limit N]", "show the newest audit rows (default 50)"},
};
#define N_VERBS (sizeof verbs / sizeof *verbs)

static const char *const groups[] = {"user", "pair", "cores", "audit"};

typedef struct cli {
    bool json;             /* --json: machine output on stdout */
    bool password_stdin;   /* --password-stdin */
    const char *role;      /* --role value, NULL if absent */
    const char *uses;      /* --uses value */
    const char *ttl;       /* --ttl value */
    const char *limit;     /* --limit value */
    long uses_n;           /* parsed --uses, 1 by default */
    int64_t ttl_s;         /* parsed --ttl, seconds */
    long limit_n;          /* parsed --limit */
    const char *pos[MAX_WORDS]; /* positional arguments after the verb words */
    int npos;
    mx_store *s;           /* open store, NULL until needed */
    int64_t now_ms;        /* wall clock at start, Unix ms */
} cli;

/* ---- output helpers ---- */

static void print_verb(FILE *out, const verb *v)
{
    fprintf(out, "  %s %s%s%s [--json]\n      %s\n", PROG, v->name, v->args[0] ? " " : "",
            v->args, v->help);
}

void mx_admin_usage(FILE *out)
{
    fprintf(out, "Usage:\n");
    for (size_t i = 0; i < N_VERBS; i++)
        print_verb(out, &verbs[i]);
    fprintf(out,
            "\nUsernames: 1-64 of letters, digits, '.', '_', '@', '-', starting with a letter\n"
            "           or digit; unique regardless of case.\n"
            "Cores:     ID is Maestro's id of the Core or the Core's own id (cores list).\n"
            "Durations: 90s, 15m, 12h, 7d. Passwords never go on the command line: pipe one\n"
            "           line into --password-stdin, or let one be generated.\n"
            "The data directory is --data-dir DIR (before or after the verb), else CONDRIX_HOME,\n"
            "else ~/.condrix; a running server may keep running. --json prints one JSON\n"
            "object on stdout.\n"
            "Exit status: 0 ok, 1 failed, 2 usage.\n");
}

bool mx_admin_is_group(const char *word)
{
    for (size_t i = 0; word != NULL && i < sizeof groups / sizeof *groups; i++)
        if (strcmp(word, groups[i]) == 0)
            return true;
    return false;
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
    return MX_ADMIN_EXIT_USAGE;
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
    return MX_ADMIN_EXIT_FAILED;
}

/* A store error in words an operator can act on; what names the object ("user \"bob\""). */
static int fail_rc(const cli *c, int rc, const char *what)
{
    switch (rc) {
    case CX_E_NOTFOUND:
        return fail(c, "NOT_FOUND",
                    "'" PROG " user list' and '" PROG " cores list' show what exists",
                    "no %s", what);
    case CX_E_EXISTS:
        return fail(c, "NAME_TAKEN", "usernames are unique regardless of case; choose another",
                    "%s already exists", what);
    case CX_E_DENIED:
        return fail(c, "FORBIDDEN",
                    "make another user admin first ('" PROG " user role OTHER admin')",
                    "%s is the last admin: Maestro must keep one", what);
    case CX_E_INVAL:
        return fail(c, "INVALID_ARGUMENT", NULL, "invalid value for %s", what);
    case CX_E_DB:
        return fail(c, "INTERNAL",
                    "the database may be locked by a long transaction or the disk full; retry",
                    "database error: %s", c->s ? sqlite3_errmsg(mx_store_db(c->s)) : "?");
    default:
        return fail(c, "INTERNAL", NULL, "failed: %s", cx_strerror(rc));
    }
}

static const char *role_name(int role)
{
    return role == MX_ROLE_ADMIN ? "admin" : "user";
}

/* Print rows of ncol cells as aligned columns under head; the last column is not padded. */
static void print_table(const char *const *head, int ncol, char (*cells)[160], size_t nrows)
{
    size_t w[8] = {0};
    for (int k = 0; k < ncol; k++)
        w[k] = strlen(head[k]);
    for (size_t i = 0; i < nrows; i++)
        for (int k = 0; k < ncol; k++) {
            size_t l = strlen(cells[i * (size_t)ncol + (size_t)k]);
            if (l > w[k])
                w[k] = l;
        }
    for (int k = 0; k < ncol; k++)
        printf("%-*s%s", k == ncol - 1 ? 0 : (int)w[k], head[k], k == ncol - 1 ? "\n" : "  ");
    for (size_t i = 0; i < nrows; i++)
        for (int k = 0; k < ncol; k++)
            printf("%-*s%s", k == ncol - 1 ? 0 : (int)w[k], cells[i * (size_t)ncol + (size_t)k],
                   k == ncol - 1 ? "\n" : "  ");
}

/* ---- store and transactions ---- */

static int open_store(cli *c, const char *home)
{
    char *def = NULL;
    if (home == NULL && (home = def = cx_default_home()) == NULL)
        return fail(c, "INTERNAL", "set CONDRIX_HOME", "cannot find a home directory");
    char *err = NULL;
    int rc = mx_store_open(home, &c->s, &err);
    if (rc != CX_OK)
        fail(c, "INTERNAL",
             "check that Maestro's home exists and is yours (CONDRIX_HOME, default ~/.condrix)",
             "cannot open the store in %s: %s", home, err ? err : cx_strerror(rc));
    free(err);
    free(def);
    return rc == CX_OK ? MX_ADMIN_EXIT_OK : MX_ADMIN_EXIT_FAILED;
}

/* A mistyped --data-dir must not quietly make an empty Maestro: only `user add` (an
 * admin made before the first start) may create the database. */
static bool store_exists(cli *c, const char *home)
{
    char *def = NULL;
    if (home == NULL && (home = def = cx_default_home()) == NULL)
        return true; /* open_store says what is wrong */
    char path[4096];
    struct stat st;
    snprintf(path, sizeof path, "%s/maestro.db", home);
    bool ok = stat(path, &st) == 0;
    if (!ok)
        fail(c, "NOT_FOUND",
             "check --data-dir / CONDRIX_HOME; Maestro makes it at its first start, and only "
             "`user add` may run before that",
             "no Maestro database in %s", home);
    free(def);
    return ok;
}

static int begin_change(cli *c)
{
    int rc = cx_db_begin(mx_store_db(c->s));
    if (rc != CX_OK)
        fail_rc(c, rc, "");
    return rc;
}

/* Commit a change together with its audit row; on any failure roll both back. rc is the
 * change's own result: a failed change still leaves an audit row of the attempt. */
static int finish_change(cli *c, int rc, const char *action, const char *target)
{
    sqlite3 *db = mx_store_db(c->s);
    const char *result = rc == CX_OK ? "ok" : rc == CX_E_DENIED ? "denied"
                                            : rc == CX_E_NOTFOUND ? "not_found"
                                            : rc == CX_E_EXISTS ? "exists" : "error";
    int arc = mx_audit(c->s, c->now_ms, ACTOR, action, target, ACTOR, result);
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

/* ---- passwords ---- */

/* One line from fd 0 (the newline and a CR before it dropped), read a byte at a time so
 * no stdio buffer keeps a copy. out holds CX_PASSWORD_MAX_CHARS + 1 bytes. */
static int read_password(const cli *c, char *out)
{
    size_t n = 0;
    bool too_long = false;
    for (;;) {
        char ch;
        ssize_t r = read(0, &ch, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            sodium_memzero(out, CX_PASSWORD_MAX_CHARS + 1);
            return fail(c, "INTERNAL", NULL, "cannot read stdin: %s", strerror(errno));
        }
        if (r == 0 || ch == '\n')
            break;
        if (n < CX_PASSWORD_MAX_CHARS)
            out[n++] = ch;
        else
            too_long = true;
    }
    if (n > 0 && out[n - 1] == '\r')
        n--;
    out[n] = '\0';
    if (too_long || n < CX_PASSWORD_MIN_CHARS) {
        sodium_memzero(out, CX_PASSWORD_MAX_CHARS + 1);
        return fail(c, "INVALID_ARGUMENT", "pipe one line, e.g. from a password manager",
                    "the password on stdin must be %d to %d characters", CX_PASSWORD_MIN_CHARS,
                    CX_PASSWORD_MAX_CHARS);
    }
    return MX_ADMIN_EXIT_OK;
}

/* The password (read or generated) and its Argon2id hash. *generated tells which. */
static int get_password(cli *c, char *pw, char hash[CX_PASSWORD_HASH_MAX], bool *generated)
{
    *generated = !c->password_stdin;
    if (c->password_stdin) {
        int ex = read_password(c, pw);
        if (ex != MX_ADMIN_EXIT_OK)
            return ex;
    } else {
        cx_password_generate(pw, GENERATED_PASSWORD_CHARS);
    }
    int rc = cx_password_hash(pw, hash);
    if (rc != CX_OK) {
        sodium_memzero(pw, CX_PASSWORD_MAX_CHARS + 1);
        return fail(c, "INTERNAL", NULL, "cannot hash the password: %s", cx_strerror(rc));
    }
    return MX_ADMIN_EXIT_OK;
}

/* ---- user verbs ---- */

/* A listing of store rows: {key:[...]} with --json, else a table (or the `empty` line).
 * row(elem, cells) fills ncol cells of one row. */
typedef struct listing {
    const char *key;                      /* JSON member holding the array */
    const char *empty;                    /* printed when there are no rows */
    const char *const *head;              /* column titles */
    int ncol;
    const void *arr;                      /* n elements of size bytes */
    size_t n, size;
    json_t *(*to_json)(const void *elem);
    void (*to_row)(const void *elem, char (*cells)[160]);
} listing;

static int emit_listing(cli *c, const listing *l)
{
    const char *base = l->arr;
    if (c->json) {
        json_t *list = json_array();
        json_t *o = list ? json_pack("{s:o}", l->key, list) : NULL;
        for (size_t i = 0; o != NULL && i < l->n; i++)
            if (json_array_append_new(list, l->to_json(base + i * l->size)) != 0) {
                json_decref(o);
                o = NULL;
            }
        return cx_cli_emit_json(PROG, o);
    }
    if (l->n == 0) {
        printf("%s\n", l->empty);
        return MX_ADMIN_EXIT_OK;
    }
    char(*cells)[160] = calloc(l->n * (size_t)l->ncol, sizeof *cells);
    if (cells == NULL)
        return fail(c, "INTERNAL", NULL, "out of memory");
    for (size_t i = 0; i < l->n; i++)
        l->to_row(base + i * l->size, cells + i * (size_t)l->ncol);
    print_table(l->head, l->ncol, cells, l->n);
    printf("(times in UTC)\n");
    free(cells);
    return MX_ADMIN_EXIT_OK;
}

static json_t *user_json(const mx_user *u)
{
    return json_pack("{s:s,s:s,s:s,s:o,s:b}", "id", u->id, "username", u->username, "role",
                     role_name(u->role), "createdAt", cx_cli_json_time(u->created_at),
                     "totpEnabled", u->totp_enabled);
}

static int do_user_add(cli *c, const char *name)
{
    int role = c->role != NULL && strcmp(c->role, "admin") == 0 ? MX_ROLE_ADMIN : MX_ROLE_USER;
    char pw[CX_PASSWORD_MAX_CHARS + 1];
    char hash[CX_PASSWORD_HASH_MAX] = "";
    char what[MX_USERNAME_MAX + 16];
    snprintf(what, sizeof what, "user \"%s\"", name);
    bool generated;
    int ex;
    /* A taken name is reported before the slow hash. */
    if (mx_user_by_name(c->s, name, NULL, NULL) == CX_OK)
        return fail_rc(c, CX_E_EXISTS, what);
    if ((ex = get_password(c, pw, hash, &generated)) != MX_ADMIN_EXIT_OK)
        return ex;
    mx_user u;
    if (begin_change(c) != CX_OK) {
        ex = MX_ADMIN_EXIT_FAILED;
        goto out;
    }
    int rc = mx_user_create(c->s, name, hash, role, c->now_ms, &u);
    rc = finish_change(c, rc, "user.create", name);
    if (rc != CX_OK) {
        ex = fail_rc(c, rc, what);
        goto out;
    }
    if (c->json) {
        json_t *p = generated ? json_string(pw) : NULL;
        json_t *o = json_pack("{s:o}", "user", user_json(&u));
        if (o != NULL && p != NULL && json_object_set(o, "password", p) != 0) {
            json_decref(o);
            o = NULL;
        }
        if (o == NULL || (generated && p == NULL))
            ex = fail(c, "INTERNAL", "set a password with '" PROG " user passwd NAME'",
                      "out of memory: user \"%s\" was made but the password not shown", name);
        else
            ex = cx_cli_emit_json(PROG, json_incref(o));
        json_decref(o);
        cx_cli_wipe_json_string(p);
        json_decref(p);
        goto out;
    }
    printf("Created user \"%s\" (role %s).\n", u.username, role_name(role));
    if (generated)
        printf("\nPassword (shown only now; store it, or change it at first sign-in):\n\n"
               "  %s\n\n",
               pw);
    ex = MX_ADMIN_EXIT_OK;
out:
    sodium_memzero(pw, sizeof pw);
    sodium_memzero(hash, sizeof hash);
    return ex;
}

static json_t *user_elem_json(const void *e)
{
    return user_json(e);
}

static void user_row(const void *e, char (*row)[160])
{
    const mx_user *u = e;
    char tb[32];
    snprintf(row[0], 160, "%s", u->username);
    snprintf(row[1], 160, "%s", role_name(u->role));
    snprintf(row[2], 160, "%s", u->totp_enabled ? "on" : "off");
    snprintf(row[3], 160, "%s", cx_cli_human_time(u->created_at, "-", tb));
    snprintf(row[4], 160, "%s", u->id);
}

static int do_user_list(cli *c)
{
    static const char *const head[] = {"USERNAME", "ROLE", "TOTP", "CREATED", "ID"};
    mx_user *arr = NULL;
    size_t n = 0;
    int rc = mx_user_list(c->s, &arr, &n);
    if (rc != CX_OK)
        return fail_rc(c, rc, "users");
    listing l = {"users", "No users yet. Make one with: " PROG " user add NAME --role admin",
                 head, 5, arr, n, sizeof *arr, user_elem_json, user_row};
    int ex = emit_listing(c, &l);
    free(arr);
    return ex;
}

static int do_user_passwd(cli *c, const char *name)
{
    char pw[CX_PASSWORD_MAX_CHARS + 1];
    char hash[CX_PASSWORD_HASH_MAX] = "";
    char what[MX_USERNAME_MAX + 16];
    snprintf(what, sizeof what, "user \"%s\"", name);
    bool generated;
    int ex, rc;
    if ((rc = mx_user_by_name(c->s, name, NULL, NULL)) != CX_OK)
        return fail_rc(c, rc, what);
    if ((ex = get_password(c, pw, hash, &generated)) != MX_ADMIN_EXIT_OK)
        return ex;
    if (begin_change(c) != CX_OK) {
        ex = MX_ADMIN_EXIT_FAILED;
        goto out;
    }
    mx_user u;
    rc = mx_user_by_name(c->s, name, &u, NULL);
    if (rc == CX_OK)
        rc = mx_user_set_password(c->s, u.id, hash, NULL);
    rc = finish_change(c, rc, "user.password", name);
    if (rc != CX_OK) {
        ex = fail_rc(c, rc, what);
        goto out;
    }
    if (c->json) {
        json_t *p = generated ? json_string(pw) : NULL;
        json_t *o = json_pack("{s:s,s:b,s:b}", "username", u.username, "changed", 1,
                              "sessionsRevoked", 1);
        if (o != NULL && p != NULL && json_object_set(o, "password", p) != 0) {
            json_decref(o);
            o = NULL;
        }
        if (o == NULL || (generated && p == NULL))
            ex = fail(c, "INTERNAL", "run it again", "out of memory: the new password of \"%s\" "
                      "was saved but not shown", name);
        else
            ex = cx_cli_emit_json(PROG, json_incref(o));
        json_decref(o);
        cx_cli_wipe_json_string(p);
        json_decref(p);
        goto out;
    }
    printf("Password of \"%s\" changed; every session of theirs was signed out.\n", u.username);
    if (generated)
        printf("\nNew password (shown only now):\n\n  %s\n\n", pw);
    ex = MX_ADMIN_EXIT_OK;
out:
    sodium_memzero(pw, sizeof pw);
    sodium_memzero(hash, sizeof hash);
    return ex;
}

/* The user-by-name changes that need no secret: role, remove, totp-reset. */
enum user_change { UC_ROLE, UC_REMOVE, UC_TOTP_RESET };

static int do_user_change(cli *c, enum user_change what_change, const char *name, int role)
{
    static const char *const actions[] = {"user.role", "user.remove", "user.totp_reset"};
    char what[MX_USERNAME_MAX + 16];
    snprintf(what, sizeof what, "user \"%s\"", name);
    if (begin_change(c) != CX_OK)
        return MX_ADMIN_EXIT_FAILED;
    mx_user u;
    int rc = mx_user_by_name(c->s, name, &u, NULL);
    if (rc == CX_OK) {
        switch (what_change) {
        case UC_ROLE: rc = mx_user_set_role(c->s, u.id, role); break;
        case UC_REMOVE: rc = mx_user_delete(c->s, u.id); break;
        case UC_TOTP_RESET: rc = mx_user_totp_disable(c->s, u.id); break;
        }
    }
    rc = finish_change(c, rc, actions[what_change], name);
    if (rc != CX_OK)
        return fail_rc(c, rc, what);
    switch (what_change) {
    case UC_ROLE:
        if (c->json)
            return cx_cli_emit_json(PROG, json_pack("{s:s,s:s}", "username", u.username, "role",
                                          role_name(role)));
        printf("User \"%s\" is now %s %s.\n", u.username, role == MX_ROLE_ADMIN ? "an" : "a",
               role_name(role));
        break;
    case UC_REMOVE:
        if (c->json)
            return cx_cli_emit_json(
                PROG, json_pack("{s:s,s:b}", "username", u.username, "removed", 1));
        printf("Removed user \"%s\" with their sessions and Core grants.\n", u.username);
        break;
    case UC_TOTP_RESET:
        if (c->json)
            return cx_cli_emit_json(
                PROG, json_pack("{s:s,s:b}", "username", u.username, "totpEnabled", 0));
        printf("TOTP of \"%s\" is off; they can sign in with the password and set it up again.\n",
               u.username);
        break;
    }
    return MX_ADMIN_EXIT_OK;
}

/* ---- pairing ---- */

/* s is safe to paste into a POSIX shell as it is. */
static bool shell_safe(const char *s)
{
    for (; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              strchr(":/._-?=&%@+~,[]", *s) != NULL))
            return false;
    return true;
}

/* The command that starts a Core with code (malloc'd, NULL on failure). */
static char *start_command(const char *url, const char *code)
{
    char *cmd = NULL;
    int r;
    if (shell_safe(url)) {
        r = asprintf(&cmd, "CONDRIX_MAESTRO_URL=%s CONDRIX_MAESTRO_TOKEN=%s condrix-core", url,
                     code);
    } else {
        /* Single quotes, with each ' written as '\'' */
        size_t n = strlen(url);
        char *q = malloc(n * 4 + 3);
        if (q == NULL)
            return NULL;
        size_t o = 0;
        q[o++] = '\'';
        for (size_t i = 0; i < n; i++) {
            if (url[i] == '\'') {
                memcpy(q + o, "'\\''", 4);
                o += 4;
            } else {
                q[o++] = url[i];
            }
        }
        q[o++] = '\'';
        q[o] = '\0';
        r = asprintf(&cmd, "CONDRIX_MAESTRO_URL=%s CONDRIX_MAESTRO_TOKEN=%s condrix-core", q,
                     code);
        free(q);
    }
    return r < 0 ? NULL : cmd;
}

static int do_pair(cli *c)
{
    const int64_t ttl_s = c->ttl_s;
    char code[7] = "";
    char *cmd = NULL;
    mx_pairing p;
    int ex;
    if (begin_change(c) != CX_OK)
        return MX_ADMIN_EXIT_FAILED;
    int rc = mx_pairing_create(c->s, ACTOR, (int)c->uses_n, ttl_s * 1000, c->now_ms, code, &p);
    rc = finish_change(c, rc, "pairing.create", rc == CX_OK ? p.id : NULL);
    if (rc != CX_OK) {
        ex = fail_rc(c, rc, "pairing code");
        goto out;
    }
    /* The URL Cores dial: as set, or this Maestro's own listener as configured. */
    char own[300];
    const char *host = cx_env_str("CONDRIX_MAESTRO_HOST", "127.0.0.1");
    if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0)
        host = "127.0.0.1";
    snprintf(own, sizeof own, "%s://%s%s%s:%s", getenv("CONDRIX_MAESTRO_TLS_CERT") ? "wss" : "ws",
             strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "",
             cx_env_str("CONDRIX_MAESTRO_PORT", "9200"));
    const char *url = cx_env_str("CONDRIX_MAESTRO_PUBLIC_URL", own);
    cmd = start_command(url, code);
    if (cmd == NULL) {
        ex = fail(c, "INTERNAL", "revoke it and make another", "out of memory: pairing code %s "
                  "was saved but not shown", p.id);
        goto out;
    }
    if (c->json) {
        json_t *jc = json_string(code), *jm = json_string(cmd);
        json_t *o = jc && jm ? json_pack("{s:s,s:O,s:o,s:i,s:O}", "id", p.id, "code", jc,
                                         "expiresAt", cx_cli_json_time(p.expires_at), "maxUses",
                                         p.max_uses, "command", jm)
                             : NULL;
        ex = cx_cli_emit_json(PROG, o);
        cx_cli_wipe_json_string(jc);
        cx_cli_wipe_json_string(jm);
        json_decref(jc);
        json_decref(jm);
        goto out;
    }
    char tb[32];
    printf("Pairing code (shown only now):\n\n  %s\n\n", code);
    printf("  uses:    %d\n  expires: %s UTC (in %lld minute%s)\n\n", p.max_uses,
           cx_cli_human_time(p.expires_at, "-", tb), (long long)((ttl_s + 59) / 60),
           (ttl_s + 59) / 60 == 1 ? "" : "s");
    printf("Start a Core with it:\n\n  %s\n\n", cmd);
    printf("The Core trades the code for its own token at its first connection.\n");
    ex = MX_ADMIN_EXIT_OK;
out:
    sodium_memzero(code, sizeof code);
    if (cmd != NULL) {
        sodium_memzero(cmd, strlen(cmd));
        free(cmd);
    }
    return ex;
}

/* ---- Cores ---- */

/* A Core by Maestro's id or by the Core's own id. */
static int find_core(cli *c, const char *key, mx_core *out)
{
    int rc = mx_core_by_id(c->s, key, out);
    if (rc == CX_E_NOTFOUND)
        rc = mx_core_by_core_id(c->s, key, out);
    return rc;
}

static json_t *core_json(const mx_core *k)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:o,s:o}", "id", k->id, "coreId", k->core_id,
                     "displayName", k->display_name, "tokenPrefix", k->token_prefix, "pairedAt",
                     cx_cli_json_time(k->paired_at), "lastSeenAt",
                     cx_cli_json_time(k->last_seen_at));
}

static json_t *core_elem_json(const void *e)
{
    return core_json(e);
}

static void core_row(const void *e, char (*row)[160])
{
    const mx_core *k = e;
    char tb[32];
    snprintf(row[0], 160, "%s", k->display_name);
    snprintf(row[1], 160, "%s", k->id);
    snprintf(row[2], 160, "%s", k->core_id);
    snprintf(row[3], 160, "%s", k->token_prefix[0] ? k->token_prefix : "-");
    snprintf(row[4], 160, "%s", cx_cli_human_time(k->paired_at, "pending", tb));
    snprintf(row[5], 160, "%s", cx_cli_human_time(k->last_seen_at, "never", tb));
}

static int do_cores_list(cli *c)
{
    static const char *const head[] = {"NAME", "ID", "CORE-ID", "PREFIX", "PAIRED", "LAST-SEEN"};
    mx_core *arr = NULL;
    size_t n = 0;
    int rc = mx_core_list(c->s, &arr, &n);
    if (rc != CX_OK)
        return fail_rc(c, rc, "Cores");
    listing l = {"cores", "No Cores yet. Make a pairing code with: " PROG " pair", head, 6, arr, n,
                 sizeof *arr, core_elem_json, core_row};
    int ex = emit_listing(c, &l);
    free(arr);
    return ex;
}

enum core_change { CC_RENAME, CC_REMOVE };

static int do_core_change(cli *c, enum core_change what_change, const char *key,
                          const char *name)
{
    char what[MX_CORE_ID_MAX + 16];
    snprintf(what, sizeof what, "Core \"%s\"", key);
    if (begin_change(c) != CX_OK)
        return MX_ADMIN_EXIT_FAILED;
    mx_core k;
    memset(&k, 0, sizeof k);
    int rc = find_core(c, key, &k);
    if (rc == CX_OK)
        rc = what_change == CC_RENAME ? mx_core_rename(c->s, k.id, name)
                                      : mx_core_remove(c->s, k.id);
    rc = finish_change(c, rc, what_change == CC_RENAME ? "core.rename" : "core.remove",
                       k.id[0] ? k.id : key);
    if (rc == CX_E_INVAL)
        return fail(c, "INVALID_ARGUMENT", NULL,
                    "a display name is 1-%d bytes of UTF-8 without control characters",
                    MX_DISPLAY_NAME_MAX);
    if (rc != CX_OK)
        return fail_rc(c, rc, what);
    if (what_change == CC_RENAME) {
        if (c->json)
            return cx_cli_emit_json(PROG, json_pack("{s:s,s:s}", "id", k.id, "displayName", name));
        printf("Core %s is now called \"%s\".\n", k.id, name);
    } else {
        if (c->json)
            return cx_cli_emit_json(PROG, json_pack("{s:s,s:b}", "id", k.id, "removed", 1));
        printf("Removed Core \"%s\" (%s): its token no longer works, and a running Maestro\n"
               "drops its connection within a second.\n",
               k.display_name, k.id);
    }
    return MX_ADMIN_EXIT_OK;
}

static int do_cores_rotate(cli *c, const char *key)
{
    char what[MX_CORE_ID_MAX + 16];
    snprintf(what, sizeof what, "Core \"%s\"", key);
    char token[65] = "";
    int ex;
    if (begin_change(c) != CX_OK)
        return MX_ADMIN_EXIT_FAILED;
    mx_core k;
    memset(&k, 0, sizeof k);
    int rc = find_core(c, key, &k);
    if (rc == CX_OK)
        rc = mx_core_rotate(c->s, k.id, true, token);
    rc = finish_change(c, rc, "core.rotate", k.id[0] ? k.id : key);
    if (rc != CX_OK) {
        ex = fail_rc(c, rc, what);
        goto out;
    }
    char prefix[9];
    snprintf(prefix, sizeof prefix, "%.8s", token);
    if (c->json) {
        json_t *t = json_string(token);
        json_t *o = t ? json_pack("{s:s,s:s,s:O,s:s,s:b}", "id", k.id, "coreId", k.core_id,
                                  "token", t, "tokenPrefix", prefix, "pushed", 0)
                      : NULL;
        ex = cx_cli_emit_json(PROG, o);
        cx_cli_wipe_json_string(t);
        json_decref(t);
        goto out;
    }
    printf("New token for Core \"%s\" (%s); the old one no longer works:\n\n  %s\n\n",
           k.display_name, k.id, token);
    printf("Shown only now. A running Maestro drops the Core's connection within a second.\n"
           "Start the Core with CONDRIX_MAESTRO_TOKEN=<this token>; it uses it when its stored\n"
           "token is refused, and stores it.\n");
    ex = MX_ADMIN_EXIT_OK;
out:
    sodium_memzero(token, sizeof token);
    return ex;
}

/* ---- audit ---- */

static const char *jstr(json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v ? v : "-";
}

static int do_audit(cli *c)
{
    json_t *arr = mx_audit_list(c->s, (int)c->limit_n);
    if (arr == NULL)
        return fail_rc(c, CX_E_DB, "audit");
    if (c->json)
        return cx_cli_emit_json(PROG, json_pack("{s:o}", "audit", arr));
    size_t n = json_array_size(arr);
    if (n == 0) {
        printf("The audit trail is empty.\n");
        json_decref(arr);
        return MX_ADMIN_EXIT_OK;
    }
    enum { NCOL = 6 };
    static const char *const head[NCOL] = {"TIME", "ACTOR", "ACTION", "TARGET", "ADDRESS",
                                           "RESULT"};
    char(*cells)[160] = calloc(n * NCOL, sizeof *cells);
    if (cells == NULL) {
        json_decref(arr);
        return fail(c, "INTERNAL", NULL, "out of memory");
    }
    static const char *const keys[NCOL] = {"time", "actor", "action", "target", "address",
                                           "result"};
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < NCOL; k++)
            snprintf(cells[i * NCOL + (size_t)k], 160, "%s", jstr(json_array_get(arr, i), keys[k]));
    print_table(head, NCOL, cells, n);
    free(cells);
    json_decref(arr);
    return MX_ADMIN_EXIT_OK;
}

/* ---- dispatch ---- */

static const verb *match_verb(const char **words, int nwords, int *used)
{
    for (size_t k = 0; k < N_VERBS; k++) {
        const char *name = verbs[k].name;
        const char *sp = strchr(name, ' ');
        if (sp == NULL) {
            if (strcmp(words[0], name) == 0) {
                *used = 1;
                return &verbs[k];
            }
        } else if (nwords >= 2 && strlen(words[0]) == (size_t)(sp - name) &&
                   strncmp(words[0], name, (size_t)(sp - name)) == 0 &&
                   strcmp(words[1], sp + 1) == 0) {
            *used = 2;
            return &verbs[k];
        }
    }
    return NULL;
}

static void print_group(FILE *out, const char *group)
{
    size_t n = strlen(group);
    fprintf(out, "Usage:\n");
    for (size_t k = 0; k < N_VERBS; k++)
        if (strncmp(verbs[k].name, group, n) == 0 && verbs[k].name[n] == ' ')
            print_verb(out, &verbs[k]);
}

int mx_admin_cli(int argc, char **argv, const char *home)
{
    cli c = {0};
    const char *words[MAX_WORDS + 2];
    int nwords = 0;
    bool only_positional = false, help = false;
    const char *bad_value = NULL;
    usage_json = cx_cli_wants_json(argc, argv);
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        bool missing = false;
        if (only_positional || a[0] != '-' || a[1] == '\0') {
            if (nwords == MAX_WORDS + 2)
                return usage_error("too many arguments");
            words[nwords++] = a;
        } else if (strcmp(a, "--") == 0) {
            only_positional = true;
        } else if (strcmp(a, "--json") == 0) {
            c.json = true;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            help = true;
        } else if (strcmp(a, "--password-stdin") == 0) {
            c.password_stdin = true;
        } else if (cx_cli_take_value(argc, argv, &i, "--data-dir", &home, &missing)) {
            /* Also accepted after the verb, where people put it. */
            if (missing)
                return usage_error("--data-dir needs a directory");
        } else if (cx_cli_take_value(argc, argv, &i, "--role", &c.role, &missing) ||
                   cx_cli_take_value(argc, argv, &i, "--uses", &c.uses, &missing) ||
                   cx_cli_take_value(argc, argv, &i, "--ttl", &c.ttl, &missing) ||
                   cx_cli_take_value(argc, argv, &i, "--limit", &c.limit, &missing)) {
            if (missing)
                bad_value = a;
        } else if (strncmp(a, "--password", 10) == 0) {
            return usage_error("passwords are not taken on the command line (other users can "
                               "see it); pipe one line into --password-stdin");
        } else {
            return usage_error("unknown option '%s'", a);
        }
    }
    if (nwords == 0 || strcmp(words[0], "help") == 0) {
        if (help || nwords > 0) {
            mx_admin_usage(stdout);
            return MX_ADMIN_EXIT_OK;
        }
        mx_admin_usage(stderr);
        return MX_ADMIN_EXIT_USAGE;
    }
    int used = 0;
    const verb *v = match_verb(words, nwords, &used);
    if (v == NULL) {
        if (strcmp(words[0], "user") == 0 || strcmp(words[0], "cores") == 0) {
            if (help) {
                print_group(stdout, words[0]);
                return MX_ADMIN_EXIT_OK;
            }
            if (nwords == 1)
                return usage_error("'%s' needs a verb: %s", words[0],
                                   words[0][0] == 'u'
                                       ? "add, list, passwd, role, remove, totp-reset"
                                       : "list, rename, remove, rotate");
            return usage_error("unknown command '%s %s'", words[0], words[1]);
        }
        return usage_error("unknown command '%s'", words[0]);
    }
    if (help) {
        printf("Usage:\n");
        print_verb(stdout, v);
        return MX_ADMIN_EXIT_OK;
    }
    if (bad_value != NULL)
        return usage_error("%s needs a value", bad_value);
    for (int k = used; k < nwords; k++)
        c.pos[c.npos++] = words[k];
    if (c.npos != v->nargs)
        return usage_error("'%s' takes %s%s", v->name, v->nargs ? "" : "no arguments",
                           v->nargs ? v->args : "");
    struct {
        unsigned bit;
        bool set;
        const char *name;
    } opts[] = {{OPT_ROLE, c.role != NULL, "--role"},
                {OPT_PASSWORD_STDIN, c.password_stdin, "--password-stdin"},
                {OPT_USES, c.uses != NULL, "--uses"},
                {OPT_TTL, c.ttl != NULL, "--ttl"},
                {OPT_LIMIT, c.limit != NULL, "--limit"}};
    for (size_t k = 0; k < sizeof opts / sizeof *opts; k++)
        if (opts[k].set && !(v->opts & opts[k].bit))
            return usage_error("%s does not go with '%s'", opts[k].name, v->name);
    if (c.role != NULL && strcmp(c.role, "admin") != 0 && strcmp(c.role, "user") != 0)
        return usage_error("--role is admin or user, not '%s'", c.role);
    bool by_name = strncmp(v->name, "user ", 5) == 0 && v->nargs > 0;
    if (by_name && !mx_username_valid(c.pos[0]))
        return usage_error("invalid username '%s' (1-%d of letters, digits, '.', '_', '@', '-', "
                           "starting with a letter or digit)",
                           c.pos[0], MX_USERNAME_MAX);
    int role = MX_ROLE_USER;
    if (strcmp(v->name, "user role") == 0) {
        if (strcmp(c.pos[1], "admin") == 0)
            role = MX_ROLE_ADMIN;
        else if (strcmp(c.pos[1], "user") != 0)
            return usage_error("the role is admin or user, not '%s'", c.pos[1]);
    }
    c.now_ms = cx_clock_now_ms();
    /* Number options are checked before the store is opened: a typo changes nothing. */
    c.uses_n = 1;
    c.ttl_s = CX_PAIRING_DEFAULT_TTL_S;
    c.limit_n = AUDIT_DEFAULT_LIMIT;
    if (c.uses != NULL && cx_parse_int(c.uses, 1, MX_PAIRING_MAX_USES, &c.uses_n) != CX_OK)
        return usage_error("--uses must be a number from 1 to %d", MX_PAIRING_MAX_USES);
    if (c.ttl != NULL && (cx_parse_duration(c.ttl, &c.ttl_s) != CX_OK || c.ttl_s < 1 ||
                          c.ttl_s > MX_PAIRING_MAX_TTL_MS / 1000))
        return usage_error("--ttl must be a duration from 1s to 30d (e.g. 15m, 2h)");
    if (c.limit != NULL && cx_parse_int(c.limit, 1, AUDIT_MAX_LIMIT, &c.limit_n) != CX_OK)
        return usage_error("--limit must be a number from 1 to %d", AUDIT_MAX_LIMIT);

    if (strcmp(v->name, "user add") != 0 && !store_exists(&c, home))
        return MX_ADMIN_EXIT_FAILED;
    if (open_store(&c, home) != MX_ADMIN_EXIT_OK)
        return MX_ADMIN_EXIT_FAILED;
    int ex;
    const char *n = v->name;
    if (strcmp(n, "user add") == 0)
        ex = do_user_add(&c, c.pos[0]);
    else if (strcmp(n, "user list") == 0)
        ex = do_user_list(&c);
    else if (strcmp(n, "user passwd") == 0)
        ex = do_user_passwd(&c, c.pos[0]);
    else if (strcmp(n, "user role") == 0)
        ex = do_user_change(&c, UC_ROLE, c.pos[0], role);
    else if (strcmp(n, "user remove") == 0)
        ex = do_user_change(&c, UC_REMOVE, c.pos[0], 0);
    else if (strcmp(n, "user totp-reset") == 0)
        ex = do_user_change(&c, UC_TOTP_RESET, c.pos[0], 0);
    else if (strcmp(n, "pair") == 0)
        ex = do_pair(&c);
    else if (strcmp(n, "cores list") == 0)
        ex = do_cores_list(&c);
    else if (strcmp(n, "cores rename") == 0)
        ex = do_core_change(&c, CC_RENAME, c.pos[0], c.pos[1]);
    else if (strcmp(n, "cores remove") == 0)
        ex = do_core_change(&c, CC_REMOVE, c.pos[0], NULL);
    else if (strcmp(n, "cores rotate") == 0)
        ex = do_cores_rotate(&c, c.pos[0]);
    else
        ex = do_audit(&c);
    fflush(stdout);
    mx_store_close(c.s);
    return ex;
}
