/* condrix-bench: a libuv load generator that measures a running Core (or anything that
 * speaks its core/auth handshake, such as the Node reference peer in peer.js) through
 * the library's own sans-I/O client halves: cx_http for the upgrade, cx_ws in client role.
 *
 * Five modes, each printing one machine-readable line of key=value pairs on stdout:
 *   handshake  C workers loop over connect, upgrade, core/auth, reply, close handshake
 *   requests   C authenticated connections each keep K core/health requests in flight
 *   idle       open N authenticated connections and hold them (memory, fd ceiling)
 *   relay      as requests, but signed in to a Maestro, each core/health carrying
 *              targetCoreId so Maestro relays it to a Core and back
 *   logins     C connections to a Maestro upgrade first, then all send maestro/login at
 *              once: the wall time until every one is answered, and each one's latency
 * With --server-pid, the server's own CPU time (utime + stime from /proc/PID/stat) is
 * read at the edges of the measured window, so CPU per operation stays honest even when
 * this process competes with the server for the same cores; idle mode reads VmRSS. */
#include "condrix/buf.h"
#include "condrix/error.h"
#include "condrix/http.h"
#include "condrix/ws.h"

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define BENCH_VERSION "1.0"
#define HEAD_MAX 16384           /* response head cap, as the server's request cap */
#define MESSAGE_MAX (1u << 20)   /* reply cap; our replies are a few hundred bytes */
#define READ_BUF_BYTES 65536     /* one read buffer for the whole loop */
#define SRC_FIRST 2              /* source addresses 127.0.0.2 .. 127.0.0.254 */
#define SRC_LAST 254
#define IDLE_STALL_MS 3000       /* idle mode: no handshake finished this long = ceiling */
#define IDLE_FAIL_MAX 100        /* idle mode: this many failures = the server is full */
#define TICK_MS 250
#define SETUP_TIMEOUT_MS 20000   /* requests/relay/logins: every connection ready by then */
#define LOGINS_TIMEOUT_MS 60000  /* logins: every login answered by then */
#define ID_MAX 128               /* relay: a Core id we put in targetCoreId */

enum mode { MODE_HANDSHAKE, MODE_REQUESTS, MODE_IDLE, MODE_RELAY, MODE_LOGINS };

enum cstate {
    CS_CONNECTING, /* TCP connect in flight */
    CS_UPGRADING,  /* upgrade request sent, response head awaited */
    CS_WAITING,    /* logins: upgraded, holding the login until every connection is */
    CS_AUTHING,    /* core/auth sent, reply awaited */
    CS_OPEN,       /* authenticated */
    CS_CLOSING,    /* we sent a close frame; the server's close is awaited */
};

/* One client connection. */
typedef struct bconn {
    uv_tcp_t tcp;          /* the socket; tcp.data points back here */
    uv_connect_t creq;     /* connect request */
    cx_http_resp *resp;    /* response-head parser until the upgrade is done */
    cx_ws *ws;             /* the WebSocket session after the upgrade */
    char key[25];          /* our Sec-WebSocket-Key */
    enum cstate st;        /* where in the exchange we are */
    bool closing;          /* uv_close was called; write and read nothing more */
    bool ready;            /* counted among the authenticated */
    unsigned idx;          /* index, for request ids */
    uint64_t t_start;      /* hrtime when the handshake started */
    uint64_t *sent_at;     /* requests mode: send time of each in-flight request (ring) */
    cx_buf out;            /* output gathered while corked */
    bool corked;           /* inside read processing: gather output */
    uint64_t seq_sent;     /* requests sent */
    uint64_t seq_recv;     /* responses received */
    struct bconn *next;    /* list of all live connections */
    struct bconn *prev;    /* and back */
} bconn;

/* A write that uv_try_write could not finish: the remaining bytes follow the request. */
typedef struct wreq {
    uv_write_t req;        /* req.data points at this struct, freed when written */
    uint8_t data[];        /* the bytes */
} wreq;

/* Latency samples in microseconds. */
typedef struct samples {
    uint32_t *v; /* the samples, unsorted until the report */
    size_t n;    /* samples held */
    size_t cap;  /* room in v */
} samples;

/* Process-wide CPU time of the server under test, in clock ticks. */
typedef struct proc_snap {
    bool ok;         /* /proc/PID/stat was read */
    uint64_t ticks;  /* utime + stime */
    uint64_t uticks; /* utime alone: user space */
} proc_snap;

/* The whole run: options, counters and the measured window. */
static struct bench {
    enum mode mode;          /* what to measure */
    const char *host;        /* server address, IPv4 */
    int port;                /* server port */
    const char *token;       /* access token for core/auth */
    const char *user;        /* relay/logins: Maestro user name */
    const char *password;    /* relay/logins: its password */
    const char *session;     /* relay: a Maestro session token (maestro/auth, no hashing) */
    const char *target_core; /* relay: the Core's Maestro id, sent as targetCoreId */
    char *req_tail;          /* relay: ,"targetCoreId":"..." appended to each request */
    const char *path;        /* request target of the upgrade */
    unsigned conns;          /* handshake workers / request connections / idle target */
    unsigned target;         /* idle: the target as asked (conns may shrink to our fd limit) */
    unsigned pipeline;       /* requests in flight per connection */
    double seconds;          /* measured window */
    double warmup;           /* unmeasured run-in before the window */
    double settle;           /* idle: wait before reading memory */
    unsigned concurrency;    /* idle: handshakes in flight at once */
    int server_pid;          /* 0: no server-side figures */
    int also_pid;            /* a second process whose CPU counts too (relay: the Core) */
    bool hold;               /* idle: hold until stdin closes or a signal */
    bool bind_src;           /* rotate source addresses (loopback targets only) */

    uv_loop_t *loop;         /* the one loop */
    struct sockaddr_in dst;  /* the server */
    unsigned src_next;       /* next source address octet */
    char host_hdr[300];      /* Host header value */
    char *auth_msg;          /* the core/auth request, the same for every connection */
    size_t auth_len;         /* its length */
    char ts[32];             /* timestamp carried by our requests */

    bool in_window;          /* ops and latencies count */
    bool stopping;           /* no new work; closing everything */
    uint64_t ops;            /* completed operations inside the window */
    uint64_t errors;         /* failed operations (any time) */
    unsigned answered;       /* logins: logins answered, either way */
    char first_error[160];   /* the first failure, for the report */
    int first_error_code;    /* its code: a libuv/condrix error, HTTP status or close code */
    samples lat;             /* latencies inside the window */
    proc_snap cpu0, cpu1;    /* server CPU at window edges */
    proc_snap also0, also1;  /* the --also-pid process's CPU at window edges */
    struct rusage self0, self1; /* our own CPU at window edges */
    uint64_t win_start_ns, win_end_ns; /* the window (idle: the opening) in hrtime */

