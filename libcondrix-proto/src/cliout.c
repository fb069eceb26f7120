/* Failure and usage output shared by `condrix-core auth` and `condrix-maestro` admin verbs,
 * so both speak to operators and scripts the same way. */
#include "condrix/cliout.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

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
