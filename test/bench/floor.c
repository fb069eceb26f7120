/* condrix-bench-floor: the kernel floor for `make bench`, a bare single-threaded epoll server
 * with canned replies; a floor reference for make bench, not a server anyone should deploy.
 *
 * It makes only the system calls any WebSocket server must make for the bench's traffic
 * (accept, read, one write per read, close) and does next to nothing in user space, so its
 * CPU per operation is the lowest any server can reach on this machine. It answers GET
 * /healthz (the bench's readiness probe), the upgrade, core/auth and core/health (any other
 * text message), pings and the close handshake; it checks no token and parses no JSON.
 *
 * usage: condrix-bench-floor --port P [--host 127.0.0.1]; prints nothing but errors. */
#include <arpa/inet.h>
#include <errno.h>
#include <mbedtls/sha1.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define IN_MAX 65536     /* input buffer cap: a head or frame that does not fit closes */
#define IN_FIRST 4096    /* input buffer to start with */
#define ID_MAX 128       /* longest request id echoed as correlationId */
#define KEY_MAX 64       /* longest Sec-WebSocket-Key taken */
#define BACKLOG 4096
#define EVENTS 256       /* epoll events per wait */

static const char WS_GUID[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
static const char HEALTHZ[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                              "Content-Length: 2\r\nConnection: close\r\n\r\nok";
static const char AUTH_HEAD[] =
    "{\"id\":\"f\",\"type\":\"response\",\"namespace\":\"core\",\"action\":\"auth\","
    "\"payload\":{\"authenticated\":true,\"scopes\":[\"admin:core\"],\"sessionId\":\"s\","
    "\"tokenName\":\"t\"},\"timestamp\":\"2026-01-01T00:00:00.000Z\",\"correlationId\":\"";
static const char HEALTH_HEAD[] =
    "{\"id\":\"f\",\"type\":\"response\",\"namespace\":\"core\",\"action\":\"health\","
    "\"payload\":{\"status\":\"ok\",\"uptimeSeconds\":1,\"connections\":1},"
    "\"timestamp\":\"2026-01-01T00:00:00.000Z\",\"correlationId\":\"";
static const char REPLY_TAIL[] = "\",\"success\":true}";

enum state { ST_HTTP, ST_WS };

/* One client connection; all of them sit on one list so they can be freed at exit. */
typedef struct conn {
    int fd;              /* the socket */
    enum state st;       /* upgrade head awaited, or frames */
    uint8_t *in;         /* bytes read and not yet consumed */
    size_t in_len;       /* bytes held in in */
    size_t in_cap;       /* room in in, at most IN_MAX */
    uint8_t *out;        /* replies of one read, or what a short write left */
    size_t out_len;      /* bytes held in out */
    size_t out_off;      /* bytes of out already written */
    size_t out_cap;      /* room in out */
    int waiting;         /* a write is pending: polled for EPOLLOUT instead of EPOLLIN */
    struct conn *next;   /* the list of live connections */
    struct conn *prev;   /* and back */
} conn;

static conn *conns;
static int epfd = -1;

static void on_signal(int sig)
{
    (void)sig; /* delivered only inside epoll_pwait, which then returns EINTR */
}

static void conn_close(conn *c)
{
    close(c->fd); /* also takes it off the epoll set */
    if (c->prev)
        c->prev->next = c->next;
    else
        conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c->in);
    free(c->out);
    free(c);
}

static int out_add(conn *c, const void *data, size_t len)
{
    if (c->out_cap - c->out_len < len) {
        size_t cap = c->out_cap ? c->out_cap : 1024;
        while (cap - c->out_len < len)
            cap *= 2;
        uint8_t *p = realloc(c->out, cap);
        if (p == NULL)
            return -1;
        c->out = p;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
    return 0;
}

/* A server frame: FIN and the opcode in b0, unmasked. */
static int out_frame(conn *c, uint8_t b0, const void *payload, size_t len)
{
    uint8_t h[4] = {b0, (uint8_t)len, 0, 0};
    size_t hl = 2;
    if (len > 125) {
        h[1] = 126; /* our replies stay under 64 KiB */
        h[2] = (uint8_t)(len >> 8);
        h[3] = (uint8_t)len;
        hl = 4;
    }
    return out_add(c, h, hl) || out_add(c, payload, len);
}

/* Canned reply to a text message, carrying its id as correlationId. */
static int on_text(conn *c, const uint8_t *msg, size_t len)
{
    const uint8_t *id = memmem(msg, len, "\"id\":\"", 6);
    if (id == NULL)
        return -1;
    id += 6;
    const uint8_t *end = memchr(id, '"', len - (size_t)(id - msg));
    if (end == NULL || end - id > ID_MAX)
        return -1;
    const char *head = memmem(msg, len, "\"action\":\"auth\"", 15) ? AUTH_HEAD : HEALTH_HEAD;
    char reply[sizeof AUTH_HEAD + sizeof HEALTH_HEAD + ID_MAX + sizeof REPLY_TAIL];
    size_t hl = strlen(head), il = (size_t)(end - id), n = hl + il + sizeof REPLY_TAIL - 1;
    memcpy(reply, head, hl);
    memcpy(reply + hl, id, il);
    memcpy(reply + hl + il, REPLY_TAIL, sizeof REPLY_TAIL - 1);
    return out_frame(c, 0x81, reply, n);
}

/* Every complete frame in the input; 1: a close frame was answered, -1: drop the peer. */
static int on_frames(conn *c)
{
    size_t off = 0;
    int rc = 0;
    while (rc == 0 && c->in_len - off >= 2) {
        uint8_t *p = c->in + off;
        size_t avail = c->in_len - off, hl = 2;
        uint64_t len = p[1] & 0x7f;
        if (!(p[1] & 0x80) || (p[0] & 0x70)) /* client frames are masked; no extensions */
            return -1;
        if (len == 126) {
            hl = 4;
            if (avail < hl)
                break;
            len = (uint64_t)p[2] << 8 | p[3];
        } else if (len == 127) {
            hl = 10;
            if (avail < hl)
                break;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = len << 8 | p[2 + i];
        }
        hl += 4;
        if (len > IN_MAX - hl) /* could never fit the buffer */
            return -1;
        if (avail < hl + len)
            break;
        uint8_t *mask = p + hl - 4, *data = p + hl;
        for (size_t i = 0; i < len; i++)
            data[i] ^= mask[i & 3];
        off += hl + (size_t)len;
        switch (p[0]) {
        case 0x81: /* text, FIN */
            rc = on_text(c, data, (size_t)len);
            break;
        case 0x89: /* ping */
            rc = len <= 125 ? out_frame(c, 0x8A, data, (size_t)len) : -1;
            break;
        case 0x8A: /* pong: we send no pings, but RFC 6455 allows unsolicited ones */
            break;
        case 0x88: /* close: answer 1000 */
            rc = out_frame(c, 0x88, "\x03\xe8", 2) ? -1 : 1;
            break;
        default:
            return -1;
        }
    }
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
    return rc;
}

static void base64(const uint8_t *src, size_t len, char *dst)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)src[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)src[i + 1] << 8;
        if (i + 2 < len)
            v |= src[i + 2];
        *dst++ = tab[v >> 18 & 63];
        *dst++ = tab[v >> 12 & 63];
        *dst++ = i + 1 < len ? tab[v >> 6 & 63] : '=';
        *dst++ = i + 2 < len ? tab[v & 63] : '=';
    }
    *dst = '\0';
}

