/* Failure and usage output shared by `condrix-core auth` and `condrix-maestro` admin verbs,
 * so both speak to operators and scripts the same way. */
#include "condrix/cliout.h"
#include "condrix/msg.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static void json_error(const char *code, const char *msg)
{
    json_t *o = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg);
    if (o != NULL) {
        json_dumpf(o, stdout, JSON_COMPACT);
        fputc('\n', stdout);
        json_decref(o);
    }
}

int cx_cli_usage_errorv(const char *prog, bool json, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    fprintf(stderr, "%s: %s\nRun '%s --help' for usage.\n", prog, msg, prog);
    if (json)
        json_error("USAGE", msg);
    return CX_CLI_EXIT_USAGE;
}

bool cx_cli_wants_json(int argc, char **argv)
{
    for (int i = 0; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "--json") == 0)
            return true;
    return false;
}

int cx_cli_failv(const char *prog, bool json, const char *code, const char *hint, const char *fmt,
                 va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    fprintf(stderr, "%s: %s\n", prog, msg);
    if (hint != NULL)
        fprintf(stderr, "hint: %s\n", hint);
    if (json)
        json_error(code, msg);
    return CX_CLI_EXIT_FAILED;
}

bool cx_cli_take_value(int argc, char **argv, int *i, const char *opt, const char **out,
                       bool *missing)
{
    size_t n = strlen(opt);
    if (strncmp(argv[*i], opt, n) != 0)
        return false;
    if (argv[*i][n] == '=') {
        *out = argv[*i] + n + 1;
        return true;
    }
    if (argv[*i][n] != '\0')
        return false;
    if (*i + 1 >= argc) {
        *missing = true;
        return true;
    }
    *out = argv[++*i];
    return true;
}

int cx_cli_emit_json(const char *prog, json_t *obj)
{
    if (obj == NULL) {
        fprintf(stderr, "%s: out of memory\n", prog);
        json_error("INTERNAL", "out of memory");
        return CX_CLI_EXIT_FAILED;
    }
    int rc = json_dumpf(obj, stdout, JSON_COMPACT);
    fputc('\n', stdout);
    json_decref(obj);
    return rc == 0 ? CX_CLI_EXIT_OK : CX_CLI_EXIT_FAILED;
}

void cx_cli_wipe_json_string(json_t *v)
{
    if (json_is_string(v))
        sodium_memzero((char *)json_string_value(v), json_string_length(v));
}

json_t *cx_cli_json_time(int64_t ms)
{
    char buf[25];
    if (ms == 0)
        return json_null();
    cx_msg_timestamp(ms, buf);
    return json_string(buf);
}

const char *cx_cli_human_time(int64_t ms, const char *never_word, char out[32])
{
    if (ms == 0)
        return never_word;
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    if (gmtime_r(&s, &tm) == NULL || strftime(out, 32, "%Y-%m-%d %H:%M", &tm) == 0)
        snprintf(out, 32, "?");
    return out;
}
