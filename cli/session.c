/* The CLI's sign-in state, cli.json under CONDRIX_HOME (default ~/.condrix): the Maestro
 * URL, the username, the session token and its expiry, and an extra CA file. The token
 * is a bearer secret, so the file is only ever written whole, 0600, through a temporary
 * file that is synced and renamed: a crash leaves the old file or the new, never half. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "condrix/config.h"
#include "condrix/error.h"

char *cli_session_path(void)
{
    char *home = cx_default_home();
    if (!home)
        return NULL;
    size_t n = strlen(home) + sizeof "/" CLI_SESSION_FILE;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", home, CLI_SESSION_FILE);
    free(home);
    return p;
}

static char *dup_member(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? strdup(json_string_value(v)) : NULL;
}

void cli_session_free(cli_session *s)
{
    if (s->token) {
        sodium_memzero(s->token, strlen(s->token));
        free(s->token);
    }
    free(s->url);
    free(s->username);
    free(s->expires_at);
    free(s->ca);
    memset(s, 0, sizeof *s);
}

int cli_session_load(cli_session *s, cli_err *e)
{
    memset(s, 0, sizeof *s);
    int rc = CX_E_IO;
    char *buf = NULL;
    size_t got = 0;
    json_t *root = NULL;
    char *path = cli_session_path();
    if (!path) {
        cli_err_set(e, CLI_EXIT_SESSION, "NOT_SIGNED_IN", "no home directory: set CONDRIX_HOME");
        return CX_E_IO;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno == ENOENT) {
            cli_err_set(e, CLI_EXIT_SESSION, "NOT_SIGNED_IN",
                        "not signed in: run `condrix login URL` first");
            rc = CX_E_NOTFOUND;
        } else {
            cli_err_set(e, CLI_EXIT_SESSION, "NOT_SIGNED_IN", "cannot read %s: %s", path,
                        strerror(errno));
        }
        goto out;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > CLI_SESSION_MAX_BYTES) {
        cli_err_set(e, CLI_EXIT_SESSION, "NOT_SIGNED_IN",
                    "%s is not a session file: remove it and run `condrix login URL`", path);
        rc = CX_E_FORMAT;
        goto out;
    }
    if (st.st_mode & 077) {
        /* Someone loosened it; the token may have been read. Tighten, and say so. */
        fprintf(stderr,
                "condrix: warning: %s was readable by others; mode set to 0600 "
                "(consider `condrix logout` and signing in again)\n",
                path);
        (void)fchmod(fd, 0600);
    }
    buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        cli_err_set(e, CLI_EXIT_SESSION, "INTERNAL", "out of memory");
        goto out;
    }
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    json_error_t jerr;
    root = json_loadb(buf, got, JSON_REJECT_DUPLICATES, &jerr);
    s->url = dup_member(root, "url");
    s->token = dup_member(root, "sessionToken");
    s->username = dup_member(root, "username");
    s->expires_at = dup_member(root, "expiresAt");
    s->ca = dup_member(root, "ca");
    if (!json_is_object(root) || !s->url || !s->token || !s->token[0]) {
        cli_err_set(e, CLI_EXIT_SESSION, "NOT_SIGNED_IN",
                    "%s is not a valid session: run `condrix login URL`", path);
        cli_session_free(s);
        rc = CX_E_FORMAT;
        goto out;
    }
    rc = CX_OK;
out:
    if (fd >= 0)
        close(fd);
    if (buf) {
        sodium_memzero(buf, got);
        free(buf);
    }
    if (root) {
        cli_json_wipe(root, "sessionToken");
        json_decref(root);
    }
    free(path);
    return rc;
}

/* Write all of buf to fd, riding out short writes and EINTR. */
static int write_all(int fd, const char *buf, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, buf, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        buf += w;
        n -= (size_t)w;
    }
    return 0;
}

int cli_session_save(const cli_session *s, cli_err *e)
{
    int rc = CX_E_IO;
    char *home = cx_default_home();
    char *path = cli_session_path();
    char *tmp = NULL;
    char *text = NULL;
    int fd = -1;
    json_t *root = NULL;
    if (!home || !path) {
        cli_err_set(e, CLI_EXIT_USAGE, "IO_ERROR", "no home directory: set CONDRIX_HOME");
        goto out;
    }
    if (cx_mkdir_private(home) != CX_OK) {
        cli_err_set(e, CLI_EXIT_USAGE, "IO_ERROR", "cannot create %s: %s", home, strerror(errno));
        goto out;
    }
    root = json_pack("{s:s, s:s*, s:s, s:s*, s:s*}", "url", s->url, "username", s->username,
                     "sessionToken", s->token, "expiresAt", s->expires_at, "ca", s->ca);
    if (root)
        text = json_dumps(root, JSON_INDENT(2));
    size_t tlen = strlen(path) + sizeof ".XXXXXX";
    tmp = malloc(tlen);
    if (!root || !text || !tmp) {
        cli_err_set(e, CLI_EXIT_USAGE, "INTERNAL", "out of memory");
        goto out;
    }
    snprintf(tmp, tlen, "%s.XXXXXX", path);
    /* mkstemp makes the file 0600 whatever the umask; fchmod states it anyway. */
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        cli_err_set(e, CLI_EXIT_USAGE, "IO_ERROR", "cannot create a file in %s: %s", home,
                    strerror(errno));
        free(tmp);
        tmp = NULL;
        goto out;
    }
    size_t n = strlen(text);
    if (fchmod(fd, 0600) != 0 || write_all(fd, text, n) != 0 || write_all(fd, "\n", 1) != 0 ||
        fsync(fd) != 0) {
        cli_err_set(e, CLI_EXIT_USAGE, "IO_ERROR", "cannot write %s: %s", tmp, strerror(errno));
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        cli_err_set(e, CLI_EXIT_USAGE, "IO_ERROR", "cannot write %s: %s", tmp, strerror(errno));
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        cli_err_set(e, CLI_EXIT_USAGE, "IO_ERROR", "cannot rename %s to %s: %s", tmp, path,
                    strerror(errno));
        goto out;
    }
    free(tmp);
    tmp = NULL;
    /* The rename itself is durable only once the directory is synced. */
    int dfd = open(home, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    rc = CX_OK;
out:
    if (fd >= 0)
        close(fd);
    if (tmp) {
        (void)unlink(tmp);
        free(tmp);
    }
    if (text) {
        sodium_memzero(text, strlen(text));
        free(text);
    }
    if (root) {
        cli_json_wipe(root, "sessionToken");
        json_decref(root);
    }
    free(path);
    free(home);
    return rc;
}

int cli_session_remove(cli_err *e)
{
    char *path = cli_session_path();
    if (!path) {
        cli_err_set(e, CLI_EXIT_USAGE, "IO_ERROR", "no home directory: set CONDRIX_HOME");
        return CX_E_IO;
    }
    int rc = CX_OK;
    if (unlink(path) != 0 && errno != ENOENT) {
        cli_err_set(e, CLI_EXIT_USAGE, "IO_ERROR", "cannot remove %s: %s", path, strerror(errno));
        rc = CX_E_IO;
    }
    free(path);
    return rc;
}
