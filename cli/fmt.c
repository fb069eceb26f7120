/* Pure helpers of the condrix CLI: what a protocol error code means to the user and to
 * the exit status, times as people read them, and finding a Core or user by what the
 * user typed. No I/O, so test/unit/test_cli_fmt.c checks them directly. */
#include "cli.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "condrix/clock.h"
#include "condrix/error.h"

void cli_err_set(cli_err *e, int exit_code, const char *code, const char *fmt, ...)
{
    if (!e)
        return;
    e->exit = exit_code;
    snprintf(e->code, sizeof e->code, "%s", code ? code : "ERROR");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

int cli_exit_for_code(const char *code)
{
    if (!code)
        return CLI_EXIT_REFUSED;
    if (strcmp(code, "INVALID_SESSION") == 0 || strcmp(code, "SESSION_EXPIRED") == 0 ||
        strcmp(code, "NOT_SIGNED_IN") == 0)
        return CLI_EXIT_SESSION;
    return CLI_EXIT_REFUSED;
}

void cli_explain(const char *code, const char *server_message, long retry_after, const char *url,
                 char *out, size_t out_size)
{
    const char *sm = server_message && *server_message ? server_message : NULL;
    const char *u = url && *url ? url : "URL";
    if (!code)
        code = "";

    if (strcmp(code, "INVALID_SESSION") == 0 || strcmp(code, "SESSION_EXPIRED") == 0) {
        snprintf(out, out_size, "%s: run `condrix login %s`",
                 code[0] == 'S' ? "session expired" : "session no longer valid", u);
    } else if (strcmp(code, "INVALID_CREDENTIALS") == 0) {
        /* The server says which: a sign-in's pair, or a password check's old password. */
        snprintf(out, out_size, "%s", sm ? sm : "wrong username or password");
    } else if (strcmp(code, "RATE_LIMITED") == 0) {
        if (retry_after > 0)
            snprintf(out, out_size, "too many attempts: try again in %ld s", retry_after);
        else
            snprintf(out, out_size, "too many attempts: wait a while and try again");
    } else if (strcmp(code, "INVALID_TOTP") == 0) {
        snprintf(out, out_size,
                 "wrong or already used TOTP code: wait for the next code and try again");
    } else if (strcmp(code, "TOTP_REQUIRED") == 0) {
        snprintf(out, out_size,
                 "a TOTP code is required: give it with --totp CODE "
                 "or run the command in a terminal to be asked");
    } else if (strcmp(code, "INVALID_TOKEN") == 0) {
        snprintf(out, out_size,
                 "the access token was refused (unknown, revoked or "
                 "malformed): check CONDRIX_CORE_TOKEN or --token");
    } else if (strcmp(code, "TOKEN_EXPIRED") == 0) {
        snprintf(out, out_size, "the access token has expired: ask the Core's admin for a new one");
    } else if (strcmp(code, "TOKEN_REQUIRED") == 0) {
        snprintf(out, out_size, "no access token given: set CONDRIX_CORE_TOKEN");
    } else if (strcmp(code, "FORBIDDEN") == 0) {
        snprintf(out, out_size, "not allowed: %s", sm ? sm : "ask an admin");
    } else if (strcmp(code, "CORE_OFFLINE") == 0) {
        snprintf(out, out_size, "the Core is offline%s%s", sm ? ": " : "", sm ? sm : "");
    } else if (strcmp(code, "AUTH_REQUIRED") == 0) {
        snprintf(out, out_size, "the server wants authentication first%s%s", sm ? ": " : "",
                 sm ? sm : "");
    } else if (sm) {
        snprintf(out, out_size, "%s (%s)", sm, code[0] ? code : "error");
    } else {
        snprintf(out, out_size, "the server refused: %s", code[0] ? code : "unknown error");
    }
}

int64_t cli_time_ms(const json_t *v)
{
    if (json_is_integer(v))
        return (int64_t)json_integer_value(v);
    if (json_is_real(v))
        return (int64_t)json_real_value(v);
    if (json_is_string(v)) {
        int64_t ms;
        if (cx_clock_parse_iso8601(json_string_value(v), &ms) == CX_OK)
            return ms;
    }
    return 0;
}

/* The largest unit that fits, one figure: "3m", "2h". */
static void short_span(int64_t s, char *out, size_t out_size)
{
    if (s < 60)
        snprintf(out, out_size, "%llds", (long long)s);
    else if (s < 3600)
        snprintf(out, out_size, "%lldm", (long long)(s / 60));
    else if (s < 86400)
        snprintf(out, out_size, "%lldh", (long long)(s / 3600));
    else
        snprintf(out, out_size, "%lldd", (long long)(s / 86400));
}

void cli_ago(int64_t now_ms, int64_t then_ms, char *out, size_t out_size)
{
    if (then_ms <= 0) {
        snprintf(out, out_size, "never");
        return;
    }
    int64_t d = (now_ms - then_ms) / 1000;
    char span[32];
    if (d >= 0 && d < 2) {
        snprintf(out, out_size, "just now");
    } else if (d >= 0 && d < 7 * 86400) {
        short_span(d, span, sizeof span);
        snprintf(out, out_size, "%s ago", span);
    } else if (d < 0 && -d < 7 * 86400) {
        short_span(-d, span, sizeof span);
        snprintf(out, out_size, "in %s", span);
    } else {
        time_t t = (time_t)(then_ms / 1000);
        struct tm tm;
        if (gmtime_r(&t, &tm) && strftime(out, out_size, "%Y-%m-%d", &tm) > 0)
            return;
        snprintf(out, out_size, "?");
    }
}

void cli_span(int64_t s, char *out, size_t out_size)
{
    static const struct {
        int64_t secs;
        const char *name;
    } units[] = {{604800, "week"}, {86400, "day"}, {3600, "hour"}, {60, "minute"}};
    for (size_t i = 0; i < sizeof units / sizeof *units; i++) {
        if (s >= units[i].secs && s % units[i].secs == 0) {
            int64_t n = s / units[i].secs;
            snprintf(out, out_size, "%lld %s%s", (long long)n, units[i].name, n == 1 ? "" : "s");
            return;
        }
    }
    snprintf(out, out_size, "%lld second%s", (long long)s, s == 1 ? "" : "s");
}

static const char *str_member(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

long cli_find_core(const json_t *cores, const char *query)
{
    if (!json_is_array(cores) || !query || !*query)
        return -1;
    size_t n = json_array_size(cores);
    static const char *const exact_keys[] = {"id", "coreId"};
    for (size_t k = 0; k < 2; k++) {
        for (size_t i = 0; i < n; i++) {
            const char *v = str_member(json_array_get(cores, i), exact_keys[k]);
            if (v && strcmp(v, query) == 0)
                return (long)i;
        }
    }
    /* Display names are not unique: a name that fits several is refused, not guessed. */
    for (int fold = 0; fold < 2; fold++) {
        long found = -1;
        for (size_t i = 0; i < n; i++) {
            const char *v = str_member(json_array_get(cores, i), "displayName");
            if (!v || (fold ? strcasecmp(v, query) : strcmp(v, query)) != 0)
                continue;
            if (found >= 0)
                return -2;
            found = (long)i;
        }
        if (found >= 0)
            return found;
    }
    return -1;
}

long cli_find_user(const json_t *users, const char *query)
{
    if (!json_is_array(users) || !query || !*query)
        return -1;
    size_t n = json_array_size(users);
    for (size_t i = 0; i < n; i++) {
        const char *v = str_member(json_array_get(users, i), "id");
        if (v && strcmp(v, query) == 0)
            return (long)i;
    }
    /* Usernames are unique case-insensitively on the server. */
    for (size_t i = 0; i < n; i++) {
        const char *v = str_member(json_array_get(users, i), "username");
        if (v && strcasecmp(v, query) == 0)
            return (long)i;
    }
    return -1;
}

json_t *cli_payload_array(json_t *payload, const char *key)
{
    if (json_is_array(payload))
        return payload;
    json_t *v = json_object_get(payload, key);
    return json_is_array(v) ? v : NULL;
}

void cli_json_wipe(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_string(v))
        return;
    /* jansson owns the bytes; they are about to be freed, and the length is kept. */
    sodium_memzero((char *)json_string_value(v), json_string_length(v));
}
