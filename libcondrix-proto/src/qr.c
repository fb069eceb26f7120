/* QR codes of otpauth:// URIs, so a user can enrol an authenticator app straight from
 * a terminal or a web page: half-block art for terminals and a compact SVG. */
#include "condrix/buf.h"
#include "condrix/totp.h"

#include <qrencode.h>
#include <stdlib.h>
#include <string.h>

#define TERM_QUIET 2 /* modules of quiet zone around the terminal art */
#define SVG_QUIET 4  /* ISO/IEC 18004's full quiet zone, cheap in an SVG */
#define SVG_MAX_BYTES (1024 * 1024)

/* UTF-8 of U+2588 full, U+2580 upper half and U+2584 lower half block. */
static const char full_block[] = "\xe2\x96\x88";
static const char upper_half[] = "\xe2\x96\x80";
static const char lower_half[] = "\xe2\x96\x84";

static QRcode *encode(const char *text)
{
    if (!text || !*text)
        return NULL;
    return QRcode_encodeString(text, 0, QR_ECLEVEL_M, QR_MODE_8, 1);
}

/* Light module at (x, y) of the symbol plus quiet zone; outside the drawing is not. */
static bool term_light(const QRcode *qr, int x, int y)
{
    int size = qr->width + 2 * TERM_QUIET;
    if (x < 0 || y < 0 || x >= size || y >= size)
        return false;
    x -= TERM_QUIET;
    y -= TERM_QUIET;
    if (x < 0 || y < 0 || x >= qr->width || y >= qr->width)
        return true; /* quiet zone */
    return !(qr->data[y * qr->width + x] & 1);
}

/* Terminals are mostly light text on a dark background, and many phone scanners read
 * only dark-on-light symbols. So light modules (and the quiet zone) are drawn with
 * block glyphs in the foreground colour, and dark modules are left as spaces showing
 * the dark background: a normal dark-on-light symbol on a dark terminal. On a light
 * terminal the result is inverted; scanners that handle inverted codes still read it. */
char *cx_qr_terminal(const char *text)
{
    QRcode *qr = encode(text);
    char *out = NULL;

    if (!qr)
        return NULL;
    int size = qr->width + 2 * TERM_QUIET;
    size_t rows = (size_t)(size + 1) / 2;
    /* At most three bytes per cell, a newline per row, one NUL. */
    size_t cap = rows * ((size_t)size * 3 + 1) + 1;
    out = malloc(cap);
    if (!out)
        goto out;

    char *p = out;
    for (int y = 0; y < size; y += 2) {
        for (int x = 0; x < size; x++) {
            bool top = term_light(qr, x, y);
            bool bottom = term_light(qr, x, y + 1);
            const char *cell = top && bottom ? full_block
                             : top           ? upper_half
                             : bottom        ? lower_half
                                             : " ";
            size_t n = strlen(cell);
            memcpy(p, cell, n);
            p += n;
        }
        *p++ = '\n';
    }
    *p = '\0';
out:
    QRcode_free(qr);
    return out;
}

/* One path of horizontal runs of dark modules keeps even a version-10 symbol a few
 * kilobytes; crispEdges stops anti-aliasing seams between adjacent runs. */
char *cx_qr_svg(const char *text)
{
    QRcode *qr = encode(text);
    char *s = NULL;
    cx_buf b;
    int rc;

    if (!qr)
        return NULL;
    cx_buf_init(&b, SVG_MAX_BYTES);
    int size = qr->width + 2 * SVG_QUIET;
    rc = cx_buf_appendf(&b,
                        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d %d\" "
                        "shape-rendering=\"crispEdges\">"
                        "<rect width=\"%d\" height=\"%d\" fill=\"#fff\"/>"
                        "<path fill=\"#000\" d=\"",
                        size, size, size, size);
    for (int y = 0; y < qr->width && rc == 0; y++) {
        int x = 0;
        while (x < qr->width && rc == 0) {
            if (!(qr->data[y * qr->width + x] & 1)) {
                x++;
                continue;
            }
            int start = x;
            while (x < qr->width && (qr->data[y * qr->width + x] & 1))
                x++;
            rc = cx_buf_appendf(&b, "M%d %dh%dv1h-%dz", start + SVG_QUIET, y + SVG_QUIET,
                                x - start, x - start);
        }
    }
    if (rc == 0)
        rc = cx_buf_append_str(&b, "\"/></svg>\n");
    if (rc != 0)
        goto out;
    s = malloc(b.len + 1);
    if (!s)
        goto out;
    memcpy(s, b.data, b.len);
    s[b.len] = '\0';
out:
    cx_buf_free(&b);
    QRcode_free(qr);
    return s;
}