    unsigned live;           /* connections not yet closed */
    unsigned ready;          /* authenticated connections */
    unsigned started;        /* connections started (idle mode) */
    unsigned inflight;       /* handshakes in flight (idle mode) */
    unsigned failed;         /* idle: connections that failed or were closed */
    uint64_t last_progress_ns; /* idle: hrtime of the last finished handshake */
    bool opening_done;       /* idle: no more connections will be started */
    bconn *all;              /* every live connection */
    bconn *probe;            /* idle: connection carrying the final core/health */
    long probe_connections;  /* the server's own count, from core/health */
    bool probe_done;
    bool client_fd_limit;    /* idle: we ran out of descriptors before the server did */
    long rss_base_kb;        /* idle: server VmRSS before the first connection */

    uv_timer_t timer;        /* phase timer */
    uv_timer_t tick;         /* idle progress tick */
    uv_signal_t sigint, sigterm; /* hold: release on either */
    uv_pipe_t stdin_pipe;    /* hold: release when the pipe on stdin closes */
    bool stdin_open;         /* stdin_pipe is in use */
    int exit_code;           /* 1 when nothing was measured */
} B;

static uint8_t read_buf[READ_BUF_BYTES];

static void conn_start(void);
static void conn_close(bconn *c);
static void idle_maybe_done(void);
static void idle_opening_finished(void);
static void window_open(void);
static void window_close(void);
static void print_window(const char *mode);
static void stop_all(void);

/* ---- small helpers ---- */

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (p == NULL) {
        fprintf(stderr, "condrix-bench: out of memory\n");
        exit(2);
    }
    return p;
}

static void samples_add(samples *s, uint64_t ns)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 65536;
        uint32_t *v = realloc(s->v, cap * sizeof *v);
        if (v == NULL) {
            fprintf(stderr, "condrix-bench: out of memory\n");
            exit(2);
        }
        s->v = v;
        s->cap = cap;
    }
    uint64_t us = ns / 1000;
    s->v[s->n++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted samples. */
static uint32_t percentile(const samples *s, double p)
{
    if (s->n == 0)
        return 0;
    size_t rank = (size_t)(p / 100.0 * (double)s->n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > s->n)
        rank = s->n;
    return s->v[rank - 1];
}

static void note_error(const char *what, int code)
{
    B.errors++;
    if (B.first_error[0] == '\0') {
        snprintf(B.first_error, sizeof B.first_error, "%s", what);
        B.first_error_code = code;
    }
}

/* utime + stime of the whole process (all threads, living and dead). */
static proc_snap read_cpu(int pid)
{
    proc_snap s = {.ok = false};
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return s;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name may hold spaces and parentheses: fields restart after the last ')'. */
    char *p = strrchr(buf, ')');
    if (p == NULL)
        return s;
    p++;
    unsigned long long ut = 0, st = 0;
    /* After ')': state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
     * cmajflt utime(14) stime(15). */
    if (sscanf(p, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) == 2) {
        s.ticks = ut + st;
        s.uticks = ut;
        s.ok = true;
    }
    return s;
}

/* VmRSS in kB, or -1. */
static long read_rss_kb(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb;
}

static double ticks_to_us(uint64_t ticks)
{
    static long hz;
    if (hz == 0)
        hz = sysconf(_SC_CLK_TCK);
    return (double)ticks * 1e6 / (double)(hz > 0 ? hz : 100);
}

static double rusage_us(const struct rusage *r)
{
    return (double)r->ru_utime.tv_sec * 1e6 + (double)r->ru_utime.tv_usec +
           (double)r->ru_stime.tv_sec * 1e6 + (double)r->ru_stime.tv_usec;
}

/* The value after "key": in a compact-or-not JSON text, or NULL. Good enough for the
 * replies we check: flat envelopes whose keys we choose to look for. */
static const char *json_value(const char *msg, size_t len, const char *key)
{
    char pat[64];
    int pn = snprintf(pat, sizeof pat, "\"%s\"", key);
    if (pn <= 0 || (size_t)pn >= sizeof pat)
        return NULL;
    const char *end = msg + len;
    const char *p = memmem(msg, len, pat, (size_t)pn);
    if (p == NULL)
        return NULL;
    p += pn;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    if (p >= end || *p != ':')
        return NULL;
    p++;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p < end ? p : NULL;
}

static bool json_is_true(const char *msg, size_t len, const char *key)
{
    const char *v = json_value(msg, len, key);
    return v != NULL && (size_t)(msg + len - v) >= 4 && memcmp(v, "true", 4) == 0;
}

/* True when "key" holds exactly the string want. */
static bool json_str_is(const char *msg, size_t len, const char *key, const char *want)
{
    const char *v = json_value(msg, len, key);
    size_t wl = strlen(want);
    if (v == NULL || *v != '"' || (size_t)(msg + len - v) < wl + 2)
        return false;
    return memcmp(v + 1, want, wl) == 0 && v[1 + wl] == '"';
}

/* Copy the string value of "key" (unescaped bytes as they stand) into out, or "?". */
static void json_str_copy(const char *msg, size_t len, const char *key, char *out, size_t cap)
{
    const char *v = json_value(msg, len, key);
    const char *end = msg + len;
    size_t n = 0;
    if (v != NULL && *v == '"')
        for (v++; v < end && *v != '"' && n + 1 < cap; v++)
            out[n++] = *v;
    if (n == 0 && cap > 1)
        out[n++] = '?';
    out[n] = '\0';
}

/* Append s as a JSON string, quotes included: user names and passwords are ours to quote. */
static int json_append_str(cx_buf *b, const char *s)
{
    int rc = cx_buf_append(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; rc == CX_OK && *p; p++) {
        if (*p == '"' || *p == '\\')
            rc = cx_buf_appendf(b, "\\%c", *p);
        else if (*p < 0x20)
            rc = cx_buf_appendf(b, "\\u%04x", *p);
        else
            rc = cx_buf_append(b, p, 1);
    }
    return rc == CX_OK ? cx_buf_append(b, "\"", 1) : rc;
}

static const char *mode_name(void)
{
    switch (B.mode) {
    case MODE_HANDSHAKE:
        return "handshake";
    case MODE_REQUESTS:
        return "requests";
    case MODE_IDLE:
        return "idle";
    case MODE_RELAY:
        return "relay";
    case MODE_LOGINS:
        return "logins";
    }
    return "?";
}

/* Relay runs the requests machinery, only signed in to Maestro and with targetCoreId. */
static bool requests_like(void)
{
    return B.mode == MODE_REQUESTS || B.mode == MODE_RELAY;
}

/* ---- output ---- */

static void on_written(uv_write_t *req, int status)
{
    (void)status;
    free(req->data);
}

/* Write now when the socket takes it all (the usual case), else queue a copy. */
static int send_bytes(bconn *c, const uint8_t *data, size_t len)
{
    if (c->closing)
        return CX_E_CLOSED;
    if (c->corked)
        return cx_buf_append(&c->out, data, len) == CX_OK ? CX_OK : CX_E_NOMEM;
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n == UV_EAGAIN)
        n = 0;
    if (n < 0)
        return CX_E_IO;
    if ((size_t)n == len)
        return CX_OK;
    size_t rest = len - (size_t)n;
    wreq *w = xmalloc(sizeof *w + rest);
    memcpy(w->data, data + n, rest);
    w->req.data = w;
    uv_buf_t wb = uv_buf_init((char *)w->data, (unsigned)rest);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &wb, 1, on_written) < 0) {
        free(w);
        return CX_E_IO;
    }
    return CX_OK;
}

