/* libFuzzer driver for cx_ws: arbitrary bytes fed to one session in chunks whose
 * sizes come from the input, checking the promises callers rely on (valid UTF-8
 * messages under the cap, on_closed at most once, nothing held once closed).
 *
 * Input layout: byte 0 = options, bytes 1..4 = chunk sizes used in turn (0 means
 * "all the rest"), then the wire bytes.
 *   options bit 0: answer every message from inside on_message
 *   options bit 1: call cx_ws_close from inside the second message
 *   options bits 2-3: max_message 125 / 1000 / 65536 / 1 MiB
 *   options bit 4: client role (expects unmasked frames); else server role */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "condrix/error.h"
#include "condrix/utf8.h"
#include "condrix/ws.h"

struct fz {
    cx_ws *ws;
    size_t max;
    int opts;
    int msgs;
    int closed;
};

static void on_message(void *ud, const char *msg, size_t len)
{
    struct fz *f = ud;
    if (len > f->max || !cx_utf8_valid((const uint8_t *)msg, len))
        abort();
    f->msgs++;
    if (f->opts & 1)
        (void)cx_ws_send_text(f->ws, msg, len);
    if ((f->opts & 2) && f->msgs == 2)
        (void)cx_ws_close(f->ws, 1000, "fuzz");
}

static int on_send(void *ud, const uint8_t *data, size_t len)
{
    (void)ud;
    /* Touch every byte so ASan checks what we were handed. */
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < len; i++)
        sink ^= data[i];
    (void)sink;
    return 0;
}

static void on_pong(void *ud)
{
    (void)ud;
}

static void on_closed(void *ud, uint16_t code, const char *reason)
{
    struct fz *f = ud;
    if (f->closed++ || strlen(reason) > 123 || code < 1000)
        abort();
}

static const cx_ws_callbacks cbs = {on_message, on_send, on_pong, on_closed};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t maxes[4] = {125, 1000, 65536, 1 << 20};
    if (size < 5 || size > (1 << 20))
        return 0;
    struct fz f = {0};
    f.opts = data[0];
    f.max = maxes[(data[0] >> 2) & 3];
    f.ws = cx_ws_new(data[0] & 16 ? CX_WS_CLIENT : CX_WS_SERVER, &cbs, &f, f.max);
    if (!f.ws)
        return 0;
    const uint8_t *sizes = data + 1;
    data += 5;
    size -= 5;

    for (size_t off = 0, i = 0; off < size; i++) {
        size_t n = sizes[i % 4] ? sizes[i % 4] : size - off;
        if (n > size - off)
            n = size - off;
        /* A private copy, exactly sized, so ASan catches reads past the chunk. */
        uint8_t *chunk = malloc(n);
        if (!chunk)
            break;
        memcpy(chunk, data + off, n);
        int rc = cx_ws_feed(f.ws, chunk, n);
        free(chunk);
        off += n;
        if (rc != CX_OK && rc != CX_E_CLOSED)
            abort();
        if (f.closed && cx_ws_holds_state(f.ws))
            abort();
        if (rc == CX_E_CLOSED)
            break;
    }
    if (!f.closed && f.msgs % 3 == 0)
        (void)cx_ws_send_text(f.ws, "bye", 3);
    cx_ws_free(f.ws);
    return 0;
}
