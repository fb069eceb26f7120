/* condrix-maestro's private state: the server, one small record per connection, the
 * registry of online Cores, the Argon2id job queue and the relay table, shared by
 * server.c (connections, dispatch, start/stop), clients.c (sign-in and admin actions),
 * cores.c (Core links, pairing, rotation) and relay.c (requests forwarded to Cores). */
#ifndef CONDRIX_MAESTRO_MAESTRO_H
#define CONDRIX_MAESTRO_MAESTRO_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "condrix/config.h"
#include "condrix/msg.h"
#include "condrix/reply.h"
#include "condrix/net.h"
#include "condrix/ratelimit.h"
#include "store.h"

/* Argon2id runs at most this many at once; waiting jobs beyond the queue are refused
 * with RATE_LIMITED, so a flood of logins cannot exhaust memory. */
#ifndef CX_MAESTRO_HASH_CONCURRENCY
#define CX_MAESTRO_HASH_CONCURRENCY 2
#endif
#ifndef CX_MAESTRO_HASH_QUEUE
#define CX_MAESTRO_HASH_QUEUE 64
#endif
#define MX_RELAY_TIMEOUT_MS 30000     /* a relayed request unanswered this long: CORE_OFFLINE */
#define MX_PUSH_TIMEOUT_MS 10000      /* core/maestro.setToken unanswered: fall back */
#define MX_RELAY_MAX_PER_CLIENT 256   /* relays in flight per client connection */
#define MX_PASSWORD_GEN_CHARS 20      /* generated passwords */
#define MX_SESSION_TOUCH_MS 60000     /* last-seen writes per session at most this often */
#define MX_TICK_MS 1000               /* relay timeouts, rate-limit sweep */
#define MX_UA_MAX_CHARS 255           /* User-Agent kept for sessions.list */
#define MX_HELD_MAX 64                /* messages held behind a password check */
#define MX_HELD_BYTES (1024 * 1024)   /* and their total size; beyond, close 1008 */

enum mx_peer_kind { MX_PEER_NEW = 0, MX_PEER_CLIENT = 1, MX_PEER_CORE = 2 };

struct mx_job;
struct mx_held;
struct mx_pending;
struct mx_push;

/* A signed-in client: who it is and which session it rides on. */
typedef struct mx_client {
    char user_id[MX_ID_CHARS + 1];       /* users.id */
    char username[MX_USERNAME_MAX + 1];  /* for audit lines and pairing.createdBy */
    char session_id[MX_ID_CHARS + 1];    /* public session id */
    uint8_t token_hash[CX_TOKEN_HASH_BYTES]; /* SHA-256 of the session token, checked per request */
    int role;                            /* enum mx_role, refreshed on every request */
    int64_t touched_at;                  /* last mx_session_touch, Unix ms */
} mx_client;

/* An authenticated Core connection, listed in the server's registry while it lasts. */
typedef struct mx_link {
    struct mx_link *next;                      /* registry of online Cores */
    cx_conn *conn;                             /* the Core's connection */
    char id[MX_ID_CHARS + 1];                  /* Maestro's id for it (targetCoreId) */
    char core_id[MX_CORE_ID_MAX + 1];          /* the Core's own id */
    char display_name[MX_DISPLAY_NAME_MAX + 1];
    char pairing_id[MX_ID_CHARS + 1];          /* code redeemed here, consumed at ack */
    char issued_prefix[9];                     /* prefix of a token issued here, "" if none */
    char token_prefix[9];                      /* the registry's token prefix as this link
                                                * last knew it (auth, ack, push) */
    struct mx_pending *pending;                /* relayed requests awaiting an answer */
    struct mx_push *push;                      /* a token push in flight, or NULL */
} mx_link;

/* One connection. Kept small: a pre-auth connection holds only this. */
typedef struct mx_peer {
    const char *ip;           /* client address for limits, logs and sessions (the conn's) */
    char *user_agent;         /* malloc'd, capped; NULL when absent */
    mx_client *client;        /* malloc'd once signed in */
    mx_link *link;            /* malloc'd once a Core authenticated */
    struct mx_job *job;       /* a password job in flight for this connection */
    cx_msg_budget budget;     /* per-connection message rate */
    uint16_t nrelay;          /* relayed requests in flight */
    uint8_t strikes;          /* requests before auth */
    uint8_t invalid;          /* invalid messages in a row */
    uint8_t kind;             /* enum mx_peer_kind */
    uint8_t failing : 1;      /* a failed sign-in awaits its delayed answer */
    uint8_t local : 1;        /* loopback, no forwarding header, client auth disabled */
    uint8_t draining : 1;     /* mx_peer_resume is handling held messages */
    struct mx_held *held;     /* a client's messages held while job or failing is set */
    struct mx_held *held_tail;
    uint16_t nheld;           /* messages held */
    uint32_t held_bytes;      /* and their size */
} mx_peer;

