/* Noticing that another process (an admin verb) committed to a server's database: an
 * inotify watch on the data directory wakes the loop at once, SQLite's data_version says
 * whether the database really changed, and a periodic poll covers file systems without
 * inotify. The owner then re-reads what it holds in memory. */
#ifndef CONDRIX_DBWATCH_H
#define CONDRIX_DBWATCH_H

#include <sqlite3.h>
#include <uv.h>

typedef struct cx_db_watch cx_db_watch; /* opaque */

/* Watch dir for changes to the files of db_name (its -wal, -journal too) and call
 * changed(ud) once per commit made by another connection to db. Without inotify the
 * watch still works through cx_db_watch_poll. CX_OK, or CX_E_NOMEM. */
int cx_db_watch_start(uv_loop_t *loop, const char *dir, const char *db_name, sqlite3 *db,
                      void (*changed)(void *ud), void *ud, cx_db_watch **out);
/* Compare data_version now (call it from a periodic timer); changed() if it moved. */
void cx_db_watch_poll(cx_db_watch *w);
/* Stop and free (the handle is closed on the loop; nothing is called after this). */
void cx_db_watch_stop(cx_db_watch *w);

#endif