static int ws_on_send(void *ud, const uint8_t *data, size_t len)
{
    return send_bytes(ud, data, len);
}

/* Gather the output of one read's worth of replies into one write, as a real pipelining
 * client (and the Core itself) does; a write per message would measure our syscalls. */
static void cork(bconn *c)
{
    c->corked = true;
}

static int uncork(bconn *c)
{
    c->corked = false;
    if (c->out.len == 0)
        return CX_OK;
    int rc = send_bytes(c, c->out.data, c->out.len);
    c->out.len = 0; /* keep the storage for the next round */
    return rc;
}

/* ---- the exchange ---- */

static void send_health(bconn *c)
{
    char msg[512];
    int n = snprintf(msg, sizeof msg,
                     "{\"id\":\"r%u-%" PRIu64 "\",\"type\":\"request\",\"namespace\":\"core\","
                     "\"action\":\"health\",\"payload\":{},\"timestamp\":\"%s\"%s}",
                     c->idx, c->seq_sent, B.ts, B.req_tail != NULL ? B.req_tail : "");
    if (n < 0 || (size_t)n >= sizeof msg) {
        note_error("request too long", CX_E_NOMEM);
        conn_close(c);
        return;
    }
    if (c->sent_at != NULL)
        c->sent_at[c->seq_sent % B.pipeline] = uv_hrtime();
    c->seq_sent++;
    if (cx_ws_send_text(c->ws, msg, (size_t)n) != CX_OK) {
        note_error("send core/health", CX_E_IO);
        conn_close(c);
    }
}

/* Logins mode: once every login is answered (or its connection lost), report and stop. */
static void logins_maybe_done(void)
{
    if (B.mode != MODE_LOGINS || B.stopping || B.answered < B.conns)
        return;
    window_close();
    print_window("logins");
    stop_all();
}

static void on_login_reply(bconn *c, const char *msg, size_t len)
{
    uint64_t now = uv_hrtime();
    c->st = CS_OPEN;
    B.answered++;
    if (json_is_true(msg, len, "success") && json_is_true(msg, len, "authenticated") &&
        json_str_is(msg, len, "correlationId", "auth-1")) {
        B.ops++;
        samples_add(&B.lat, now - c->t_start);
    } else {
        char code[48], what[96];
        json_str_copy(msg, len, "code", code, sizeof code);
        snprintf(what, sizeof what, "maestro/login refused: %s", code);
        note_error(what, 0);
    }
    logins_maybe_done();
}

static void conn_fail(bconn *c, const char *what, int code)
{
    if (c->closing)
        return;
    if (!B.stopping)
        note_error(what, code);
    bool login_lost = false;
    if (B.mode == MODE_LOGINS) {
        if (c->st == CS_AUTHING) {
            B.answered++;
            login_lost = true;
        } else if (c->ready) {
            B.ready--;
        }
        c->ready = false;
    }
    if (B.mode == MODE_IDLE) {
        B.failed++;
        if (!c->ready && B.inflight > 0)
            B.inflight--;
        if (c->ready)
            B.ready--;
        c->ready = false;
    }
    conn_close(c);
    if (B.mode == MODE_HANDSHAKE && !B.stopping)
        conn_start();
    if (B.mode == MODE_IDLE)
        idle_maybe_done();
    if (login_lost)
        logins_maybe_done();
}

static void on_auth_reply(bconn *c, const char *msg, size_t len)
{
    if (B.mode == MODE_LOGINS) {
        on_login_reply(c, msg, len);
        return;
    }
    if (!json_is_true(msg, len, "success") || !json_str_is(msg, len, "correlationId", "auth-1") ||
        (B.mode == MODE_RELAY && !json_is_true(msg, len, "authenticated"))) {
        char code[48], what[96];
        json_str_copy(msg, len, "code", code, sizeof code);
        snprintf(what, sizeof what, "%s refused: %s",
                 B.mode != MODE_RELAY ? "core/auth"
                 : B.session != NULL  ? "maestro/auth"
                                      : "maestro/login",
                 code);
        conn_fail(c, what, 0);
        return;
    }
    c->st = CS_OPEN;
    switch (B.mode) {
    case MODE_HANDSHAKE:
        c->st = CS_CLOSING;
        if (cx_ws_close(c->ws, CX_WS_CLOSE_NORMAL, "") != CX_OK)
            conn_fail(c, "close", CX_E_IO);
        break;
    case MODE_REQUESTS:
    case MODE_RELAY:
        c->ready = true;
        B.ready++;
        break;
    case MODE_LOGINS: /* answered above */
        break;
    case MODE_IDLE:
        c->ready = true;
        B.ready++;
        B.inflight--;
        B.last_progress_ns = uv_hrtime();
        idle_maybe_done();
        break;
    }
}

static void on_health_reply(bconn *c, const char *msg, size_t len)
{
    char want[48];
    snprintf(want, sizeof want, "r%u-%" PRIu64, c->idx, c->seq_recv);
    if (!json_is_true(msg, len, "success") || !json_str_is(msg, len, "correlationId", want) ||
        !json_str_is(msg, len, "status", "ok")) {
        char code[48], what[96];
        json_str_copy(msg, len, "code", code, sizeof code);
        snprintf(what, sizeof what, "core/health reply: %s", code);
        conn_fail(c, what, 0);
        return;
    }
    uint64_t now = uv_hrtime();
    if (B.mode == MODE_IDLE) {
        const char *v = json_value(msg, len, "connections");
        B.probe_connections = v ? strtol(v, NULL, 10) : -1;
        B.probe_done = true;
        c->seq_recv++;
        return;
    }
    uint64_t sent = c->sent_at[c->seq_recv % B.pipeline];
    c->seq_recv++;
    if (B.in_window) {
        B.ops++;
        samples_add(&B.lat, now - sent);
    }
    if (!B.stopping)
        send_health(c);
}

