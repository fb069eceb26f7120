/* Queued socket writes that own a copy of their bytes, shared by the server connections
 * (net.c) and the outbound client (wsclient.c). Internal to the library. */
#ifndef CONDRIX_WQUEUE_INTERNAL_H
#define CONDRIX_WQUEUE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* Called when a queued write finished: owner as given, len the bytes it carried. */
typedef void (*cx__wq_done)(void *owner, size_t len, int status);

/* Copy n bytes and uv_write them on s; done(owner, n, status) follows. CX_OK, CX_E_NOMEM
 * or CX_E_IO (nothing queued, done not called). */
int cx__wq_write(uv_stream_t *s, const uint8_t *p, size_t n, void *owner, cx__wq_done done);

/* Put n bytes on s in order, counting what waits in *queued: with direct, straight to the
 * socket what it takes when nothing is queued yet (a failure then returns CX_E_IO at
 * once); the rest, or everything without direct, queued with cx__wq_write (a failure
 * then comes later through done). CX_E_TOOBIG when the queue would pass cap (nothing
 * more queued), CX_E_IO, CX_E_NOMEM. */
int cx__wq_send(uv_stream_t *s, const uint8_t *p, size_t n, bool direct, size_t *queued,
                size_t cap, void *owner, cx__wq_done done);

#endif
