/* `condrix-maestro user|pair|cores|audit ...`: the operator's verbs for Maestro's users,
 * pairing codes, Core registry and audit trail, run against the same maestro.db a running
 * server uses (WAL makes that safe, and the server reads the database afresh at every
 * authentication). */
#ifndef CONDRIX_MAESTRO_CLI_ADMIN_H
#define CONDRIX_MAESTRO_CLI_ADMIN_H

#include <stdbool.h>
#include <stdio.h>

/* Exit codes of mx_admin_cli. */
enum mx_admin_exit {
    MX_ADMIN_EXIT_OK = 0,     /* done */
    MX_ADMIN_EXIT_FAILED = 1, /* the operation failed: not found, name taken, last admin,
                               * database trouble */
    MX_ADMIN_EXIT_USAGE = 2,  /* bad command line; nothing was changed */
};

/* Run one verb. argv[0] is the verb group ("user", "pair", "cores" or "audit"); the rest
 * are its words and options, each verb with --json (one JSON object on stdout) and --help.
 * home is Maestro's data directory (NULL: CONDRIX_HOME or ~/.condrix); it is created 0700
 * if missing. Passwords come from --password-stdin (one line) or are generated and printed
 * once, never from the command line. Results go to stdout, errors with a hint to stderr.
 * Every change writes an audit row (actor "cli") in the same transaction. Returns an exit
 * code from enum mx_admin_exit. */
int mx_admin_cli(int argc, char **argv, const char *home);

/* True when word names one of the verb groups above (for the binary's dispatch). */
bool mx_admin_is_group(const char *word);

/* The usage text of all verbs. */
void mx_admin_usage(FILE *out);

#endif