static void ws_on_message(void *ud, const char *msg, size_t len)
{
    bconn *c = ud;
    if (c->closing)
        return;
    /* Maestro pushes core.online/offline and the Cores' events to signed-in clients;
     * they are not answers. */
    if (B.mode == MODE_RELAY && json_str_is(msg, len, "type", "event"))
        return;
    if (c->st == CS_AUTHING)
        on_auth_reply(c, msg, len);
    else if (c->st == CS_OPEN && B.mode != MODE_LOGINS)
        on_health_reply(c, msg, len);
}

static void ws_on_closed(void *ud, uint16_t code, const char *reason)
{
    bconn *c = ud;
    (void)reason;
    if (c->closing)
        return;
    if (B.mode == MODE_HANDSHAKE && c->st == CS_CLOSING) {
        if (B.in_window) {
            B.ops++;
            samples_add(&B.lat, uv_hrtime() - c->t_start);
        }
        conn_close(c);
        if (!B.stopping)
            conn_start();
        return;
    }
    char what[64];
    snprintf(what, sizeof what, "server closed the WebSocket (%u)", (unsigned)code);
    conn_fail(c, what, code);
}

static const cx_ws_callbacks ws_cb = {
    .on_message = ws_on_message,
    .on_send = ws_on_send,
    .on_closed = ws_on_closed,
};

static void on_upgrade_head(bconn *c, const uint8_t *rest, size_t rest_len)
{
    if (cx_http_resp_check_upgrade(c->resp, c->key) != CX_OK) {
        conn_fail(c, "upgrade refused", cx_http_resp_status(c->resp));
        return;
    }
    cx_http_resp_free(c->resp);
    c->resp = NULL;
    c->ws = cx_ws_new(CX_WS_CLIENT, &ws_cb, c, MESSAGE_MAX);
    if (c->ws == NULL) {
        conn_fail(c, "cx_ws_new", CX_E_NOMEM);
        return;
    }
    if (B.mode == MODE_LOGINS) {
        /* Hold the login: all of them leave together once every connection is upgraded. */
        c->st = CS_WAITING;
        c->ready = true;
        B.ready++;
    } else {
        c->st = CS_AUTHING;
        if (cx_ws_send_text(c->ws, B.auth_msg, B.auth_len) != CX_OK) {
            conn_fail(c, "send auth", CX_E_IO);
            return;
        }
    }
    if (rest_len > 0 && !c->closing) {
        int rc = cx_ws_feed(c->ws, rest, rest_len);
        if (rc != CX_OK && rc != CX_E_CLOSED)
            conn_fail(c, "cx_ws_feed", rc);
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    /* Single-threaded and every read is consumed before the next: one buffer serves all. */
    *buf = uv_buf_init((char *)read_buf, sizeof read_buf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    bconn *c = s->data;
    if (c->closing)
        return;
    if (nread < 0) {
        conn_fail(c, nread == UV_EOF ? "server closed the TCP connection" : uv_strerror((int)nread),
                  (int)nread);
        return;
    }
    if (nread == 0)
        return;
    const uint8_t *p = (const uint8_t *)buf->base;
    size_t n = (size_t)nread;
    if (c->st == CS_UPGRADING) {
        size_t used = 0;
        int rc = cx_http_resp_feed(c->resp, p, n, &used);
        if (rc == CX_E_AGAIN)
            return;
        if (rc != CX_OK) {
            conn_fail(c, "bad upgrade response", rc);
            return;
        }
        on_upgrade_head(c, p + used, n - used);
        return;
    }
    cork(c);
    int rc = cx_ws_feed(c->ws, p, n);
    if (rc != CX_OK && rc != CX_E_CLOSED) {
        conn_fail(c, "cx_ws_feed", rc);
        return;
    }
    if (!c->closing && uncork(c) != CX_OK)
        conn_fail(c, "write", CX_E_IO);
}

static void on_connect(uv_connect_t *req, int status)
{
    bconn *c = req->data;
    if (c->closing)
        return;
    if (status < 0) {
        conn_fail(c, uv_strerror(status), status);
        return;
    }
    cx_buf out;
    cx_buf_init(&out, HEAD_MAX);
    cx_http_ws_new_key(c->key);
    int rc = cx_http_write_upgrade_request(&out, B.host_hdr, B.path, c->key, NULL);
    if (rc == CX_OK)
        rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc == CX_OK)
        rc = send_bytes(c, out.data, out.len);
    cx_buf_free(&out);
    if (rc != CX_OK) {
        conn_fail(c, "send upgrade", rc);
        return;
    }
    c->st = CS_UPGRADING;
}

static void on_conn_closed(uv_handle_t *h)
{
    bconn *c = h->data;
    if (c->ws != NULL)
        cx_ws_free(c->ws);
    if (c->resp != NULL)
        cx_http_resp_free(c->resp);
    free(c->sent_at);
    cx_buf_free(&c->out);
    free(c);
    B.live--;
    if (B.stopping && B.live == 0)
        uv_stop(B.loop);
}

/* Close with an RST: the client side then keeps no TIME_WAIT entry, so thousands of
 * handshakes a second do not run the ephemeral ports dry. */
static void conn_close(bconn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    if (c->prev)
        c->prev->next = c->next;
    else if (B.all == c)
        B.all = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->next = c->prev = NULL;
    if (c->st == CS_CONNECTING || uv_tcp_close_reset(&c->tcp, on_conn_closed) != 0)
        uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void conn_start(void)
{
    static unsigned next_idx;
    bconn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        fprintf(stderr, "condrix-bench: out of memory\n");
        exit(2);
    }
    c->idx = next_idx++;
    c->st = CS_CONNECTING;
    c->t_start = uv_hrtime();
    c->tcp.data = c;
    c->creq.data = c;
    cx_buf_init(&c->out, (size_t)MESSAGE_MAX * 4);
    if (requests_like())
        c->sent_at = xmalloc(B.pipeline * sizeof *c->sent_at);
    c->resp = cx_http_resp_new(HEAD_MAX);
    if (c->resp == NULL) {
        fprintf(stderr, "condrix-bench: out of memory\n");
        exit(2);
    }
    int rc = uv_tcp_init_ex(B.loop, &c->tcp, AF_INET);
    if (rc < 0) {
        cx_http_resp_free(c->resp);
        free(c->sent_at);
        free(c);
        if (B.mode != MODE_IDLE || (rc != UV_EMFILE && rc != UV_ENFILE)) {
            fprintf(stderr, "condrix-bench: cannot make a socket: %s\n", uv_strerror(rc));
            exit(2);
        }
        /* Our own descriptors ran out first: the server held all we could offer. */
        B.client_fd_limit = true;
        B.conns = B.started; /* start no more; let the handshakes in flight finish */
        return;
    }
    B.live++;
    c->next = B.all;
    if (B.all)
        B.all->prev = c;
    B.all = c;
    if (B.mode == MODE_IDLE) {
        B.started++;
        B.inflight++;
    }
    (void)uv_tcp_nodelay(&c->tcp, 1);
    if (B.bind_src) {
        uv_os_fd_t fd;
        int one = 1;
        /* Defer the port choice to connect(), where the kernel sees the whole 4-tuple. */
        if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
            (void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl((127u << 24) | B.src_next);
        B.src_next = B.src_next >= SRC_LAST ? SRC_FIRST : B.src_next + 1;
        if ((rc = uv_tcp_bind(&c->tcp, (const struct sockaddr *)&src, 0)) < 0) {
            c->st = CS_UPGRADING; /* the handle is open: close it as a connected one */
            conn_fail(c, "bind", rc);
            return;
        }
    }
    rc = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&B.dst, on_connect);
    if (rc < 0) {
        c->st = CS_UPGRADING;
        conn_fail(c, uv_strerror(rc), rc);
    }
}

/* ---- phases ---- */

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (uv_is_closing(h))
        return;
    if (h->type == UV_TCP && h->data != NULL) {
        conn_close(h->data);
        return;
    }
    uv_close(h, NULL);
}

