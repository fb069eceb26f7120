/* A database watch for the servers: an inotify wake-up plus SQLite's data_version, so
 * changes that admin verbs commit from another process take effect within milliseconds. */
#include "condrix/dbwatch.h"
#include "condrix/db.h"
#include "condrix/error.h"

#include <stdlib.h>
#include <string.h>

struct cx_db_watch {
    uv_fs_event_t ev;           /* first: the close callback finds the struct */
    sqlite3 *db;                /* not owned */
    void (*changed)(void *ud);
    void *ud;
    int64_t version;            /* data_version at the last look */
    size_t name_len;
    char name[64];              /* the database's file name; its -wal etc. start alike */
};

void cx_db_watch_poll(cx_db_watch *w)
{
    int64_t v;
    if (w && cx_db_data_version(w->db, &v) == CX_OK && v != w->version) {
        w->version = v;
        w->changed(w->ud);
    }
}

static void on_event(uv_fs_event_t *ev, const char *filename, int events, int status)
{
    (void)events;
    cx_db_watch *w = ev->data;
    if (status < 0 || (filename && strncmp(filename, w->name, w->name_len) != 0))
        return;
    cx_db_watch_poll(w);
}

int cx_db_watch_start(uv_loop_t *loop, const char *dir, const char *db_name, sqlite3 *db,
                      void (*changed)(void *ud), void *ud, cx_db_watch **out)
{
    cx_db_watch *w = calloc(1, sizeof *w);
    if (!w)
        return CX_E_NOMEM;
    w->db = db;
    w->changed = changed;
    w->ud = ud;
    w->name_len = strlen(db_name) < sizeof w->name ? strlen(db_name) : sizeof w->name - 1;
    memcpy(w->name, db_name, w->name_len);
    (void)cx_db_data_version(db, &w->version);
    if (uv_fs_event_init(loop, &w->ev) != 0) {
        free(w);
        return CX_E_NOMEM;
    }
    w->ev.data = w;
    /* Without inotify (or past the watch limit) the handle stays idle and the owner's
     * poll does the job alone. */
    (void)uv_fs_event_start(&w->ev, on_event, dir, 0);
    *out = w;
    return CX_OK;
}

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

void cx_db_watch_stop(cx_db_watch *w)
{
    if (!w)
        return;
    uv_fs_event_stop(&w->ev);
    uv_close((uv_handle_t *)&w->ev, on_closed);
}
