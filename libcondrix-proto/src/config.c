/* Configuration helpers shared by the three binaries: strict parsing of numbers,
 * durations and booleans from the environment, the private data directory, and the
 * trusted-proxy list that decides whose forwarding headers name the real client
 * (ARCHITECTURE.md "Who is the client"). */
#include "condrix/config.h"
#include "condrix/error.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

/* Longest list entry we accept: an IPv6 address with a /128. */
#define CIDR_ENTRY_MAX 64
/* Longest address text we return from cx_client_addr (INET6_ADDRSTRLEN - 1). */
#define ADDR_TEXT_MAX 46

const char *cx_env_str(const char *name, const char *def)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : def;
}

int cx_parse_int(const char *s, long min, long max, long *out)
{
    /* strtol alone would take leading spaces and a '+'; we want digits only. */
    if (s == NULL)
        return CX_E_INVAL;
    const char *p = s[0] == '-' ? s + 1 : s;
    if (*p < '0' || *p > '9')
        return CX_E_INVAL;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return CX_E_INVAL;
    *out = v;
    return CX_OK;
}

int cx_env_int(const char *name, long def, long min, long max, long *out)
{
    const char *v = cx_env_str(name, NULL);
    *out = def;
    if (v == NULL)
        return CX_OK;
    return cx_parse_int(v, min, max, out);
}

int cx_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"", "0", "false", "no", "off"};
    if (s == NULL)
        s = "";
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return CX_OK;
        }
    }
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return CX_OK;
        }
    }
    return CX_E_INVAL;
}

int cx_parse_duration(const char *s, int64_t *seconds)
{
    if (s == NULL || *s < '0' || *s > '9')
        return CX_E_INVAL;
    int64_t n = 0;
    const char *p = s;
    for (; *p >= '0' && *p <= '9'; p++) {
        int d = *p - '0';
        if (n > (INT64_MAX - d) / 10)
            return CX_E_INVAL;
        n = n * 10 + d;
    }
    int64_t unit;
    switch (*p) {
    case '\0': unit = 1; break;
    case 's': unit = 1; break;
    case 'm': unit = 60; break;
    case 'h': unit = 3600; break;
    case 'd': unit = 86400; break;
    case 'w': unit = 7 * 86400; break;
    default: return CX_E_INVAL;
    }
    if (*p != '\0' && p[1] != '\0')
        return CX_E_INVAL;
    if (n > INT64_MAX / unit)
        return CX_E_INVAL;
    *seconds = n * unit;
    return CX_OK;
}

char *cx_default_home(void)
{
    const char *home = cx_env_str("CONDRIX_HOME", NULL);
    if (home != NULL)
        return strdup(home);
    const char *base = cx_env_str("HOME", NULL);
    if (base == NULL) {
        /* Services started without HOME still have a passwd entry. */
        struct passwd *pw = getpwuid(getuid());
        if (pw == NULL || pw->pw_dir == NULL || pw->pw_dir[0] == '\0')
            return NULL;
        base = pw->pw_dir;
    }
    size_t len = strlen(base) + sizeof "/.condrix";
    char *out = malloc(len);
    if (out == NULL)
        return NULL;
    snprintf(out, len, "%s/.condrix", base);
    return out;
}

/* mkdir that accepts an existing directory. */
static int mkdir_one(const char *path)
{
    if (mkdir(path, 0700) == 0)
        return CX_OK;
    if (errno != EEXIST)
        return CX_E_IO;
    struct stat st;
    if (stat(path, &st) != 0)
        return CX_E_IO;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return CX_E_IO;
    }
    return CX_OK;
}

int cx_mkdir_private(const char *path)
{
    if (path == NULL || path[0] == '\0')
        return CX_E_INVAL;
    char *p = strdup(path);
    if (p == NULL)
        return CX_E_NOMEM;
    int rc;
    size_t len = strlen(p);
    while (len > 1 && p[len - 1] == '/')
        p[--len] = '\0';
    /* Parents first; existing ones are left as they are, they may be shared. */
    for (char *s = p + 1; *s != '\0'; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        rc = mkdir_one(p);
        *s = '/';
        if (rc != CX_OK)
            goto out;
    }
    rc = mkdir_one(p);
    if (rc != CX_OK)
        goto out;
    /* Whether new (umask applied) or old, the final directory ends up exactly 0700. */
    if (chmod(p, 0700) != 0)
        rc = CX_E_IO;
out:
    free(p);
    return rc;
}

/* Every range is kept as IPv6: an IPv4 entry a.b.c.d/n becomes ::ffff:a.b.c.d/(96+n),
 * so v4-mapped addresses match v4 entries with no special case. */
typedef struct cidr {
    unsigned char addr[16]; /* network address, host bits cleared */
    unsigned prefix;        /* 0..128 */
} cidr;

struct cx_cidr_list {
    size_t n;      /* ranges in use */
    cidr items[];  /* n ranges */
};

/* Parse a bare address (no brackets, no port, no zone) into 16 bytes. */
static bool parse_addr(const char *s, unsigned char out[16], bool *is_v4)
{
    unsigned char v4[4];
    if (inet_pton(AF_INET, s, v4) == 1) {
        memset(out, 0, 10);
        out[10] = 0xff;
        out[11] = 0xff;
        memcpy(out + 12, v4, 4);
        *is_v4 = true;
        return true;
    }
    *is_v4 = false;
    return inet_pton(AF_INET6, s, out) == 1;
}

