/* TLS over mbedTLS 2.28 with an in-memory BIO: the connection layer feeds ciphertext in
 * and gets ciphertext out, so TLS never touches a socket and works on any event loop. */
#include "tls.h"

#include "condrix/buf.h"
#include "condrix/error.h"

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CX_TLS_SYSTEM_CA_FILE "/etc/ssl/certs/ca-certificates.crt"
#define CX_TLS_PENDING_MAX (1024 * 1024) /* plaintext held until the handshake ends */

struct cx_tls_config {
    mbedtls_ssl_config conf;     /* shared by every session */
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_x509_crt chain;      /* our certificate chain (server) or trusted CAs (client) */
    mbedtls_pk_context key;      /* our private key (server) */
};

struct cx_tls {
    mbedtls_ssl_context ssl;     /* the session */
    cx_tls_out_fn out;           /* ciphertext sink */
    cx_tls_in_fn in;             /* plaintext sink */
    void *ud;                    /* passed to both */
    const uint8_t *feed;         /* ciphertext being fed, consumed by bio_recv */
    size_t feed_len;
    cx_buf pending;              /* plaintext written before the handshake finished */
    int last_error;              /* last mbedTLS error code */
    uint8_t ip[16];              /* expected iPAddress SAN when connecting to an IP literal */
    size_t ip_len;               /* 4 or 16; 0 for a host name */
    int done;                    /* handshake complete */
    int notified;                /* close_notify sent */
};

/* Only modern suites: forward secrecy with AEAD ciphers. */
static const int suites[] = {
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    0,
};

static char *errf(const char *what, const char *path, int rc)
{
    char detail[160];
    mbedtls_strerror(rc, detail, sizeof detail);
    size_t n = strlen(what) + (path ? strlen(path) : 0) + strlen(detail) + 16;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s%s%s: %s", what, path ? " " : "", path ? path : "", detail);
    return s;
}

static cx_tls_config *config_alloc(int endpoint, char **err)
{
    cx_tls_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg)
        return NULL;
    mbedtls_ssl_config_init(&cfg->conf);
    mbedtls_entropy_init(&cfg->entropy);
    mbedtls_ctr_drbg_init(&cfg->drbg);
    mbedtls_x509_crt_init(&cfg->chain);
    mbedtls_pk_init(&cfg->key);
    static const unsigned char pers[] = "condrix-tls";
    int rc = mbedtls_ctr_drbg_seed(&cfg->drbg, mbedtls_entropy_func, &cfg->entropy, pers,
                                   sizeof pers - 1);
    if (rc == 0)
        rc = mbedtls_ssl_config_defaults(&cfg->conf, endpoint, MBEDTLS_SSL_TRANSPORT_STREAM,
                                         MBEDTLS_SSL_PRESET_DEFAULT);
    if (rc != 0) {
        if (err)
            *err = errf("TLS setup failed", NULL, rc);
        cx_tls_server_free(cfg);
        return NULL;
    }
    mbedtls_ssl_conf_rng(&cfg->conf, mbedtls_ctr_drbg_random, &cfg->drbg);
    mbedtls_ssl_conf_min_version(&cfg->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_ciphersuites(&cfg->conf, suites);
    return cfg;
}

int cx_tls_server_new(const char *cert_path, const char *key_path, cx_tls_config **out,
                      char **err)
{
    cx_tls_config *cfg = config_alloc(MBEDTLS_SSL_IS_SERVER, err);
    if (!cfg)
        return CX_E_TLS;
    int rc = mbedtls_x509_crt_parse_file(&cfg->chain, cert_path);
    if (rc != 0) {
        if (err)
            *err = errf("cannot load TLS certificate", cert_path, rc);
        goto fail;
    }
    rc = mbedtls_pk_parse_keyfile(&cfg->key, key_path, NULL);
    if (rc != 0) {
        if (err)
            *err = errf("cannot load TLS key", key_path, rc);
        goto fail;
    }
    /* conf_own_cert takes any key; a wrong one would fail every handshake later. */
    rc = mbedtls_pk_check_pair(&cfg->chain.pk, &cfg->key);
    if (rc == 0)
        rc = mbedtls_ssl_conf_own_cert(&cfg->conf, &cfg->chain, &cfg->key);
    if (rc != 0) {
        if (err)
            *err = errf("TLS certificate and key do not fit together", NULL, rc);
        goto fail;
    }
    *out = cfg;
    return CX_OK;
fail:
    cx_tls_server_free(cfg);
    return CX_E_TLS;
}

