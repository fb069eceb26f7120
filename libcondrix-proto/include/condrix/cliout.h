/* How the admin verbs of every binary report trouble: a usage error or a failed operation
 * goes to stderr with a hint for the operator and, with --json, also as
 * {"error":{code,message}} on stdout so scripts need not parse stderr. */
#ifndef CONDRIX_CLIOUT_H
#define CONDRIX_CLIOUT_H

#include <stdarg.h>
#include <stdbool.h>

#define CX_CLI_EXIT_OK 0
#define CX_CLI_EXIT_FAILED 1
#define CX_CLI_EXIT_USAGE 2

/* "PROG: message" and "Run 'PROG --help' for usage." on stderr, and with json also
 * {"error":{"code":"USAGE",message}} on stdout. Returns CX_CLI_EXIT_USAGE. */
int cx_cli_usage_errorv(const char *prog, bool json, const char *fmt, va_list ap);
/* Whether --json is among the arguments (before a "--"): usage errors found while the
 * arguments are still being read answer in JSON too. */
bool cx_cli_wants_json(int argc, char **argv);
/* "PROG: message", "hint: ..." (hint may be NULL) on stderr, and the JSON error on stdout
 * when json is set. Returns CX_CLI_EXIT_FAILED. */
int cx_cli_failv(const char *prog, bool json, const char *code, const char *hint, const char *fmt,
                 va_list ap);

#endif
