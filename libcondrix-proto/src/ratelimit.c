/* Per-address rate limits (ARCHITECTURE.md "Rate limits"): a budget of new connections,
 * failed authentications answered after a growing delay and blocked after too many,
 * and a per-connection message budget. Pure state with the clock passed in, so tests
 * drive it with a fake clock and the servers with their loop time.
 *
 * The connection budget is a fixed window with interpolation: the count of the
 * previous window, weighted by how much of it still overlaps the sliding window, plus
 * the count of the current one. It needs two counters per address instead of a log of
 * timestamps, and approximates a true sliding window (assuming the previous window's
 * connections were spread evenly); after a burst the budget comes back gradually and
 * is whole again two windows later. Only admitted connections count, so a client that
 * keeps hammering still gets back in once it slows down.
 *
 * Failed authentications count in a fixed window opened by the first failure. The
 * address table is bounded: entries are kept in least-recently-used order, idle ones
 * expire, and when the table is full the least recently seen address is forgotten,
 * so a flood of addresses costs bounded memory. A max of 0 lifts a limit. */
#include "condrix/ratelimit.h"
#include "condrix/config.h"
#include "condrix/error.h"
#include "condrix/limits.h"

#include <sodium.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* Most addresses remembered at once. */
#define RL_MAX_ENTRIES 65536
/* Hash chains stay around two entries long when the table is full. */
#define RL_BUCKETS 32768
#define RL_ADDR_MAX 63
/* Backoff before answering the second failure in a row; doubles up to the cap. */
#define RL_BACKOFF_FIRST_MS 250
#define RL_BACKOFF_MAX_MS 4000
/* Bounds for the CONDRIX_RATE_* variables. */
#define RL_ENV_MAX_COUNT 100000000L
#define RL_ENV_MAX_SECONDS (366L * 24 * 3600)

typedef struct rl_entry {
    struct rl_entry *next;       /* hash chain */
    struct rl_entry *lru_prev;   /* towards the most recently seen */
    struct rl_entry *lru_next;   /* towards the least recently seen */
    int64_t last_seen_ms;        /* last time this address did anything */
    int64_t conn_start_ms;       /* start of the current connection window */
    int32_t conn_cur;            /* connections admitted in the current window */
    int32_t conn_prev;           /* connections admitted in the window before */
    int64_t auth_first_ms;       /* first failure of the current auth window */
    int32_t auth_fails;          /* failures in the current auth window */
    int32_t streak;              /* failures in a row, for the backoff */
    int64_t blocked_until_ms;    /* refused until then; 0 when not blocked */
    uint32_t bucket;             /* index of the chain this entry is on */
    char addr[RL_ADDR_MAX + 1];  /* the key, truncated to 63 chars */
} rl_entry;

struct cx_ratelimit {
    cx_ratelimit_config cfg;     /* the limits in force */
    int64_t idle_ms;             /* an entry idle this long holds no live state */
    rl_entry **buckets;          /* RL_BUCKETS chains */
    rl_entry *lru_head;          /* most recently seen */
    rl_entry *lru_tail;          /* least recently seen */
    size_t count;                /* entries in the table */
    unsigned char hash_key[crypto_shorthash_KEYBYTES]; /* secret, against chain flooding */
};

void cx_ratelimit_config_default(cx_ratelimit_config *cfg)
{
    cfg->conn_max = CX_RATE_CONN_MAX;
    cfg->conn_window_s = CX_RATE_CONN_WINDOW_S;
    cfg->auth_max = CX_RATE_AUTH_MAX;
    cfg->auth_window_s = CX_RATE_AUTH_WINDOW_S;
    cfg->msg_max = CX_RATE_MSG_MAX;
    cfg->msg_window_s = CX_RATE_MSG_WINDOW_S;
    cfg->block_s = CX_RATE_BLOCK_S;
}