int cx_tls_client_config_new(const char *extra_ca_path, cx_tls_config **out, char **err)
{
    cx_tls_config *cfg = config_alloc(MBEDTLS_SSL_IS_CLIENT, err);
    if (!cfg)
        return CX_E_TLS;
    struct stat st;
    /* The system bundle may be missing on minimal machines; the extra CA still counts. */
    if (stat(CX_TLS_SYSTEM_CA_FILE, &st) == 0)
        (void)mbedtls_x509_crt_parse_file(&cfg->chain, CX_TLS_SYSTEM_CA_FILE);
    if (extra_ca_path && *extra_ca_path) {
        int rc = mbedtls_x509_crt_parse_file(&cfg->chain, extra_ca_path);
        if (rc != 0) {
            if (err)
                *err = errf("cannot load CA file", extra_ca_path, rc);
            cx_tls_server_free(cfg);
            return CX_E_TLS;
        }
    }
    mbedtls_ssl_conf_authmode(&cfg->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
    mbedtls_ssl_conf_ca_chain(&cfg->conf, &cfg->chain, NULL);
    *out = cfg;
    return CX_OK;
}

void cx_tls_server_free(cx_tls_config *cfg)
{
    if (!cfg)
        return;
    mbedtls_ssl_config_free(&cfg->conf);
    mbedtls_x509_crt_free(&cfg->chain);
    mbedtls_pk_free(&cfg->key);
    mbedtls_ctr_drbg_free(&cfg->drbg);
    mbedtls_entropy_free(&cfg->entropy);
    free(cfg);
}

static int bio_send(void *ctx, const unsigned char *p, size_t n)
{
    cx_tls *t = ctx;
    if (t->out(t->ud, p, n) != 0)
        return MBEDTLS_ERR_SSL_INTERNAL_ERROR;
    return (int)n;
}

static int bio_recv(void *ctx, unsigned char *p, size_t n)
{
    cx_tls *t = ctx;
    if (t->feed_len == 0)
        return MBEDTLS_ERR_SSL_WANT_READ;
    if (n > t->feed_len)
        n = t->feed_len;
    memcpy(p, t->feed, n);
    t->feed += n;
    t->feed_len -= n;
    return (int)n;
}

static cx_tls *session_new(cx_tls_config *cfg, cx_tls_out_fn out, cx_tls_in_fn in, void *ud)
{
    cx_tls *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    mbedtls_ssl_init(&t->ssl);
    if (mbedtls_ssl_setup(&t->ssl, &cfg->conf) != 0) {
        mbedtls_ssl_free(&t->ssl);
        free(t);
        return NULL;
    }
    t->out = out;
    t->in = in;
    t->ud = ud;
    cx_buf_init(&t->pending, CX_TLS_PENDING_MAX);
    mbedtls_ssl_set_bio(&t->ssl, t, bio_send, bio_recv, NULL);
    return t;
}

cx_tls *cx_tls_new_server(cx_tls_config *cfg, cx_tls_out_fn out, cx_tls_in_fn in, void *ud)
{
    return session_new(cfg, out, in, ud);
}

/* mbedTLS 2.28 matches only dNSName SANs: check iPAddress SANs of the leaf ourselves. */
static int verify_ip(void *ctx, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
    const cx_tls *t = ctx;
    if (depth != 0)
        return 0;
    for (const mbedtls_x509_sequence *san = &crt->subject_alt_names; san; san = san->next) {
        if ((san->buf.tag & MBEDTLS_ASN1_TAG_VALUE_MASK) == MBEDTLS_X509_SAN_IP_ADDRESS &&
            san->buf.len == t->ip_len && memcmp(san->buf.p, t->ip, t->ip_len) == 0)
            return 0;
    }
    *flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
    return 0;
}

cx_tls *cx_tls_new_client(cx_tls_config *cfg, const char *hostname, cx_tls_out_fn out,
                          cx_tls_in_fn in, void *ud)
{
    cx_tls *t = session_new(cfg, out, in, ud);
    if (!t)
        return NULL;
    if (inet_pton(AF_INET, hostname, t->ip) == 1)
        t->ip_len = 4;
    else if (inet_pton(AF_INET6, hostname, t->ip) == 1)
        t->ip_len = 16;
    if (t->ip_len)
        mbedtls_ssl_set_verify(&t->ssl, verify_ip, t); /* no SNI for an address (RFC 6066) */
    else if (mbedtls_ssl_set_hostname(&t->ssl, hostname) != 0) {
        cx_tls_free(t);
        return NULL;
    }
    int rc = mbedtls_ssl_handshake(&t->ssl);
    if (rc != 0 && rc != MBEDTLS_ERR_SSL_WANT_READ && rc != MBEDTLS_ERR_SSL_WANT_WRITE) {
        cx_tls_free(t);
        return NULL;
    }
    return t;
}

static int write_all(cx_tls *t, const uint8_t *p, size_t n)
{
    while (n > 0) {
        int rc = mbedtls_ssl_write(&t->ssl, p, n);
        if (rc < 0) {
            t->last_error = rc;
            return CX_E_TLS;
        }
        p += rc;
        n -= (size_t)rc;
    }
    return CX_OK;
}

int cx_tls_feed(cx_tls *t, const uint8_t *p, size_t n)
{
    /* Decrypted records land here; one buffer serves every session on the loop. */
    static uint8_t plain[16384];
    t->feed = p;
    t->feed_len = n;
    int result = CX_OK;
    if (!t->done) {
        int rc = mbedtls_ssl_handshake(&t->ssl);
        if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
            goto out;
        if (rc != 0) {
            t->last_error = rc;
            result = CX_E_TLS;
            goto out;
        }
        t->done = 1;
        if (t->pending.len) {
            cx_buf held = t->pending;
            cx_buf_init(&t->pending, CX_TLS_PENDING_MAX);
            result = write_all(t, held.data, held.len);
            cx_buf_free(&held);
            if (result != CX_OK)
                goto out;
        }
    }
    for (;;) {
        int rc = mbedtls_ssl_read(&t->ssl, plain, sizeof plain);
        if (rc > 0) {
            t->in(t->ud, plain, (size_t)rc);
            continue;
        }
        if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
            break;
        if (rc == 0 || rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) {
            result = CX_E_CLOSED;
            break;
        }
        t->last_error = rc;
        result = CX_E_TLS;
        break;
    }
out:
    t->feed = NULL;
    t->feed_len = 0;
    return result;
}

int cx_tls_write(cx_tls *t, const uint8_t *p, size_t n)
{
    if (!t->done)
        return cx_buf_append(&t->pending, p, n);
    return write_all(t, p, n);
}

void cx_tls_close_notify(cx_tls *t)
{
    if (t && t->done && !t->notified) {
        t->notified = 1;
        (void)mbedtls_ssl_close_notify(&t->ssl);
    }
}

int cx_tls_handshake_done(const cx_tls *t)
{
    return t->done;
}

const char *cx_tls_last_error(const cx_tls *t)
{
    static char buf[256];
    uint32_t flags;
    if (t->last_error == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED &&
        (flags = mbedtls_ssl_get_verify_result(&t->ssl)) != 0) {
        /* Say which check failed: an unknown CA and a name mismatch need different fixes. */
        char info[200];
        if (flags & MBEDTLS_X509_BADCERT_NOT_TRUSTED)
            snprintf(info, sizeof info, "not signed by a trusted CA");
        else if (flags & MBEDTLS_X509_BADCERT_CN_MISMATCH)
            snprintf(info, sizeof info, "made out to another name than the one dialled");
        else if (flags & MBEDTLS_X509_BADCERT_EXPIRED)
            snprintf(info, sizeof info, "expired");
        else if (mbedtls_x509_crt_verify_info(info, sizeof info, "", flags) > 0)
            info[strcspn(info, "\n")] = '\0';
        else
            snprintf(info, sizeof info, "flags 0x%x", (unsigned)flags);
        snprintf(buf, sizeof buf, "certificate verification failed: the certificate is %s", info);
        return buf;
    }
    mbedtls_strerror(t->last_error, buf, sizeof buf);
    return buf;
}

void cx_tls_free(cx_tls *t)
{
    if (!t)
        return;
    mbedtls_ssl_free(&t->ssl);
    cx_buf_free(&t->pending);
    free(t);
}
