/* Internals of the `condrix` client CLI: the synchronous request helper over the async
 * WebSocket client (rpc.c), the session file (session.c), terminal prompts (prompt.c)
 * and the pure helpers for errors, times and name lookups (fmt.c) that main.c ties
 * together. Nothing here is part of libcondrix-proto; names carry the cli_ prefix. */
#ifndef CONDRIX_CLI_CLI_H
#define CONDRIX_CLI_CLI_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "condrix/msg.h"

/* Exit statuses, stable for scripts. */
enum cli_exit {
    CLI_EXIT_OK = 0,      /* done */
    CLI_EXIT_REFUSED = 1, /* the server answered with an error code */
    CLI_EXIT_USAGE = 2,   /* bad command line (or a local precondition) */
    CLI_EXIT_NET = 3,     /* cannot connect, TLS failure, timeout, link lost */
    CLI_EXIT_SESSION = 4, /* not signed in, or the session expired or was revoked */
};

#define CLI_DEFAULT_TIMEOUT_MS 10000
#define CLI_SESSION_FILE "cli.json"
#define CLI_SESSION_MAX_BYTES (64 * 1024) /* cli.json larger than this is not ours */
#define CLI_SECRET_MAX 1024               /* longest password or token read from input */

/* Why a command failed: the exit status plus a code and a message for the user. code
 * is a protocol error code (INVALID_TOKEN, ...) or one of the CLI's own (USAGE,
 * CONNECT_FAILED, TLS_ERROR, TIMEOUT, CONNECTION_CLOSED, NOT_SIGNED_IN, ...). */
typedef struct cli_err {
    int exit; /* enum cli_exit */
    char code[48];
    char message[512];
} cli_err;

void cli_err_set(cli_err *e, int exit_code, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- fmt.c: pure helpers (unit-tested) ---- */

/* The exit status for a protocol error code: the session codes give CLI_EXIT_SESSION,
 * everything else the server says CLI_EXIT_REFUSED. */
int cli_exit_for_code(const char *code);
/* A sentence that says what went wrong and what to do, for a failed response. url is
 * the server the user signed in to (for "run `condrix login URL`"); may be NULL.
 * retry_after < 0 when the response had none. */
void cli_explain(const char *code, const char *server_message, long retry_after, const char *url,
                 char *out, size_t out_size);
/* A time value from the wire (ISO 8601 string or Unix ms number) as Unix ms; 0 when
 * absent, null or unreadable. */
int64_t cli_time_ms(const json_t *v);
/* "never", "just now", "5s ago", "3m ago", "2h ago", "4d ago", or the UTC date for
 * older times; "in 5m" etc. for future ones. */
void cli_ago(int64_t now_ms, int64_t then_ms, char *out, size_t out_size);
/* "15 minutes", "1 hour", "2 days", "90 seconds" for a length of time. */
void cli_span(int64_t seconds, char *out, size_t out_size);
/* Find a Core in the array of cores.list by Maestro id, then the Core's own id, then
 * display name (exact, then case-insensitive). Returns the index, -1 when none
 * matches, -2 when a display name is shared by several (the user must give an id). */
long cli_find_core(const json_t *cores, const char *query);
/* Find a user in the array of users.list by id, then username (case-insensitive). */
long cli_find_user(const json_t *users, const char *query);
/* The array under key in a payload, or the payload itself when it is an array. */
json_t *cli_payload_array(json_t *payload, const char *key);
/* Overwrite a string member's bytes in place before the object is freed, so a secret
 * does not linger in freed heap memory. Absent or non-string members are ignored. */
void cli_json_wipe(json_t *obj, const char *key);

/* ---- rpc.c: one connection, one request at a time ---- */

typedef struct cli_conn cli_conn; /* opaque */

/* Connect and finish the upgrade within timeout_ms. ca_file: extra trusted CA for
 * wss (may be NULL). CX_OK, or a negative code with e filled (CLI_EXIT_NET). */
int cli_conn_open(const char *url, const char *ca_file, uint32_t timeout_ms, cli_conn **out,
                  cli_err *e);
/* Send one request (payload stolen; NULL for {}) and wait for the response whose
 * correlationId matches, ignoring events and anything else. CX_OK with *resp filled
 * (free with cx_msg_free) whether the server said success or not; otherwise a
 * negative code with e filled (CLI_EXIT_NET: timeout, closed before the answer). The
 * request's encoded text is wiped after sending: payloads may hold secrets. */
int cli_conn_request(cli_conn *c, const char *ns, const char *action, json_t *payload, cx_msg *resp,
                     cli_err *e);
bool cli_conn_is_open(const cli_conn *c);
/* Close politely (bounded wait for the close handshake) and free. NULL is fine. */
void cli_conn_close(cli_conn *c);

/* ---- session.c: ~/.condrix/cli.json ---- */

typedef struct cli_session {
    char *url; /* the Maestro URL signed in to */
    char *username;
    char *token;      /* the session token; wiped on free */
    char *expires_at; /* as the server sent it (ISO 8601), may be NULL */
    char *ca;         /* extra CA file for wss, may be NULL */
} cli_session;

/* The path of cli.json (CONDRIX_HOME or ~/.condrix). malloc'd, NULL on failure. */
char *cli_session_path(void);
/* Load it. CX_OK; CX_E_NOTFOUND when there is no file; CX_E_FORMAT when it is not a
 * session; CX_E_IO otherwise (e filled in every failure case). */
int cli_session_load(cli_session *s, cli_err *e);
/* Write it atomically: a 0600 temporary file in the same directory, fsync, rename,
 * fsync of the directory. The directory is created 0700 if needed. */
int cli_session_save(const cli_session *s, cli_err *e);
/* Delete cli.json; a missing file is fine. */
int cli_session_remove(cli_err *e);
void cli_session_free(cli_session *s);

/* ---- prompt.c: questions on the terminal ---- */

/* True when stdin is a terminal. */
bool cli_stdin_tty(void);
/* Ask for a line. With echo off (secret) when stdin is a terminal; from stdin as a
 * plain line otherwise (no prompt printed then). The prompt goes to stderr. The line
 * ends at '\n' (dropped, as is a '\r' before it). CX_OK; CX_E_NOTFOUND at end of
 * input with nothing read; CX_E_TOOBIG when longer than out_size - 1 (out wiped);
 * CX_E_IO on a read error. Bytes are read one at a time, so nothing is left behind
 * in a stdio buffer. */
int cli_prompt(const char *prompt, bool secret, char *out, size_t out_size);
/* Ask yes/no on the terminal; false when stdin is not a terminal. */
bool cli_confirm(const char *question);

#endif