typedef struct mx_server {
    uv_loop_t *loop;              /* the one loop */
    cx_server *srv;               /* listener and connections */
    mx_store *store;              /* maestro.db */
    cx_ratelimit *rl;             /* per client address; owned by srv */
    cx_ratelimit *rl_user;        /* failed logins per lowercased username */
    bool client_auth;             /* false: loopback clients may list and relay unsigned */
    bool have_secret;             /* CONDRIX_MAESTRO_CORE_SECRET is set */
    uint8_t secret_hash[32];      /* its SHA-256, compared in constant time */
    char maestro_id[MX_ID_CHARS + 1]; /* stable id, made once by the store */
    char dummy_hash[128];         /* Argon2id of a random password: unknown users */
    mx_link *links;               /* online Cores */
    struct mx_job *queue_head;    /* password jobs waiting for a slot */
    struct mx_job *queue_tail;
    int queued;                   /* jobs in the queue */
    struct cx_db_watch *dbwatch;  /* other processes' commits to maestro.db */
    uint32_t run_tag;             /* random per run: relayed request ids stay unique */
    uint64_t relay_seq;           /* relayed requests so far */
    int hashing;                  /* jobs running in the thread pool */
    uv_timer_t tick;              /* relay timeouts, sweeps */
    bool tick_started;
    unsigned ticks;               /* sweeps of stores and limiters run every 60th */
    bool stopping;                /* shutdown in progress */
    const char *web_dir;          /* --web-dir, or NULL for the embedded web client */
} mx_server;

/* Options the binary resolved from flags and the environment. */
typedef struct mx_options {
    const char *host;
    int port;
    const char *home;             /* data directory */
    const char *tls_cert, *tls_key;
    const char *web_dir;          /* serve the web client from here, NULL: embedded */
} mx_options;

/* Open the store, make the first-start admin (printed on stdout), listen. */
int mx_server_start(mx_server *m, uv_loop_t *loop, const mx_options *opt);
/* Close every connection with 1001, checkpoint; the loop then runs dry. */
void mx_server_stop(mx_server *m);
/* Free what start made (after the loop ran dry). */
void mx_server_free(mx_server *m);

/* ---- server.c: small helpers (sending is condrix/reply.h) ---- */
void mx_iso(int64_t ms, char out[32]);
const char *mx_role_name(int role);
/* Close, with code, every signed-in connection of user_id, except `except`: only those
 * on session_id when not NULL, and none on keep_session when not NULL. */
void mx_close_user_conns(mx_server *m, const char *user_id, const char *session_id,
                         const char *keep_session, cx_conn *except, uint16_t code,
                         const char *reason);
/* May this connection see the Core with Maestro id core_id? */
bool mx_peer_may_see(mx_server *m, const mx_peer *p, const char *core_id);

/* ---- clients.c ---- */
/* A maestro-namespace request from a client (signed in, or login/auth before). */
void mx_client_request(mx_server *m, cx_conn *c, const cx_msg *req);
/* Re-check the session of a signed-in client; false when the connection was answered
 * and closed (4002). */
bool mx_client_session_ok(mx_server *m, cx_conn *c, const cx_msg *req);
/* The connection closes: forget its password job. */
void mx_jobs_detach(mx_server *m, mx_peer *p);
/* A password job or a delayed sign-in answer of this connection is done: handle the
 * messages that arrived meanwhile, in order (server.c). */
void mx_peer_resume(mx_server *m, cx_conn *c);

/* ---- cores.c ---- */
/* Send text to every client allowed to see the Core with Maestro id core_id. */
void mx_send_to_viewers(mx_server *m, const char *core_id, const char *text, size_t len);
void mx_core_auth(mx_server *m, cx_conn *c, const cx_msg *req);
void mx_core_message(mx_server *m, cx_conn *c, cx_msg *msg);
void mx_core_closed(mx_server *m, cx_conn *c, mx_peer *p);
/* maestro.db changed under us (an admin verb): drop the links of Cores removed or
 * rotated there, as the same change over the wire does. */
void mx_cores_recheck(mx_server *m);
mx_link *mx_link_find(mx_server *m, const char *id);
void mx_act_cores_list(mx_server *m, cx_conn *c, const cx_msg *req);
void mx_act_cores_rename(mx_server *m, cx_conn *c, const cx_msg *req);
void mx_act_cores_remove(mx_server *m, cx_conn *c, const cx_msg *req);
void mx_act_cores_rotate(mx_server *m, cx_conn *c, const cx_msg *req);
/* A client goes: forget it as the requester of a push. */
void mx_push_client_gone(mx_server *m, cx_conn *c);
void mx_push_sweep(mx_server *m, uint64_t now);

/* ---- relay.c ---- */
/* A request in a Core namespace with targetCoreId; role and grants checked here. */
void mx_relay_request(mx_server *m, cx_conn *c, const cx_msg *req, bool as_admin);
/* A response from a Core: answers a relayed request; false if it matched none. */
bool mx_relay_response(mx_server *m, mx_link *l, cx_msg *msg);
/* An event or stream from a Core, to every client allowed to see it. */
void mx_relay_event(mx_server *m, mx_link *l, cx_msg *msg);
void mx_relay_client_gone(mx_server *m, cx_conn *c);
void mx_relay_link_gone(mx_server *m, mx_link *l);
void mx_relay_sweep(mx_server *m, uint64_t now);
/* Is ns/action a read action a `user` may relay? */
bool mx_relay_is_read(const char *ns, const char *action);

#endif