int cx_ratelimit_config_from_env(cx_ratelimit_config *cfg, const char **bad)
{
    static const struct {
        const char *name;
        size_t off;
        long min;
        long max;
    } vars[] = {
        {"CONDRIX_RATE_CONN_MAX", offsetof(cx_ratelimit_config, conn_max), 0, RL_ENV_MAX_COUNT},
        {"CONDRIX_RATE_CONN_WINDOW_SECONDS", offsetof(cx_ratelimit_config, conn_window_s), 1,
         RL_ENV_MAX_SECONDS},
        {"CONDRIX_RATE_AUTH_MAX", offsetof(cx_ratelimit_config, auth_max), 0, RL_ENV_MAX_COUNT},
        {"CONDRIX_RATE_AUTH_WINDOW_SECONDS", offsetof(cx_ratelimit_config, auth_window_s), 1,
         RL_ENV_MAX_SECONDS},
        {"CONDRIX_RATE_MSG_MAX", offsetof(cx_ratelimit_config, msg_max), 0, RL_ENV_MAX_COUNT},
        {"CONDRIX_RATE_MSG_WINDOW_SECONDS", offsetof(cx_ratelimit_config, msg_window_s), 1,
         RL_ENV_MAX_SECONDS},
        /* 0: failures are delayed but never block. */
        {"CONDRIX_RATE_BLOCK_SECONDS", offsetof(cx_ratelimit_config, block_s), 0,
         RL_ENV_MAX_SECONDS},
    };
    cx_ratelimit_config c;
    cx_ratelimit_config_default(&c);
    if (bad != NULL)
        *bad = NULL;
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        int *field = (int *)((char *)&c + vars[i].off);
        long v;
        if (cx_env_int(vars[i].name, *field, vars[i].min, vars[i].max, &v) != CX_OK) {
            if (bad != NULL)
                *bad = vars[i].name;
            cx_ratelimit_config_default(cfg);
            return CX_E_INVAL;
        }
        *field = (int)v;
    }
    *cfg = c;
    return CX_OK;
}

static int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

cx_ratelimit *cx_ratelimit_new(const cx_ratelimit_config *cfg)
{
    cx_ratelimit *rl = calloc(1, sizeof *rl);
    if (rl == NULL)
        return NULL;
    if (cfg != NULL)
        rl->cfg = *cfg;
    else
        cx_ratelimit_config_default(&rl->cfg);
    /* Windows below one second make no sense; treat them as one second. */
    if (rl->cfg.conn_window_s < 1)
        rl->cfg.conn_window_s = 1;
    if (rl->cfg.auth_window_s < 1)
        rl->cfg.auth_window_s = 1;
    if (rl->cfg.msg_window_s < 1)
        rl->cfg.msg_window_s = 1;
    if (rl->cfg.block_s < 0)
        rl->cfg.block_s = 0;
    /* The connection count weighs the previous window too, so it lives two windows;
     * a block is checked on its own (see expired). */
    rl->idle_ms = 1000 * max64(2 * (int64_t)rl->cfg.conn_window_s, rl->cfg.auth_window_s);
    rl->buckets = calloc(RL_BUCKETS, sizeof *rl->buckets);
    if (rl->buckets == NULL) {
        free(rl);
        return NULL;
    }
    crypto_shorthash_keygen(rl->hash_key);
    return rl;
}

void cx_ratelimit_free(cx_ratelimit *rl)
{
    if (rl == NULL)
        return;
    rl_entry *e = rl->lru_head;
    while (e != NULL) {
        rl_entry *next = e->lru_next;
        free(e);
        e = next;
    }
    free(rl->buckets);
    free(rl);
}

/* The key as stored: at most 63 chars, longer input truncated. */
static size_t key_len(const char *addr)
{
    return strnlen(addr, RL_ADDR_MAX);
}

static uint32_t bucket_of(const cx_ratelimit *rl, const char *addr, size_t len)
{
    unsigned char h[crypto_shorthash_BYTES];
    crypto_shorthash(h, (const unsigned char *)addr, len, rl->hash_key);
    uint32_t v;
    memcpy(&v, h, sizeof v);
    return v % RL_BUCKETS;
}

static rl_entry *lookup(const cx_ratelimit *rl, const char *addr)
{
    size_t len = key_len(addr);
    for (rl_entry *e = rl->buckets[bucket_of(rl, addr, len)]; e != NULL; e = e->next)
        if (strncmp(e->addr, addr, len) == 0 && e->addr[len] == '\0')
            return e;
    return NULL;
}

static void lru_unlink(cx_ratelimit *rl, rl_entry *e)
{
    if (e->lru_prev != NULL)
        e->lru_prev->lru_next = e->lru_next;
    else
        rl->lru_head = e->lru_next;
    if (e->lru_next != NULL)
        e->lru_next->lru_prev = e->lru_prev;
    else
        rl->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
}

static void lru_push_front(cx_ratelimit *rl, rl_entry *e)
{
    e->lru_prev = NULL;
    e->lru_next = rl->lru_head;
    if (rl->lru_head != NULL)
        rl->lru_head->lru_prev = e;
    rl->lru_head = e;
    if (rl->lru_tail == NULL)
        rl->lru_tail = e;
}

