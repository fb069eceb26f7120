/* Operator logging: one line per event on stderr, "time LEVEL component: message",
 * written with a single write() so lines from different threads never interleave.
 * Control characters are replaced so a peer-supplied string cannot forge log lines
 * or drive the operator's terminal. */
#include "condrix/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* Longest line, newline included; longer messages are cut and marked. */
#define LOG_LINE_MAX 2048
#define LOG_COMPONENT_MAX 32

static _Atomic int log_level = CX_LOG_INFO;
static char log_component[LOG_COMPONENT_MAX] = "condrix";

void cx_log_set_level(enum cx_log_level lvl)
{
    atomic_store(&log_level, (int)lvl);
}

void cx_log_init(const char *component)
{
    if (component != NULL)
        snprintf(log_component, sizeof log_component, "%s", component);
    static const struct {
        const char *name;
        enum cx_log_level lvl;
    } names[] = {
        {"debug", CX_LOG_DEBUG}, {"info", CX_LOG_INFO},   {"warn", CX_LOG_WARN},
        {"warning", CX_LOG_WARN}, {"error", CX_LOG_ERROR},
    };
    const char *v = getenv("CONDRIX_LOG_LEVEL");
    enum cx_log_level lvl = CX_LOG_INFO;
    bool known = v == NULL || v[0] == '\0';
    for (size_t i = 0; !known && i < sizeof names / sizeof names[0]; i++) {
        if (strcasecmp(v, names[i].name) == 0) {
            lvl = names[i].lvl;
            known = true;
        }
    }
    cx_log_set_level(lvl);
    if (!known)
        cx_log(CX_LOG_WARN, "unknown CONDRIX_LOG_LEVEL '%s', using info", v);
}

static const char *level_name(enum cx_log_level lvl)
{
    switch (lvl) {
    case CX_LOG_DEBUG: return "DEBUG";
    case CX_LOG_INFO: return "INFO ";
    case CX_LOG_WARN: return "WARN ";
    case CX_LOG_ERROR: return "ERROR";
    }
    return "?????";
}

/* Replace C0 controls, DEL and UTF-8 encoded C1 controls (U+0080..U+009F, which
 * some terminals obey like ESC sequences) with '?'. */
static void sanitize(char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7F) {
            s[i] = '?';
        } else if (c == 0xC2 && i + 1 < len && (unsigned char)s[i + 1] >= 0x80 &&
                   (unsigned char)s[i + 1] <= 0x9F) {
            s[i] = '?';
            s[i + 1] = '?';
            i++;
        }
    }
}

void cx_log(enum cx_log_level lvl, const char *fmt, ...)
{
    if ((int)lvl < atomic_load(&log_level))
        return;
    int saved_errno = errno;
    char line[LOG_LINE_MAX];
    struct timespec ts;
    struct tm tm;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) {
        ts.tv_sec = 0;
        ts.tv_nsec = 0;
    }
    if (gmtime_r(&ts.tv_sec, &tm) == NULL)
        memset(&tm, 0, sizeof tm);
    int head = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s %s: ",
                        tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                        tm.tm_sec, (int)(ts.tv_nsec / 1000000), level_name(lvl), log_component);
    if (head < 0 || (size_t)head >= sizeof line - 1)
        head = 0;

    /* Room for the message, keeping one byte for the newline. */
    size_t room = sizeof line - 1 - (size_t)head;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line + head, room, fmt, ap);
    va_end(ap);
    size_t msg_len;
    if (n < 0) {
        msg_len = (size_t)snprintf(line + head, room, "(unformattable log message)");
    } else if ((size_t)n < room) {
        msg_len = (size_t)n;
    } else {
        /* Cut on a character boundary and say so. */
        msg_len = room - 1;
        while (msg_len > 0 && ((unsigned char)line[head + msg_len] & 0xC0) == 0x80)
            msg_len--;
        if (msg_len >= 3) {
            msg_len -= 3;
            while (msg_len > 0 && ((unsigned char)line[head + msg_len] & 0xC0) == 0x80)
                msg_len--;
            memcpy(line + head + msg_len, "...", 3);
            msg_len += 3;
        }
    }
    size_t len = (size_t)head + msg_len;
    sanitize(line, len);
    line[len++] = '\n';

    size_t off = 0;
    while (off < len) {
        ssize_t w = write(STDERR_FILENO, line + off, len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        off += (size_t)w;
    }
    errno = saved_errno;
}