/* Stop everything; the loop ends when the last handle is closed. */
static void stop_all(void)
{
    B.stopping = true;
    uv_walk(B.loop, close_walk, NULL);
    if (B.live == 0)
        uv_stop(B.loop);
}

static void window_open(void)
{
    B.in_window = true;
    B.ops = 0;
    B.lat.n = 0;
    B.win_start_ns = uv_hrtime();
    getrusage(RUSAGE_SELF, &B.self0);
    if (B.server_pid > 0)
        B.cpu0 = read_cpu(B.server_pid);
    if (B.also_pid > 0)
        B.also0 = read_cpu(B.also_pid);
}

static void window_close(void)
{
    B.in_window = false;
    B.win_end_ns = uv_hrtime();
    getrusage(RUSAGE_SELF, &B.self1);
    if (B.server_pid > 0)
        B.cpu1 = read_cpu(B.server_pid);
    if (B.also_pid > 0)
        B.also1 = read_cpu(B.also_pid);
}

static void print_window(const char *mode)
{
    double secs = (double)(B.win_end_ns - B.win_start_ns) / 1e9;
    if (B.lat.n > 0)
        qsort(B.lat.v, B.lat.n, sizeof *B.lat.v, cmp_u32);
    double rate = secs > 0 ? (double)B.ops / secs : 0;
    printf("mode=%s ops=%" PRIu64 " seconds=%.3f rate=%.1f p50_us=%u p99_us=%u conns=%u", mode,
           B.ops, secs, rate, percentile(&B.lat, 50), percentile(&B.lat, 99), B.conns);
    if (requests_like())
        printf(" pipeline=%u", B.pipeline);
    if (B.mode == MODE_LOGINS)
        printf(" answered=%u wall_ms=%.1f max_us=%u", B.answered, secs * 1e3,
               percentile(&B.lat, 100));
    if (B.server_pid > 0 && B.cpu0.ok && B.cpu1.ok) {
        double us = ticks_to_us(B.cpu1.ticks - B.cpu0.ticks);
        double uus = ticks_to_us(B.cpu1.uticks - B.cpu0.uticks);
        printf(" server_cpu_us=%.0f server_cpu_us_per_op=%.2f server_user_us_per_op=%.2f"
               " server_sys_us_per_op=%.2f server_cpu_util=%.2f",
               us, B.ops ? us / (double)B.ops : 0, B.ops ? uus / (double)B.ops : 0,
               B.ops ? (us - uus) / (double)B.ops : 0, secs > 0 ? us / 1e6 / secs : 0);
    }
    if (B.also_pid > 0 && B.also0.ok && B.also1.ok) {
        double us = ticks_to_us(B.also1.ticks - B.also0.ticks);
        printf(" also_cpu_us=%.0f also_cpu_us_per_op=%.2f", us, B.ops ? us / (double)B.ops : 0);
    }
    double self_us = rusage_us(&B.self1) - rusage_us(&B.self0);
    printf(" client_cpu_us_per_op=%.2f errors=%" PRIu64, B.ops ? self_us / (double)B.ops : 0,
           B.errors);
    if (B.errors)
        printf(" first_error=\"%s\" first_error_code=%d", B.first_error, B.first_error_code);
    printf("\n");
    fflush(stdout);
    if (B.ops == 0)
        B.exit_code = 1;
}

static void on_window_end(uv_timer_t *t)
{
    (void)t;
    window_close();
    print_window(mode_name());
    stop_all();
}

static void on_warmup_end(uv_timer_t *t)
{
    window_open();
    uv_timer_start(t, on_window_end, (uint64_t)(B.seconds * 1000), 0);
}

static void on_requests_setup_timeout(uv_timer_t *t)
{
    (void)t;
    fprintf(stderr, "condrix-bench: only %u of %u connections authenticated\n", B.ready, B.conns);
    printf("mode=%s ops=0 ready=%u conns=%u errors=%" PRIu64 " first_error=\"%s\"\n",
           mode_name(), B.ready, B.conns, B.errors, B.first_error[0] ? B.first_error : "timeout");
    B.exit_code = 1;
    stop_all();
}

/* Requests mode: once every connection is authenticated, start K requests on each;
 * from then on each reply sends the next, so K stay in flight per connection. */
static void on_requests_tick(uv_timer_t *t)
{
    if (B.ready < B.conns) {
        /* Nothing pending any more and some failed: waiting longer changes nothing. */
        if (B.live == B.ready && B.errors > 0) {
            uv_timer_stop(t);
            on_requests_setup_timeout(&B.timer);
        }
        return;
    }
    uv_timer_stop(t);
    for (bconn *c = B.all; c != NULL; c = c->next) {
        cork(c);
        for (unsigned k = 0; k < B.pipeline && !c->closing; k++)
            send_health(c);
        if (!c->closing && uncork(c) != CX_OK)
            conn_fail(c, "write", CX_E_IO);
    }
    uv_timer_start(&B.timer, on_warmup_end, (uint64_t)(B.warmup * 1000), 0);
}

/* ---- logins mode ---- */

/* Not every login answered in time: report what came back. */
static void on_logins_timeout(uv_timer_t *t)
{
    (void)t;
    if (B.answered < B.conns)
        note_error("logins not answered in time", UV_ETIMEDOUT);
    window_close();
    print_window("logins");
    stop_all();
}

/* Once every connection is upgraded, send all the logins in one go: the wall time then
 * measures Maestro's password checks (its hash pool), not our connects. */
