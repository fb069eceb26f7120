/* TLS sessions over mbedTLS, driven by bytes: ciphertext in, plaintext out through
 * callbacks, so the connection layer owns the sockets. Internal to the library. */
#ifndef CONDRIX_TLS_INTERNAL_H
#define CONDRIX_TLS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

typedef struct cx_tls_config cx_tls_config; /* certificates, keys, RNG: shared */
typedef struct cx_tls cx_tls;               /* one session */
typedef cx_tls_config cx_tls_server;

/* Ciphertext to put on the wire (must take everything; 0 or a negative code). */
typedef int (*cx_tls_out_fn)(void *ud, const uint8_t *p, size_t n);
/* Plaintext that arrived. */
typedef void (*cx_tls_in_fn)(void *ud, const uint8_t *p, size_t n);

/* Server config from PEM files. TLS 1.2+, ECDHE with AES-GCM or ChaCha20-Poly1305. */
int cx_tls_server_new(const char *cert_path, const char *key_path, cx_tls_config **out,
                      char **err);
/* Client config verifying peers against the system CA bundle plus extra_ca_path
 * (may be NULL). */
int cx_tls_client_config_new(const char *extra_ca_path, cx_tls_config **out, char **err);
void cx_tls_server_free(cx_tls_config *cfg);
#define cx_tls_config_free cx_tls_server_free

cx_tls *cx_tls_new_server(cx_tls_config *cfg, cx_tls_out_fn out, cx_tls_in_fn in, void *ud);
/* A client session that checks the certificate names hostname; starts the handshake. */
cx_tls *cx_tls_new_client(cx_tls_config *cfg, const char *hostname, cx_tls_out_fn out,
                          cx_tls_in_fn in, void *ud);
/* Ciphertext from the peer: advances the handshake, calls in() with plaintext.
 * CX_OK, CX_E_TLS (handshake or record failure; *detail may be read with
 * cx_tls_last_error), CX_E_CLOSED (peer sent close_notify). */
int cx_tls_feed(cx_tls *t, const uint8_t *p, size_t n);
/* Plaintext to send. Before the handshake is done it is held and sent after. */
int cx_tls_write(cx_tls *t, const uint8_t *p, size_t n);
int cx_tls_handshake_done(const cx_tls *t);
/* Say goodbye properly (a close_notify alert) before the transport closes, so the peer
 * can tell the end of the session from a cut. Best effort; only after the handshake. */
void cx_tls_close_notify(cx_tls *t);
/* The last mbedTLS error of this session as text (static buffer). */
const char *cx_tls_last_error(const cx_tls *t);
void cx_tls_free(cx_tls *t);

#endif
