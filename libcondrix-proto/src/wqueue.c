/* Queued socket writes that carry their own copy of the bytes, so callers may reuse their
 * buffers at once; one allocation per write holds the request and the data. */
#include "wqueue.h"

#include "condrix/error.h"

#include <stdlib.h>
#include <string.h>

struct wreq {
    uv_write_t req;     /* libuv's request; first, so the callback finds the struct */
    void *owner;        /* passed back to done */
    cx__wq_done done;
    size_t len;         /* bytes in data */
    uint8_t data[];
};

static void on_written(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    void *owner = w->owner;
    cx__wq_done done = w->done;
    size_t len = w->len;
    free(w);
    done(owner, len, status);
}

int cx__wq_send(uv_stream_t *s, const uint8_t *p, size_t n, bool direct, size_t *queued,
                size_t cap, void *owner, cx__wq_done done)
{
    if (direct && *queued == 0) {
        uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
        int w = uv_try_write(s, &b, 1);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (w != UV_EAGAIN && w != UV_ENOSYS) {
            return CX_E_IO;
        }
        if (n == 0)
            return CX_OK;
    }
    if (*queued + n > cap)
        return CX_E_TOOBIG;
    int rc = cx__wq_write(s, p, n, owner, done);
    if (rc == CX_OK)
        *queued += n;
    return rc;
}

int cx__wq_write(uv_stream_t *s, const uint8_t *p, size_t n, void *owner, cx__wq_done done)
{
    struct wreq *w = malloc(sizeof *w + n);
    if (!w)
        return CX_E_NOMEM;
    w->owner = owner;
    w->done = done;
    w->len = n;
    memcpy(w->data, p, n);
    uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)n);
    if (uv_write(&w->req, s, &b, 1, on_written) < 0) {
        free(w);
        return CX_E_IO;
    }
    return CX_OK;
}
