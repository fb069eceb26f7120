/* A buffered CSPRNG for the event loop's many small draws (message ids, session ids):
 * one getrandom per 4 KiB instead of one per draw. */
#ifndef CONDRIX_RANDOM_H
#define CONDRIX_RANDOM_H

#include <stddef.h>

/* Bytes fetched from libsodium's randombytes_buf per refill. */
#define CX_RANDOM_POOL_BYTES 4096

/* Fill out with n cryptographically secure random bytes. Bytes handed out are wiped
 * from the pool at once, so nothing drawn earlier can be read back from memory. Draws
 * of more than a pool's worth go straight to randombytes_buf.
 *
 * NOT thread-safe: the pool is process-wide state without a lock. Call it from the
 * event-loop thread only; code that runs in the libuv thread pool (password.c) must
 * call randombytes_buf directly. A child process made by fork() starts with an empty
 * pool, so parent and child never share bytes. */
void cx_random_buf(void *out, size_t n);

/* Wipe and drop whatever the pool still holds (at shutdown, or in tests). */
void cx_random_discard(void);

#endif
