/* What the web-client embedder (embed.c, run at build time) and the server (web.c) must
 * agree on: the table of embedded files, the content type of a file name and the ETag
 * of a file's bytes. Header-only so that the embedder needs nothing else to build. */
#ifndef CONDRIX_MAESTRO_WEBFILE_H
#define CONDRIX_MAESTRO_WEBFILE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* One file of the web client, as the generated web_assets.c lists it. */
typedef struct mx_web_asset {
    const char *name;          /* file name without a slash, e.g. "app.js" */
    const char *type;          /* Content-Type value */
    const char *etag;          /* strong ETag, quotes included */
    const unsigned char *data; /* the bytes */
    size_t len;                /* their count */
} mx_web_asset;

/* Defined by the generated $(BUILD)/gen/web_assets.c. */
extern const mx_web_asset mx_web_assets[];
extern const size_t mx_web_asset_count;

/* Quoted ETag: 16 hex digits of 64-bit FNV-1a and 8 of the length, plus NUL. */
#define MX_WEB_ETAG_CHARS 27

/* Names become URL paths and C string literals: one path segment of a safe alphabet,
 * not starting with a dot, at most 128 characters. len: the name's length. */
static inline int mx_web_name_ok(const char *name, size_t len)
{
    if (len == 0 || len > 128 || name[0] == '.')
        return 0;
    for (size_t i = 0; i < len; i++) {
        char ch = name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '-' || ch == '_'))
            return 0;
    }
    return 1;
}

/* The Content-Type of a file name, or NULL when the extension is not one a web client
 * is made of: such files are neither embedded nor served from a directory. */
static inline const char *mx_web_type_of(const char *name)
{
    static const struct {
        const char *ext;
        const char *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".ico", "image/x-icon"},
        {".json", "application/json"},
        {".webmanifest", "application/manifest+json"},
        {".txt", "text/plain; charset=utf-8"},
    };
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name)
        return NULL;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].type;
    return NULL;
}

/* A strong validator of the content. Not a security hash: it only has to change when
 * the file does, and the embedder must be buildable without libraries. */
static inline void mx_web_etag(const unsigned char *data, size_t len,
                               char out[MX_WEB_ETAG_CHARS])
{
    static const char hex[] = "0123456789abcdef";
    uint64_t h = 0xcbf29ce484222325u;
    for (size_t i = 0; i < len; i++) {
        h ^= data[i];
        h *= 0x100000001b3u;
    }
    uint32_t n = (uint32_t)len;
    size_t k = 0;
    out[k++] = '"';
    for (int s = 60; s >= 0; s -= 4)
        out[k++] = hex[(h >> s) & 0xf];
    for (int s = 28; s >= 0; s -= 4)
        out[k++] = hex[(n >> s) & 0xf];
    out[k++] = '"';
    out[k] = '\0';
}

#endif
