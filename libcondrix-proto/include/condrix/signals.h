/* Graceful shutdown on SIGINT/SIGTERM for the servers: the first signal calls stop, later
 * ones are logged and ignored (a second Ctrl-C must not kill a server mid-checkpoint). */
#ifndef CONDRIX_SIGNALS_H
#define CONDRIX_SIGNALS_H

#include <stdbool.h>
#include <uv.h>

typedef struct cx_signals {
    uv_signal_t sigint;       /* SIGINT handler */
    uv_signal_t sigterm;      /* SIGTERM handler */
    void (*stop)(void *arg);  /* called once, on the first signal */
    void *arg;
    bool stopping;            /* a signal arrived */
} cx_signals;

/* Install both handlers on loop. After the first signal they no longer keep the loop
 * alive, so it runs dry once the server is down. */
void cx_signals_start(cx_signals *s, uv_loop_t *loop, void (*stop)(void *arg), void *arg);
/* After uv_run returned: close the handlers and let libuv finish closing them. */
void cx_signals_close(cx_signals *s, uv_loop_t *loop);

#endif
