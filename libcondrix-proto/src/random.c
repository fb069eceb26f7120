/* The loop's random pool: 4 KiB from libsodium at a time, handed out front to back and
 * wiped as it goes, so the per-draw getrandom system call disappears from hot paths. */
#include "condrix/random.h"

#include <pthread.h>
#include <sodium.h>
#include <string.h>

static struct {
    unsigned char bytes[CX_RANDOM_POOL_BYTES];
    size_t pos;       /* next unused byte; CX_RANDOM_POOL_BYTES when empty */
    int atfork_set;   /* the fork handler is registered */
} pool = {.pos = CX_RANDOM_POOL_BYTES};

/* Runs in a forked child: the parent keeps drawing the same bytes, so drop them. */
static void pool_after_fork(void)
{
    cx_random_discard();
}

static void refill(void)
{
    if (!pool.atfork_set) {
        /* On failure the pool still works; only the fork guarantee is lost, and the
         * registration is retried at the next refill. */
        pool.atfork_set = pthread_atfork(NULL, NULL, pool_after_fork) == 0;
    }
    randombytes_buf(pool.bytes, sizeof pool.bytes);
    pool.pos = 0;
}

void cx_random_buf(void *out, size_t n)
{
    unsigned char *o = out;
    if (n > sizeof pool.bytes) {
        randombytes_buf(out, n);
        return;
    }
    while (n > 0) {
        if (pool.pos == sizeof pool.bytes)
            refill();
        size_t take = sizeof pool.bytes - pool.pos;
        if (take > n)
            take = n;
        memcpy(o, pool.bytes + pool.pos, take);
        sodium_memzero(pool.bytes + pool.pos, take);
        pool.pos += take;
        o += take;
        n -= take;
    }
}

void cx_random_discard(void)
{
    sodium_memzero(pool.bytes, sizeof pool.bytes);
    pool.pos = sizeof pool.bytes;
}