/* The request head, once complete: 1: answered /healthz, -1: refused, 0: upgraded. */
static int on_head(conn *c, const uint8_t *end)
{
    const char *h = (const char *)c->in, *eoh = (const char *)end;
    if (strncmp(h, "GET /healthz ", 13) == 0)
        return out_add(c, HEALTHZ, sizeof HEALTHZ - 1) ? -1 : 1;
    if (strncmp(h, "GET ", 4) != 0)
        return -1;
    const char *key = NULL, *key_end = NULL;
    for (const char *l = memchr(h, '\n', (size_t)(eoh - h)); l != NULL && l + 1 < eoh;
         l = memchr(l + 1, '\n', (size_t)(eoh - l - 1))) {
        if (eoh - (l + 1) > 18 && strncasecmp(l + 1, "sec-websocket-key:", 18) == 0) {
            key = l + 19;
            while (*key == ' ' || *key == '\t')
                key++;
            key_end = memchr(key, '\r', (size_t)(eoh - key));
            while (key_end > key && (key_end[-1] == ' ' || key_end[-1] == '\t'))
                key_end--;
            break;
        }
    }
    if (key == NULL || key_end == NULL || key_end == key || key_end - key > KEY_MAX)
        return -1;
    unsigned char buf[KEY_MAX + sizeof WS_GUID], digest[20];
    size_t kl = (size_t)(key_end - key);
    memcpy(buf, key, kl);
    memcpy(buf + kl, WS_GUID, sizeof WS_GUID - 1);
    if (mbedtls_sha1_ret(buf, kl + sizeof WS_GUID - 1, digest) != 0)
        return -1;
    char resp[160], accept[29];
    base64(digest, sizeof digest, accept);
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", accept);
    if (n < 0 || (size_t)n >= sizeof resp || out_add(c, resp, (size_t)n))
        return -1;
    size_t used = (size_t)(end - c->in);
    memmove(c->in, end, c->in_len - used);
    c->in_len -= used;
    c->st = ST_WS;
    return 0;
}

