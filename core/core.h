/* The Core server's state and its entry points: the WebSocket service of PROTOCOL.md
 * sections 3 and 4 on top of the shared connection layer and the token store. */
#ifndef CONDRIX_CORE_CORE_H
#define CONDRIX_CORE_CORE_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "condrix/config.h"
#include "condrix/msg.h"
#include "condrix/net.h"
#include "condrix/ratelimit.h"
#include "tokens.h"

/* How many distinct tokens' last-used times are held before a flush is forced. */
#define CX_CORE_TOUCH_BATCH 64
/* Last-used times are written at most this often (ARCHITECTURE: batched bookkeeping). */
#define CX_CORE_TOUCH_FLUSH_MS 5000
#define CX_CORE_HOUSEKEEPING_MS 1000 /* how soon admin verbs' revocations take effect */

typedef struct cx_core_touch {
    char name[CX_TOKEN_NAME_MAX_CHARS + 1]; /* token name */
    int64_t at;                             /* last use, Unix ms */
} cx_core_touch;

typedef struct cx_core_link cx_core_link; /* link.c: the outbound link to Maestro */

typedef struct cx_core {
    uv_loop_t *loop;              /* the one loop */
    cx_server *srv;               /* listener and connections */
    cx_tokens *tokens;            /* core.db */
    cx_ratelimit *rl;             /* per-address limits; owned by srv */
    bool dev;                     /* dev mode: local connections need no token */
    char core_id[64];             /* stable id, made once */
    char display_name[128];       /* shown to clients */
    char *maestro_url;            /* CONDRIX_MAESTRO_URL or NULL */
    uint64_t started_ms;          /* loop time at start, for uptime */
    uv_timer_t housekeeping;      /* last-used flush, rate-limit sweep, DB change watch */
    struct cx_db_watch *dbwatch;  /* other processes' commits to core.db */
    unsigned ticks;               /* housekeeping ticks */
    cx_core_touch touches[CX_CORE_TOUCH_BATCH]; /* pending last-used writes */
    int ntouches;
    bool stopping;                /* shutdown in progress */
    cx_core_link *link;           /* NULL when no Maestro is configured */
} cx_core;

/* Options the binary resolved from flags and the environment. */
typedef struct cx_core_options {
    const char *host;
    int port;
    bool dev;
    const char *home;             /* data directory */
    const char *tls_cert, *tls_key;
    const char *display_name;     /* NULL: the host name */
} cx_core_options;

/* Open the store, make the first-start token, start listening. Prints the first-start
 * token on stdout. Returns CX_OK or an error after logging what to do. */
int cx_core_start(cx_core *core, uv_loop_t *loop, const cx_core_options *opt);
/* Close every connection with 1001, flush, checkpoint; the loop then runs dry. */
void cx_core_stop(cx_core *core);
/* Free what start made (after the loop ran dry). */
void cx_core_free(cx_core *core);

/* ---- server.c, for the link ---- */
/* Serve a request Maestro relayed for one of its users, with these scopes; the answer
 * goes back over the link. */
void cx_core_dispatch_relayed(cx_core *core, const cx_msg *req, unsigned scopes);

/* ---- link.c ---- */
/* Dial CONDRIX_MAESTRO_URL when set (reads CONDRIX_MAESTRO_TOKEN and CONDRIX_MAESTRO_CA,
 * and wipes the token from the environment). CX_OK also when no Maestro is configured. */
int cx_core_link_start(cx_core *core);
/* Close the link for shutdown; no reconnect follows. */
void cx_core_link_stop(cx_core *core);
void cx_core_link_free(cx_core *core);
/* Send an envelope to Maestro (reference stolen); dropped when the link is down. */
void cx_core_link_send(cx_core *core, json_t *msg);
/* For core/info. */
bool cx_core_link_connected(const cx_core *core);
/* Maestro refused the stored token since it was last accepted (removed, rotated away). */
bool cx_core_link_token_refused(const cx_core *core);

#endif
