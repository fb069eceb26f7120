/* `condrix-core auth ...`: the operator's verbs for the Core's access tokens and their
 * TOTP, run against the same core.db a running server uses (WAL makes that safe, and the
 * server re-checks tokens in the database at every authentication). */
#ifndef CONDRIX_CORE_CLI_AUTH_H
#define CONDRIX_CORE_CLI_AUTH_H

#include <stdio.h>

/* Exit codes of cx_core_auth_cli. */
enum cx_core_auth_exit {
    CX_CORE_AUTH_EXIT_OK = 0,     /* done */
    CX_CORE_AUTH_EXIT_FAILED = 1, /* the operation failed: not found, name taken, wrong code,
                                   * database trouble */
    CX_CORE_AUTH_EXIT_USAGE = 2,  /* bad command line; nothing was changed */
};

/* Run one verb. argv[0] is "auth"; the verbs are list, create, revoke, rotate and
 * totp setup|enable|disable|status, each with --json (one JSON object on stdout) and
 * --help. db_path is core.db (its directory must exist). Results go to stdout, errors with
 * a hint to stderr. Every change writes an audit row (address "cli") in the same
 * transaction. Returns an exit code from enum cx_core_auth_exit. */
int cx_core_auth_cli(int argc, char **argv, const char *db_path);

/* The usage text of all verbs. */
void cx_core_auth_usage(FILE *out);

#endif