static void mask_bits(unsigned char a[16], unsigned prefix)
{
    for (unsigned i = 0; i < 16; i++) {
        unsigned bits = prefix > 8 * i ? prefix - 8 * i : 0;
        if (bits >= 8)
            continue;
        a[i] &= (unsigned char)(0xFF00u >> bits);
    }
}

static bool in_range(const cidr *c, const unsigned char a[16])
{
    unsigned char m[16];
    memcpy(m, a, 16);
    mask_bits(m, c->prefix);
    return memcmp(m, c->addr, 16) == 0;
}

static int parse_entry(const char *s, size_t len, cidr *out)
{
    char buf[CIDR_ENTRY_MAX + 1];
    if (len == 0 || len > CIDR_ENTRY_MAX)
        return CX_E_INVAL;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *slash = strchr(buf, '/');
    if (slash != NULL)
        *slash = '\0';
    bool v4;
    if (!parse_addr(buf, out->addr, &v4))
        return CX_E_INVAL;
    long plen = v4 ? 32 : 128;
    if (slash != NULL && cx_parse_int(slash + 1, 0, plen, &plen) != CX_OK)
        return CX_E_INVAL;
    if (slash != NULL && slash[1] == '-')
        return CX_E_INVAL;
    out->prefix = (unsigned)plen + (v4 ? 96u : 0u);
    mask_bits(out->addr, out->prefix);
    return CX_OK;
}

static bool is_sep(char c)
{
    return c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

int cx_cidr_list_parse(const char *spec, cx_cidr_list **out)
{
    *out = NULL;
    if (spec == NULL)
        spec = "127.0.0.0/8, ::1";
    /* Each entry is at least one character followed by a separator, which bounds n. */
    size_t cap = strlen(spec) / 2 + 1;
    cx_cidr_list *l = malloc(sizeof *l + cap * sizeof l->items[0]);
    if (l == NULL)
        return CX_E_NOMEM;
    l->n = 0;
    const char *p = spec;
    while (*p != '\0') {
        if (is_sep(*p)) {
            p++;
            continue;
        }
        const char *start = p;
        while (*p != '\0' && !is_sep(*p))
            p++;
        if (parse_entry(start, (size_t)(p - start), &l->items[l->n]) != CX_OK) {
            free(l);
            return CX_E_INVAL;
        }
        l->n++;
    }
    *out = l;
    return CX_OK;
}

void cx_cidr_list_free(cx_cidr_list *l)
{
    free(l);
}

bool cx_cidr_list_contains(const cx_cidr_list *l, const char *addr)
{
    unsigned char a[16];
    bool v4;
    if (l == NULL || addr == NULL || !parse_addr(addr, a, &v4))
        return false;
    for (size_t i = 0; i < l->n; i++)
        if (in_range(&l->items[i], a))
            return true;
    return false;
}

bool cx_addr_is_loopback(const char *addr)
{
    static const cidr loopback[] = {
        {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 0}, 104},
        {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128},
    };
    unsigned char a[16];
    bool v4;
    if (addr == NULL || !parse_addr(addr, a, &v4))
        return false;
    return in_range(&loopback[0], a) || in_range(&loopback[1], a);
}

/* Canonical text for a bare address (v4-mapped shown as v4), so one client cannot
 * pass for several by spelling its address differently. False if s is no address. */
static bool canonical_addr(const char *s, size_t len, char out[64])
{
    char buf[CIDR_ENTRY_MAX + 1];
    unsigned char a[16];
    bool v4;
    if (len == 0 || len > CIDR_ENTRY_MAX)
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (!parse_addr(buf, a, &v4))
        return false;
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    const char *r;
    if (memcmp(a, mapped, sizeof mapped) == 0)
        r = inet_ntop(AF_INET, a + 12, out, 64);
    else
        r = inet_ntop(AF_INET6, a, out, 64);
    return r != NULL;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* The header value trimmed of blanks, as an address. */
static bool header_addr(const char *s, size_t len, char out[64])
{
    while (len > 0 && is_space(*s)) {
        s++;
        len--;
    }
    while (len > 0 && is_space(s[len - 1]))
        len--;
    return canonical_addr(s, len, out);
}

void cx_client_addr(const cx_cidr_list *trusted, const char *peer, const char *cf_connecting_ip,
                    const char *x_forwarded_for, char out[64])
{
    if (peer != NULL && cx_cidr_list_contains(trusted, peer)) {
        if (cf_connecting_ip != NULL &&
            header_addr(cf_connecting_ip, strlen(cf_connecting_ip), out))
            return;
        if (x_forwarded_for != NULL) {
            /* Only the last hop was written by our proxy; earlier ones are the
             * client's own claims. Skip empty trailing entries ("a, b, "). */
            const char *end = x_forwarded_for + strlen(x_forwarded_for);
            for (;;) {
                const char *start = end;
                while (start > x_forwarded_for && start[-1] != ',')
                    start--;
                const char *a = start, *b = end;
                while (a < b && is_space(*a))
                    a++;
                while (b > a && is_space(b[-1]))
                    b--;
                if (a < b) {
                    if (header_addr(a, (size_t)(b - a), out))
                        return;
                    break;
                }
                if (start == x_forwarded_for)
                    break;
                end = start - 1;
            }
        }
    }
    if (peer == NULL) {
        out[0] = '\0';
        return;
    }
    if (!canonical_addr(peer, strlen(peer), out))
        snprintf(out, ADDR_TEXT_MAX + 1, "%s", peer);
}