static void on_logins_tick(uv_timer_t *t)
{
    if (B.ready < B.conns) {
        if (B.live == B.ready && B.errors > 0) {
            uv_timer_stop(t);
            on_requests_setup_timeout(&B.timer);
        }
        return;
    }
    uv_timer_stop(t);
    window_open();
    bconn *next;
    for (bconn *c = B.all; c != NULL; c = next) {
        next = c->next;
        if (c->closing || c->st != CS_WAITING)
            continue;
        c->st = CS_AUTHING;
        c->t_start = uv_hrtime();
        if (cx_ws_send_text(c->ws, B.auth_msg, B.auth_len) != CX_OK)
            conn_fail(c, "send maestro/login", CX_E_IO);
    }
    if (!B.stopping)
        uv_timer_start(&B.timer, on_logins_timeout, LOGINS_TIMEOUT_MS, 0);
}

/* ---- idle mode ---- */

static void idle_report(void)
{
    long rss1 = B.server_pid > 0 ? read_rss_kb(B.server_pid) : -1;
    printf("mode=idle target=%u held=%u failed=%u server_connections=%ld", B.target, B.ready,
           B.failed, B.probe_done ? B.probe_connections : -1L);
    if (B.server_pid > 0) {
        long rss0 = B.rss_base_kb;
        printf(" rss_base_kb=%ld rss_kb=%ld bytes_per_conn=%.0f", rss0, rss1,
               B.ready ? (double)(rss1 - rss0) * 1024.0 / (double)B.ready : 0.0);
    }
    printf(" client_fd_limit=%d seconds_to_open=%.3f errors=%" PRIu64, B.client_fd_limit, (double)(B.win_end_ns - B.win_start_ns) / 1e9,
           B.errors);
    if (B.errors)
        printf(" first_error=\"%s\" first_error_code=%d", B.first_error, B.first_error_code);
    printf("\n");
    fflush(stdout);
    if (B.ready == 0)
        B.exit_code = 1;
}

static void on_stdin_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    static char sink[256];
    *buf = uv_buf_init(sink, sizeof sink);
}

static void on_stdin_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)s;
    (void)buf;
    if (nread < 0)
        stop_all();
}

static void on_signal(uv_signal_t *h, int signum)
{
    (void)h;
    (void)signum;
    stop_all();
}

static void hold_until_told(void)
{
    printf("holding; close stdin (a pipe) or send SIGTERM to release\n");
    fflush(stdout);
    uv_signal_init(B.loop, &B.sigint);
    uv_signal_init(B.loop, &B.sigterm);
    uv_signal_start(&B.sigint, on_signal, SIGINT);
    uv_signal_start(&B.sigterm, on_signal, SIGTERM);
    /* Only a pipe can be watched for its end: epoll refuses files and /dev/null. */
    if (uv_guess_handle(0) == UV_NAMED_PIPE && uv_pipe_init(B.loop, &B.stdin_pipe, 0) == 0) {
        if (uv_pipe_open(&B.stdin_pipe, 0) == 0 &&
            uv_read_start((uv_stream_t *)&B.stdin_pipe, on_stdin_alloc, on_stdin_read) == 0)
            B.stdin_open = true;
        else
            uv_close((uv_handle_t *)&B.stdin_pipe, NULL);
    }
}

static void on_probe_wait(uv_timer_t *t)
{
    if (!B.probe_done && B.probe != NULL && !B.probe->closing &&
        uv_hrtime() - B.last_progress_ns < 2000000000ull)
        return;
    uv_timer_stop(t);
    idle_report();
    if (B.hold)
        hold_until_told();
    else
        stop_all();
}

/* After the settle time: ask one connection for the server's own count, then report. */
static void on_settled(uv_timer_t *t)
{
    (void)t;
    B.probe = NULL;
    for (bconn *c = B.all; c != NULL; c = c->next)
        if (c->ready && !c->closing) {
            B.probe = c;
            break;
        }
    B.last_progress_ns = uv_hrtime();
    if (B.probe != NULL)
        send_health(B.probe);
    uv_timer_start(&B.tick, on_probe_wait, 50, 50);
}

static void idle_opening_finished(void)
{
    if (B.opening_done)
        return;
    B.opening_done = true;
    B.win_end_ns = uv_hrtime();
    /* Handshakes still pending now are stuck (the server stopped accepting): drop them. */
    bconn *next;
    for (bconn *c = B.all; c != NULL; c = next) {
        next = c->next;
        if (!c->ready) {
            B.failed++;
            if (B.inflight > 0)
                B.inflight--;
            conn_close(c);
        }
    }
    uv_timer_stop(&B.tick);
    uv_timer_start(&B.timer, on_settled, (uint64_t)(B.settle * 1000), 0);
}

static void idle_maybe_done(void)
{
    if (B.opening_done || B.stopping)
        return;
    if (B.failed >= IDLE_FAIL_MAX) {
        idle_opening_finished();
        return;
    }
    if (B.inflight == 0 && (B.started >= B.conns || B.ready >= B.conns)) {
        idle_opening_finished();
        return;
    }
    /* Keep the number of handshakes in flight at the set concurrency. */
    while (B.inflight < B.concurrency && B.started < B.conns && !B.stopping && !B.opening_done)
        conn_start();
}

static void on_idle_tick(uv_timer_t *t)
{
    (void)t;
    if (B.opening_done)
        return;
    if (uv_hrtime() - B.last_progress_ns > (uint64_t)IDLE_STALL_MS * 1000000ull)
        idle_opening_finished();
    else
        idle_maybe_done();
}