static void touch(cx_ratelimit *rl, rl_entry *e, int64_t now_ms)
{
    if (now_ms > e->last_seen_ms)
        e->last_seen_ms = now_ms;
    if (rl->lru_head != e) {
        lru_unlink(rl, e);
        lru_push_front(rl, e);
    }
}

static void remove_entry(cx_ratelimit *rl, rl_entry *e)
{
    rl_entry **pp = &rl->buckets[e->bucket];
    while (*pp != e)
        pp = &(*pp)->next;
    *pp = e->next;
    lru_unlink(rl, e);
    rl->count--;
    free(e);
}

static bool expired(const cx_ratelimit *rl, const rl_entry *e, int64_t now_ms)
{
    return now_ms - e->last_seen_ms >= rl->idle_ms && now_ms >= e->blocked_until_ms;
}

/* Drop expired entries from the LRU tail, where the longest idle gather; stops at
 * the first live one, so it costs only what it frees. */
static void sweep_tail(cx_ratelimit *rl, int64_t now_ms)
{
    while (rl->lru_tail != NULL && expired(rl, rl->lru_tail, now_ms))
        remove_entry(rl, rl->lru_tail);
}

void cx_ratelimit_sweep(cx_ratelimit *rl, int64_t now_ms)
{
    /* A full walk: a blocked address near the tail must not shield idle ones. */
    rl_entry *e = rl->lru_tail;
    while (e != NULL) {
        rl_entry *prev = e->lru_prev;
        if (expired(rl, e, now_ms))
            remove_entry(rl, e);
        e = prev;
    }
}

/* The entry for addr, made when missing. NULL only on ENOMEM. */
static rl_entry *get_entry(cx_ratelimit *rl, const char *addr, int64_t now_ms)
{
    rl_entry *e = lookup(rl, addr);
    if (e != NULL) {
        touch(rl, e, now_ms);
        return e;
    }
    if (rl->count >= RL_MAX_ENTRIES) {
        sweep_tail(rl, now_ms);
        /* Still full of live entries: forget the least recently seen address. A
         * flood from that many addresses can thus lift an old block; the table
         * stays bounded, which matters more. */
        if (rl->count >= RL_MAX_ENTRIES)
            remove_entry(rl, rl->lru_tail);
    }
    e = calloc(1, sizeof *e);
    if (e == NULL)
        return NULL;
    size_t len = key_len(addr);
    memcpy(e->addr, addr, len);
    e->addr[len] = '\0';
    e->bucket = bucket_of(rl, e->addr, len);
    e->next = rl->buckets[e->bucket];
    rl->buckets[e->bucket] = e;
    e->last_seen_ms = now_ms;
    e->conn_start_ms = now_ms;
    lru_push_front(rl, e);
    rl->count++;
    return e;
}

static int retry_seconds(int64_t ms)
{
    if (ms <= 0)
        return 1;
    int64_t s = (ms + 999) / 1000;
    return s > INT32_MAX ? INT32_MAX : (int)s;
}

/* Refuses while the address is blocked. */
static bool blocked(const rl_entry *e, int64_t now_ms, int *retry_after_s)
{
    if (e == NULL || now_ms >= e->blocked_until_ms)
        return false;
    if (retry_after_s != NULL)
        *retry_after_s = retry_seconds(e->blocked_until_ms - now_ms);
    return true;
}

/* Move the connection window forward to the one holding now. */
static void conn_roll(rl_entry *e, int64_t now_ms, int64_t win)
{
    if (now_ms < e->conn_start_ms) {
        /* The clock went back: start over rather than trust the old window. */
        e->conn_start_ms = now_ms;
        e->conn_prev = 0;
        e->conn_cur = 0;
        return;
    }
    int64_t k = (now_ms - e->conn_start_ms) / win;
    if (k == 0)
        return;
    e->conn_prev = k == 1 ? e->conn_cur : 0;
    e->conn_cur = 0;
    e->conn_start_ms += k * win;
}

/* Would one more connection keep the weighted count within max?
 * prev * (win - elapsed) / win + cur + 1 <= max, in integers. */
static bool conn_fits(const rl_entry *e, int64_t now_ms, int64_t win, int64_t max)
{
    int64_t elapsed = now_ms - e->conn_start_ms;
    return (int64_t)e->conn_prev * (win - elapsed) + ((int64_t)e->conn_cur + 1) * win <=
           max * win;
}

