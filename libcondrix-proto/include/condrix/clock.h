/* Wall-clock time in the forms the protocol uses: Unix milliseconds and ISO 8601 UTC. */
#ifndef CONDRIX_CLOCK_H
#define CONDRIX_CLOCK_H

#include <stdint.h>

/* Now, in Unix milliseconds (CLOCK_REALTIME). */
int64_t cx_clock_now_ms(void);
/* Parse "YYYY-MM-DDTHH:MM:SS[.fff][Z|+HH:MM|-HH:MM]" (a space may stand for T; a date
 * alone means midnight UTC). CX_OK with Unix ms in *out, or CX_E_FORMAT. */
int cx_clock_parse_iso8601(const char *s, int64_t *out);

#endif