/* ---- command line ---- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: condrix-bench MODE [options]\n"
            "Load generator for a running Condrix Core (or a server speaking its core/auth)\n"
            "and for Maestro.\n"
            "modes:\n"
            "  handshake   C workers loop: connect, upgrade, core/auth, reply, close handshake\n"
            "  requests    C authenticated connections, K core/health requests in flight each\n"
            "  idle        open N authenticated connections, report, then exit (or --hold)\n"
            "  relay       C connections signed in to Maestro (maestro/auth with --session,\n"
            "              else maestro/login), K core/health in flight each, relayed to\n"
            "              the Core --target-core names\n"
            "  logins      C connections to Maestro upgrade, then all send maestro/login at\n"
            "              once; wall time until all are answered, latency of each\n"
            "options:\n"
            "  --host ADDR        server IPv4 address (127.0.0.1)\n"
            "  --port PORT        server port (required)\n"
            "  --token T          access token for core/auth (or CONDRIX_BENCH_TOKEN)\n"
            "  --user U           relay/logins: Maestro user (CONDRIX_BENCH_USER, default-admin)\n"
            "  --password P       relay/logins: its password (or CONDRIX_BENCH_PASSWORD)\n"
            "  --session T        relay: a Maestro session token (or CONDRIX_BENCH_SESSION)\n"
            "  --session-file F   relay: read the session token from F\n"
            "  --target-core ID   relay: the Core's Maestro id (targetCoreId)\n"
            "  --conns N          workers / connections / idle target / logins\n"
            "                     (16 / 64 / 10000 / 64 / 50)\n"
            "  --pipeline K       requests in flight per connection (1)\n"
            "  --seconds S        measured window (5)\n"
            "  --warmup S         unmeasured run-in before the window (1)\n"
            "  --settle S         idle: wait before reading memory (2)\n"
            "  --concurrency N    idle: handshakes in flight at once (200)\n"
            "  --server-pid PID   read the server's CPU and RSS from /proc\n"
            "  --also-pid PID     read this process's CPU too (relay: the Core behind Maestro)\n"
            "  --hold             idle: after reporting, hold until stdin (a pipe) closes,\n"
            "                     SIGINT or SIGTERM\n"
            "  --path P           upgrade request target (/)\n"
            "  --help, --version\n"
            "Output: one line of key=value pairs (ops, rate, p50_us, p99_us, server_cpu_us_per_op;\n"
            "idle: held, rss_base_kb, rss_kb, bytes_per_conn; logins: answered, wall_ms,\n"
            "max_us). Exit 1 when nothing was measured.\n");
}

static bool parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v > max)
        return false;
    *out = v;
    return true;
}

static bool parse_secs(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v >= 0) || v > 86400)
        return false;
    *out = v;
    return true;
}

/* The session token from a file (its first line), so it stays out of the process list. */
static int read_session_file(const char *path)
{
    static char tok[256];
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "condrix-bench: cannot read %s: %s\n", path, strerror(errno));
        return -1;
    }
    bool got = fgets(tok, sizeof tok, f) != NULL;
    fclose(f);
    tok[strcspn(tok, "\r\n \t")] = '\0';
    if (!got || tok[0] == '\0') {
        fprintf(stderr, "condrix-bench: %s holds no session token\n", path);
        return -1;
    }
    B.session = tok;
    return 0;
}

static int parse_args(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("condrix-bench " BENCH_VERSION "\n");
        return 0;
    }
    unsigned long conns = 0;
    if (strcmp(argv[1], "handshake") == 0)
        B.mode = MODE_HANDSHAKE, conns = 16;
    else if (strcmp(argv[1], "requests") == 0)
        B.mode = MODE_REQUESTS, conns = 64;
    else if (strcmp(argv[1], "idle") == 0)
        B.mode = MODE_IDLE, conns = 10000;
    else if (strcmp(argv[1], "relay") == 0)
        B.mode = MODE_RELAY, conns = 64;
    else if (strcmp(argv[1], "logins") == 0)
        B.mode = MODE_LOGINS, conns = 50;
    else {
        fprintf(stderr, "condrix-bench: unknown mode '%s' (try --help)\n", argv[1]);
        return 2;
    }
    B.host = "127.0.0.1";
    B.path = "/";
    B.pipeline = 1;
    B.seconds = 5;
    B.warmup = 1;
    B.settle = 2;
    B.concurrency = 200;
    B.token = getenv("CONDRIX_BENCH_TOKEN");
    B.user = getenv("CONDRIX_BENCH_USER");
    if (B.user == NULL || B.user[0] == '\0')
        B.user = "default-admin";
    B.password = getenv("CONDRIX_BENCH_PASSWORD");
    B.session = getenv("CONDRIX_BENCH_SESSION");
    const char *session_file = NULL;
    unsigned long port = 0, v;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true, takes = true;
        if (strcmp(a, "--hold") == 0) {
            B.hold = true;
            takes = false;
        } else if (val == NULL) {
            ok = false;
        } else if (strcmp(a, "--host") == 0) {
            B.host = val;
        } else if (strcmp(a, "--port") == 0) {
            ok = parse_uint(val, 65535, &port) && port > 0;
        } else if (strcmp(a, "--token") == 0) {
            B.token = val;
        } else if (strcmp(a, "--user") == 0) {
            B.user = val;
        } else if (strcmp(a, "--password") == 0) {
            B.password = val;
        } else if (strcmp(a, "--session") == 0) {
            B.session = val;
        } else if (strcmp(a, "--session-file") == 0) {
            session_file = val;
        } else if (strcmp(a, "--target-core") == 0) {
            B.target_core = val;
        } else if (strcmp(a, "--conns") == 0) {
            ok = parse_uint(val, 1000000, &conns) && conns > 0;
        } else if (strcmp(a, "--pipeline") == 0) {
            ok = parse_uint(val, 1024, &v) && v > 0;
            B.pipeline = (unsigned)v;
        } else if (strcmp(a, "--concurrency") == 0) {
            ok = parse_uint(val, 100000, &v) && v > 0;
            B.concurrency = (unsigned)v;
        } else if (strcmp(a, "--server-pid") == 0) {
            ok = parse_uint(val, 1u << 30, &v) && v > 0;
            B.server_pid = (int)v;
        } else if (strcmp(a, "--also-pid") == 0) {
            ok = parse_uint(val, 1u << 30, &v) && v > 0;
            B.also_pid = (int)v;
        } else if (strcmp(a, "--seconds") == 0) {
            ok = parse_secs(val, &B.seconds) && B.seconds > 0;
        } else if (strcmp(a, "--warmup") == 0) {
            ok = parse_secs(val, &B.warmup);
        } else if (strcmp(a, "--settle") == 0) {
            ok = parse_secs(val, &B.settle);
        } else if (strcmp(a, "--path") == 0) {
            B.path = val;
        } else {
            fprintf(stderr, "condrix-bench: unknown option '%s' (try --help)\n", a);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "condrix-bench: bad or missing value for %s\n", a);
            return 2;
        }
        if (takes)
            i++;
    }
    B.conns = (unsigned)conns;
    B.target = B.conns;
    if (port == 0) {
        fprintf(stderr, "condrix-bench: --port is required\n");
        return 2;
    }
    B.port = (int)port;
    if (session_file != NULL && read_session_file(session_file) != 0)
        return 2;
    if (B.session != NULL && B.session[0] == '\0')
        B.session = NULL;
    switch (B.mode) {
    case MODE_HANDSHAKE:
    case MODE_REQUESTS:
    case MODE_IDLE:
        if (B.token == NULL || B.token[0] == '\0') {
            fprintf(stderr, "condrix-bench: --token is required\n");
            return 2;
        }
        break;
    case MODE_RELAY:
        if (B.target_core == NULL || B.target_core[0] == '\0') {
            fprintf(stderr, "condrix-bench: relay needs --target-core\n");
            return 2;
        }
        if (B.session == NULL && (B.password == NULL || B.password[0] == '\0')) {
            fprintf(stderr, "condrix-bench: relay needs --session, --session-file or --password\n");
            return 2;
        }
        break;
    case MODE_LOGINS:
        if (B.password == NULL || B.password[0] == '\0') {
            fprintf(stderr, "condrix-bench: logins needs --password\n");
            return 2;
        }
        break;
    }
    return -1;
}

