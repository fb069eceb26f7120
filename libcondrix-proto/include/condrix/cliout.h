/* How the admin verbs of every binary report trouble: a usage error or a failed operation
 * goes to stderr with a hint for the operator and, with --json, also as
 * {"error":{code,message}} on stdout so scripts need not parse stderr. */
#ifndef CONDRIX_CLIOUT_H
#define CONDRIX_CLIOUT_H

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#define CX_CLI_EXIT_OK 0
#define CX_CLI_EXIT_FAILED 1
#define CX_CLI_EXIT_USAGE 2

/* "PROG: message" and "Run 'PROG --help' for usage." on stderr, and with json also
 * {"error":{"code":"USAGE",message}} on stdout. Returns CX_CLI_EXIT_USAGE. */
int cx_cli_usage_errorv(const char *prog, bool json, const char *fmt, va_list ap);
/* Whether --json is among the arguments (before a "--"): usage errors found while the
 * arguments are still being read answer in JSON too. */
bool cx_cli_wants_json(int argc, char **argv);
/* An option with a value at argv[*i]: "--opt VALUE" (advancing *i) or "--opt=VALUE".
 * False when argv[*i] is another option; *missing when the value is absent. */
bool cx_cli_take_value(int argc, char **argv, int *i, const char *opt, const char **out,
                       bool *missing);
/* obj (consumed) as one compact line on stdout: CX_CLI_EXIT_OK, or CX_CLI_EXIT_FAILED
 * (NULL obj: out of memory, reported as PROG's failure). */
int cx_cli_emit_json(const char *prog, json_t *obj);
/* A JSON string that held a secret: wipe its storage before it is released. */
void cx_cli_wipe_json_string(json_t *v);
/* Unix ms as an ISO 8601 string, or null for 0 (never). */
json_t *cx_cli_json_time(int64_t ms);
/* "2026-11-22 10:00" (UTC), or never_word for 0. */
const char *cx_cli_human_time(int64_t ms, const char *never_word, char out[32]);
/* "PROG: message", "hint: ..." (hint may be NULL) on stderr, and the JSON error on stdout
 * when json is set. Returns CX_CLI_EXIT_FAILED. */
int cx_cli_failv(const char *prog, bool json, const char *code, const char *hint, const char *fmt,
                 va_list ap);

#endif
