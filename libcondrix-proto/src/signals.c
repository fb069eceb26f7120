/* SIGINT/SIGTERM for the servers: one graceful stop, repeats ignored, handlers kept
 * installed until the loop is done so no signal ever falls back to the default action. */
#include "condrix/signals.h"

#include "condrix/log.h"

#include <signal.h>

static void on_signal(uv_signal_t *h, int signum)
{
    cx_signals *s = h->data;
    const char *name = signum == SIGINT ? "SIGINT" : "SIGTERM";
    if (s->stopping) {
        cx_log_info("received %s again; already shutting down", name);
        return;
    }
    s->stopping = true;
    cx_log_info("received %s", name);
    s->stop(s->arg);
    uv_unref((uv_handle_t *)&s->sigint);
    uv_unref((uv_handle_t *)&s->sigterm);
}

void cx_signals_start(cx_signals *s, uv_loop_t *loop, void (*stop)(void *arg), void *arg)
{
    s->stop = stop;
    s->arg = arg;
    s->stopping = false;
    uv_signal_init(loop, &s->sigint);
    uv_signal_init(loop, &s->sigterm);
    s->sigint.data = s;
    s->sigterm.data = s;
    uv_signal_start(&s->sigint, on_signal, SIGINT);
    uv_signal_start(&s->sigterm, on_signal, SIGTERM);
}

void cx_signals_close(cx_signals *s, uv_loop_t *loop)
{
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
}
