/* Failure and usage output shared by `condrix-core auth` and `condrix-maestro` admin verbs,
 * so both speak to operators and scripts the same way. */
#include "condrix/cliout.h"

#include <jansson.h>
#include <stdio.h>

int cx_cli_usage_errorv(const char *prog, const char *fmt, va_list ap)
{
    fprintf(stderr, "%s: ", prog);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nRun '%s --help' for usage.\n", prog);
    return CX_CLI_EXIT_USAGE;
}

int cx_cli_failv(const char *prog, bool json, const char *code, const char *hint, const char *fmt,
                 va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    fprintf(stderr, "%s: %s\n", prog, msg);
    if (hint != NULL)
        fprintf(stderr, "hint: %s\n", hint);
    if (json) {
        json_t *o = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg);
        if (o != NULL) {
            json_dumpf(o, stdout, JSON_COMPACT);
            fputc('\n', stdout);
            json_decref(o);
        }
    }
    return CX_CLI_EXIT_FAILED;
}