/* How long until conn_fits holds again, in ms. */
static int64_t conn_wait_ms(const rl_entry *e, int64_t now_ms, int64_t win, int64_t max)
{
    int64_t elapsed = now_ms - e->conn_start_ms;
    int64_t cur = e->conn_cur, prev = e->conn_prev;
    if (cur + 1 <= max && prev > 0) {
        /* Within this window once prev * (win - t) <= (max - cur - 1) * win. */
        int64_t t = win - ((max - cur - 1) * win) / prev;
        if (t < win)
            return max64(t - elapsed, 1);
    }
    /* In the next window, where cur becomes the weighted part. */
    if (cur + 1 <= max || cur == 0)
        return win - elapsed;
    int64_t t = win - ((max - 1) * win) / cur;
    return win - elapsed + (t > 0 ? t : 0);
}

int cx_ratelimit_connection(cx_ratelimit *rl, const char *addr, int64_t now_ms, int *retry_after_s)
{
    if (retry_after_s != NULL)
        *retry_after_s = 0;
    if (blocked(lookup(rl, addr), now_ms, retry_after_s))
        return CX_E_LIMITED;
    if (rl->cfg.conn_max <= 0)
        return CX_OK;
    rl_entry *e = get_entry(rl, addr, now_ms);
    if (e == NULL)
        return CX_E_NOMEM;
    int64_t win = (int64_t)rl->cfg.conn_window_s * 1000;
    conn_roll(e, now_ms, win);
    if (!conn_fits(e, now_ms, win, rl->cfg.conn_max)) {
        if (retry_after_s != NULL)
            *retry_after_s = retry_seconds(conn_wait_ms(e, now_ms, win, rl->cfg.conn_max));
        return CX_E_LIMITED;
    }
    if (e->conn_cur < INT32_MAX)
        e->conn_cur++;
    return CX_OK;
}

int cx_ratelimit_auth_allowed(cx_ratelimit *rl, const char *addr, int64_t now_ms, int *retry_after_s)
{
    if (retry_after_s != NULL)
        *retry_after_s = 0;
    return blocked(lookup(rl, addr), now_ms, retry_after_s) ? CX_E_LIMITED : CX_OK;
}

int cx_ratelimit_auth_failed(cx_ratelimit *rl, const char *addr, int64_t now_ms, bool *blocked_out)
{
    if (blocked_out != NULL)
        *blocked_out = false;
    if (rl->cfg.auth_max <= 0)
        return 0;
    rl_entry *e = get_entry(rl, addr, now_ms);
    if (e == NULL)
        return 0; /* out of memory: answer without delay rather than fail the caller */
    int64_t win = (int64_t)rl->cfg.auth_window_s * 1000;
    if (e->auth_fails == 0 || now_ms - e->auth_first_ms >= win || now_ms < e->auth_first_ms) {
        /* A fresh window: old failures and the old streak are forgotten. */
        e->auth_first_ms = now_ms;
        e->auth_fails = 0;
        e->streak = 0;
    }
    e->auth_fails++;
    int delay = 0;
    if (e->streak > 0) {
        delay = RL_BACKOFF_FIRST_MS;
        for (int i = 1; i < e->streak && delay < RL_BACKOFF_MAX_MS; i++)
            delay *= 2;
        if (delay > RL_BACKOFF_MAX_MS)
            delay = RL_BACKOFF_MAX_MS;
    }
    if (e->streak < INT32_MAX)
        e->streak++;
    if (e->auth_fails >= rl->cfg.auth_max) {
        /* The count starts over once the block has run its course. */
        e->auth_fails = 0;
        if (rl->cfg.block_s > 0) {
            e->blocked_until_ms = now_ms + (int64_t)rl->cfg.block_s * 1000;
            if (blocked_out != NULL)
                *blocked_out = true;
        }
    }
    return delay;
}

void cx_ratelimit_auth_succeeded(cx_ratelimit *rl, const char *addr)
{
    rl_entry *e = lookup(rl, addr);
    if (e != NULL)
        e->streak = 0;
}

int cx_ratelimit_message(const cx_ratelimit *rl, cx_msg_budget *b, int64_t now_ms)
{
    if (rl->cfg.msg_max <= 0)
        return CX_OK;
    int64_t win = (int64_t)rl->cfg.msg_window_s * 1000;
    if (now_ms - b->window_start_ms >= win || now_ms < b->window_start_ms) {
        b->window_start_ms = now_ms;
        b->count = 0;
    }
    if (b->count < INT32_MAX)
        b->count++;
    return b->count > rl->cfg.msg_max ? CX_E_LIMITED : CX_OK;
}

/* For tests: how many addresses the table holds. */
size_t cx__ratelimit_count(const cx_ratelimit *rl);
size_t cx__ratelimit_count(const cx_ratelimit *rl)
{
    return rl->count;
}