/* Write what out holds; wait for EPOLLOUT while the socket takes less. -1: drop the peer. */
static int flush(conn *c)
{
    if (c->out_off < c->out_len) {
        ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            return -1;
        if (n > 0)
            c->out_off += (size_t)n;
    }
    int waiting = c->out_off < c->out_len;
    if (!waiting)
        c->out_off = c->out_len = 0;
    if (waiting == c->waiting)
        return 0;
    /* Reading stops while a write is pending: replies cannot pile up without bound. */
    c->waiting = waiting;
    struct epoll_event ev = {.events = waiting ? EPOLLOUT : EPOLLIN, .data.ptr = c};
    return epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void on_readable(conn *c)
{
    if (c->in_len == c->in_cap) {
        size_t cap = c->in_cap * 2 > IN_MAX ? IN_MAX : c->in_cap * 2;
        uint8_t *p = cap > c->in_cap ? realloc(c->in, cap) : NULL;
        if (p == NULL)
            goto drop;
        c->in = p;
        c->in_cap = cap;
    }
    ssize_t n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0)
        goto drop;
    c->in_len += (size_t)n;
    int rc = 0;
    if (c->st == ST_HTTP) {
        uint8_t *eoh = memmem(c->in, c->in_len, "\r\n\r\n", 4);
        if (eoh == NULL)
            rc = c->in_len == IN_MAX ? -1 : 0;
        else
            rc = on_head(c, eoh + 4);
    }
    if (rc == 0 && c->st == ST_WS)
        rc = on_frames(c);
    if (rc == 1) {
        /* Answered close (or /healthz): the FIN rides on the same segment as the reply. */
        send(c->fd, c->out, c->out_len, MSG_MORE | MSG_NOSIGNAL);
        goto drop;
    }
    if (rc < 0)
        goto drop;
    if (c->out_len > 0 && flush(c) < 0)
        goto drop;
    return;
drop:
    conn_close(c);
}

static void on_accept(int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return; /* EAGAIN; at EMFILE the next wait reports the listener again */
        }
        conn *c = calloc(1, sizeof *c);
        uint8_t *in = malloc(IN_FIRST);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (c == NULL || in == NULL || epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            free(c);
            free(in);
            close(fd);
            continue;
        }
        *c = (conn){.fd = fd, .st = ST_HTTP, .in = in, .in_cap = IN_FIRST, .next = conns};
        if (conns)
            conns->prev = c;
        conns = c;
    }
}

static int listen_on(const char *host, int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "condrix-bench-floor: bad --host %s\n", host);
        return -1;
    }
    int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    /* Accepted sockets inherit TCP_NODELAY from the listener on Linux. */
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, BACKLOG) < 0) {
        fprintf(stderr, "condrix-bench-floor: listen on %s:%d: %s\n", host, port,
                strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    int port = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--port") == 0)
            port = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--host") == 0)
            host = argv[i + 1];
        else
            port = -1;
    }
    if (argc % 2 == 0 || port <= 0 || port > 65535) {
        fprintf(stderr, "usage: condrix-bench-floor --port P [--host 127.0.0.1]\n");
        return 2;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            fprintf(stderr, "condrix-bench-floor: setrlimit: %s\n", strerror(errno));
    }
    /* SIGTERM and SIGINT stay blocked except inside epoll_pwait: no lost wake-up. */
    sigset_t block, during;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigprocmask(SIG_BLOCK, &block, &during);
    sigdelset(&during, SIGTERM);
    sigdelset(&during, SIGINT);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int rc = 1, lfd = listen_on(host, port);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    if (lfd < 0 || epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev) < 0) {
        if (lfd >= 0)
            fprintf(stderr, "condrix-bench-floor: epoll: %s\n", strerror(errno));
        goto out;
    }
    struct epoll_event evs[EVENTS];
    for (;;) {
        int n = epoll_pwait(epfd, evs, EVENTS, -1, &during);
        if (n < 0) {
            if (errno == EINTR) {
                rc = 0; /* only our two signals get through */
                break;
            }
            fprintf(stderr, "condrix-bench-floor: epoll_wait: %s\n", strerror(errno));
            break;
        }
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (c == NULL)
                on_accept(lfd);
            else if (evs[i].events & EPOLLOUT) {
                if (flush(c) < 0)
                    conn_close(c);
            } else
                on_readable(c);
        }
    }
out:
    while (conns)
        conn_close(conns);
    if (epfd >= 0)
        close(epfd);
    if (lfd >= 0)
        close(lfd);
    return rc;
}