/* Every idle connection needs a descriptor: take all the hard limit allows. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* Relay: the sign-in to Maestro, and the targetCoreId every request carries. */
static int build_maestro_msgs(void)
{
    cx_buf b;
    cx_buf_init(&b, 8192);
    int rc;
    if (B.mode == MODE_RELAY && B.session != NULL) {
        rc = cx_buf_append_str(&b, "{\"id\":\"auth-1\",\"type\":\"request\",\"namespace\":"
                                   "\"maestro\",\"action\":\"auth\",\"payload\":{\"sessionToken\":");
        if (rc == CX_OK)
            rc = json_append_str(&b, B.session);
    } else {
        rc = cx_buf_append_str(&b, "{\"id\":\"auth-1\",\"type\":\"request\",\"namespace\":"
                                   "\"maestro\",\"action\":\"login\",\"payload\":{\"username\":");
        if (rc == CX_OK)
            rc = json_append_str(&b, B.user);
        if (rc == CX_OK)
            rc = cx_buf_append_str(&b, ",\"password\":");
        if (rc == CX_OK)
            rc = json_append_str(&b, B.password);
    }
    if (rc == CX_OK)
        rc = cx_buf_appendf(&b, "},\"timestamp\":\"%s\"}", B.ts);
    if (rc != CX_OK) {
        cx_buf_free(&b);
        fprintf(stderr, "condrix-bench: credentials too long\n");
        return -1;
    }
    B.auth_msg = xmalloc(b.len + 1);
    memcpy(B.auth_msg, b.data, b.len);
    B.auth_msg[b.len] = '\0';
    B.auth_len = b.len;
    b.len = 0;
    if (B.mode == MODE_RELAY) {
        if (strlen(B.target_core) > ID_MAX) {
            cx_buf_free(&b);
            fprintf(stderr, "condrix-bench: --target-core is longer than %d\n", ID_MAX);
            return -1;
        }
        rc = cx_buf_append_str(&b, ",\"targetCoreId\":");
        if (rc == CX_OK)
            rc = json_append_str(&b, B.target_core);
        if (rc != CX_OK) {
            cx_buf_free(&b);
            fprintf(stderr, "condrix-bench: out of memory\n");
            return -1;
        }
        B.req_tail = xmalloc(b.len + 1);
        memcpy(B.req_tail, b.data, b.len);
        B.req_tail[b.len] = '\0';
    }
    cx_buf_free(&b);
    return 0;
}

static int build_auth_msg(void)
{
    if (B.mode == MODE_RELAY || B.mode == MODE_LOGINS)
        return build_maestro_msgs();
    /* A token is printable ASCII without quotes or backslashes, or the JSON would lie. */
    for (const char *p = B.token; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == '"' || *p == '\\' || (unsigned char)*p > 0x7e) {
            fprintf(stderr, "condrix-bench: the token holds characters we do not quote\n");
            return -1;
        }
    cx_buf b;
    cx_buf_init(&b, 4096);
    if (cx_buf_appendf(&b,
                       "{\"id\":\"auth-1\",\"type\":\"request\",\"namespace\":\"core\","
                       "\"action\":\"auth\",\"payload\":{\"token\":\"%s\",\"clientType\":\"cli\"},"
                       "\"timestamp\":\"%s\"}",
                       B.token, B.ts) != CX_OK) {
        cx_buf_free(&b);
        fprintf(stderr, "condrix-bench: token too long\n");
        return -1;
    }
    B.auth_msg = xmalloc(b.len + 1);
    memcpy(B.auth_msg, b.data, b.len);
    B.auth_msg[b.len] = '\0';
    B.auth_len = b.len;
    cx_buf_free(&b);
    return 0;
}

int main(int argc, char **argv)
{
    int rc = parse_args(argc, argv);
    if (rc >= 0)
        return rc;
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();

    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(B.ts, sizeof B.ts, "%Y-%m-%dT%H:%M:%S.000Z", &tm);
    if (build_auth_msg() != 0)
        return 2;
    if (uv_ip4_addr(B.host, B.port, &B.dst) != 0) {
        fprintf(stderr, "condrix-bench: --host must be an IPv4 address\n");
        return 2;
    }
    snprintf(B.host_hdr, sizeof B.host_hdr, "%s:%d", B.host, B.port);
    /* A loopback target can be reached from any 127/8 source: spread the 4-tuples. */
    B.bind_src = (ntohl(B.dst.sin_addr.s_addr) >> 24) == 127;
    B.src_next = SRC_FIRST;

    B.loop = uv_default_loop();
    uv_timer_init(B.loop, &B.timer);
    uv_timer_init(B.loop, &B.tick);

    switch (B.mode) {
    case MODE_HANDSHAKE:
        for (unsigned i = 0; i < B.conns; i++)
            conn_start();
        uv_timer_start(&B.timer, on_warmup_end, (uint64_t)(B.warmup * 1000), 0);
        break;
    case MODE_REQUESTS:
    case MODE_RELAY:
        for (unsigned i = 0; i < B.conns; i++)
            conn_start();
        uv_timer_start(&B.timer, on_requests_setup_timeout, SETUP_TIMEOUT_MS, 0);
        uv_timer_start(&B.tick, on_requests_tick, 10, 10);
        break;
    case MODE_LOGINS:
        for (unsigned i = 0; i < B.conns; i++)
            conn_start();
        uv_timer_start(&B.timer, on_requests_setup_timeout, SETUP_TIMEOUT_MS, 0);
        uv_timer_start(&B.tick, on_logins_tick, 10, 10);
        break;
    case MODE_IDLE:
        if (B.server_pid > 0) {
            long kb = read_rss_kb(B.server_pid);
            if (kb < 0) {
                fprintf(stderr, "condrix-bench: cannot read /proc/%d/status\n", B.server_pid);
                return 2;
            }
            B.rss_base_kb = kb;
        }
        B.win_start_ns = B.last_progress_ns = uv_hrtime();
        uv_timer_start(&B.tick, on_idle_tick, TICK_MS, TICK_MS);
        idle_maybe_done();
        break;
    }
    uv_run(B.loop, UV_RUN_DEFAULT);
    /* Give the close callbacks their turn, then leave. */
    uv_run(B.loop, UV_RUN_NOWAIT);
    free(B.lat.v);
    free(B.auth_msg);
    free(B.req_tail);
    return B.exit_code;
}
