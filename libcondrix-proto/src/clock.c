/* Wall-clock helpers: the current Unix time in ms and a strict ISO 8601 reader for the
 * expiry times clients send. Writing timestamps lives in msg.c (cx_msg_timestamp). */
#include "condrix/clock.h"

#include "condrix/error.h"

#include <ctype.h>
#include <stdbool.h>
#include <time.h>

int64_t cx_clock_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Read exactly n digits. */
static bool digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return false;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return true;
}

static int64_t days_from_civil(int y, int m, int d)
{
    /* Howard Hinnant's days-from-civil algorithm, proleptic Gregorian. */
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const int64_t yoe = y - era * 400;
    const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int cx_clock_parse_iso8601(const char *s, int64_t *out)
{
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const char *p = s;
    int y, mo, d, h = 0, mi = 0, sec = 0, ms = 0, off = 0;
    if (!s || !digits(&p, 4, &y) || *p++ != '-' || !digits(&p, 2, &mo) || *p++ != '-' ||
        !digits(&p, 2, &d))
        return CX_E_FORMAT;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1])
        return CX_E_FORMAT;
    if (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return CX_E_FORMAT;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        p++;
        if (!digits(&p, 2, &h) || *p++ != ':' || !digits(&p, 2, &mi))
            return CX_E_FORMAT;
        if (*p == ':') {
            p++;
            if (!digits(&p, 2, &sec))
                return CX_E_FORMAT;
            if (*p == '.') {
                p++;
                int n = 0, frac = 0;
                while (isdigit((unsigned char)*p)) {
                    if (n < 3)
                        frac = frac * 10 + (*p - '0');
                    n++;
                    p++;
                }
                if (n == 0)
                    return CX_E_FORMAT;
                for (; n < 3; n++)
                    frac *= 10;
                ms = frac;
            }
        }
        if (h > 23 || mi > 59 || sec > 60)
            return CX_E_FORMAT;
        if (*p == 'Z' || *p == 'z') {
            p++;
        } else if (*p == '+' || *p == '-') {
            int sign = *p++ == '-' ? -1 : 1, oh, om;
            if (!digits(&p, 2, &oh))
                return CX_E_FORMAT;
            if (*p == ':')
                p++;
            if (!digits(&p, 2, &om) || oh > 23 || om > 59)
                return CX_E_FORMAT;
            off = sign * (oh * 60 + om);
        } else {
            return CX_E_FORMAT; /* a time without a zone is ambiguous */
        }
    }
    if (*p != '\0')
        return CX_E_FORMAT;
    int64_t days = days_from_civil(y, mo, d);
    int64_t secs = days * 86400 + h * 3600 + mi * 60 + sec - (int64_t)off * 60;
    *out = secs * 1000 + ms;
    return CX_OK;
}
