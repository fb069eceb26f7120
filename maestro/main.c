/* condrix-maestro: the server that browsers sign in to and Cores dial. Resolves flags
 * over environment variables, then either runs the server or one of the operator verbs
 * (user, pair, cores, audit) on the same database. */
#include "cli_admin.h"
#include "maestro.h"

#include "condrix/config.h"
#include "condrix/error.h"
#include "condrix/log.h"
#include "condrix/signals.h"
#include "condrix/version.h"

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define EXIT_USAGE 2

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: condrix-maestro [options]                 run the Maestro server\n"
            "       condrix-maestro user|pair|cores|audit ...  operator verbs on the same data\n"
            "                                                  (condrix-maestro user --help)\n"
            "\n"
            "Options (each overrides the environment variable shown):\n"
            "  --host HOST       address to listen on        CONDRIX_MAESTRO_HOST (127.0.0.1)\n"
            "  --port PORT       port to listen on           CONDRIX_MAESTRO_PORT (9200)\n"
            "  --data-dir DIR    data directory              CONDRIX_HOME (~/.condrix)\n"
            "  --tls-cert FILE   PEM certificate chain: serve wss://   CONDRIX_MAESTRO_TLS_CERT\n"
            "  --tls-key FILE    PEM private key              CONDRIX_MAESTRO_TLS_KEY\n"
            "  --web-dir DIR     serve the web client from DIR instead of the copy built\n"
            "                    in (for developing it)   CONDRIX_MAESTRO_WEB_DIR\n"
            "  -h, --help        show this help\n"
            "  -V, --version     show the version\n"
            "\n"
            "Other environment variables:\n"
            "  CONDRIX_MAESTRO_CORE_SECRET  legacy shared secret Cores may connect with\n"
            "                               (prefer pairing codes)\n"
            "  CONDRIX_MAESTRO_CLIENT_AUTH  \"disabled\": loopback clients without forwarding\n"
            "                               headers may list Cores and relay unsigned (enabled)\n"
            "  CONDRIX_MAESTRO_ALLOWED_ORIGINS  other origins whose pages may open the\n"
            "                           WebSocket, comma-separated (https://a.example,...);\n"
            "                           Maestro's own origin is always allowed\n"
            "  CONDRIX_MAESTRO_PUBLIC_URL  the URL `condrix-maestro pair` tells Cores to dial\n"
            "                           (default: this listener, ws:// or wss://)\n"
            "  CONDRIX_TRUSTED_PROXIES  proxies whose CF-Connecting-IP / X-Forwarded-For count\n"
            "                           (default: loopback)\n"
            "  CONDRIX_RATE_CONN_MAX, CONDRIX_RATE_AUTH_MAX, CONDRIX_RATE_MSG_MAX,\n"
            "  CONDRIX_RATE_BLOCK_SECONDS (and *_WINDOW_SECONDS)   rate limits; 0 = unlimited;\n"
            "                           failed logins count per address and per username\n"
            "  CONDRIX_LIMIT_HEAD_BYTES, _MESSAGE_BYTES, _OUTQ_BYTES, _UPGRADE_MS, _AUTH_MS,\n"
            "  _SIGNIN_MS, _PING_MS, _PONG_MS   connection limits\n"
            "  CONDRIX_LOG_LEVEL        debug, info, warn or error (info)\n"
            "\n"
            "On its first start Maestro creates the user default-admin with a generated\n"
            "password and prints it once on stdout. Data lives in $CONDRIX_HOME/maestro.db\n"
            "(mode 0600), the pairing-code key in maestro.key (0600).\n");
}

static mx_server maestro;

static void stop_server(void *arg)
{
    mx_server_stop(arg);
}

/* As many descriptors as the hard limit allows: each connection needs one. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static bool is_admin_verb(const char *w)
{
    return strcmp(w, "user") == 0 || strcmp(w, "pair") == 0 || strcmp(w, "cores") == 0 ||
           strcmp(w, "audit") == 0;
}

int main(int argc, char **argv)
{
    cx_log_init("maestro");
    mx_options opt = {0};
    opt.host = cx_env_str("CONDRIX_MAESTRO_HOST", "127.0.0.1");
    const char *port_s = cx_env_str("CONDRIX_MAESTRO_PORT", "9200");
    const char *data_dir = NULL;
    opt.tls_cert = getenv("CONDRIX_MAESTRO_TLS_CERT");
    opt.tls_key = getenv("CONDRIX_MAESTRO_TLS_KEY");
    if (opt.tls_cert && !*opt.tls_cert)
        opt.tls_cert = NULL;
    if (opt.tls_key && !*opt.tls_key)
        opt.tls_key = NULL;
    opt.web_dir = getenv("CONDRIX_MAESTRO_WEB_DIR");
    if (opt.web_dir && !*opt.web_dir)
        opt.web_dir = NULL;

    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
        /* Flags that take a value: --flag VALUE or --flag=VALUE. */
        static const char *const with_value[] = {"--host", "--port", "--data-dir", "--tls-cert",
                                                 "--tls-key", "--web-dir"};
        int which = -1;
        for (size_t k = 0; k < sizeof with_value / sizeof with_value[0]; k++) {
            size_t n = strlen(with_value[k]);
            if (strncmp(a, with_value[k], n) == 0 && (a[n] == '\0' || a[n] == '=')) {
                which = (int)k;
                if (a[n] == '=') {
                    val = a + n + 1;
                } else if (i + 1 < argc) {
                    val = argv[++i];
                } else {
                    fprintf(stderr, "condrix-maestro: %s needs a value (see --help)\n", a);
                    return EXIT_USAGE;
                }
                break;
            }
        }
        if (which == 0) {
            opt.host = val;
        } else if (which == 1) {
            port_s = val;
        } else if (which == 2) {
            data_dir = val;
        } else if (which == 3) {
            opt.tls_cert = val;
        } else if (which == 4) {
            opt.tls_key = val;
        } else if (which == 5) {
            opt.web_dir = val;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
            printf("condrix-maestro %s (protocol v%d)\n", CX_VERSION, CX_PROTOCOL_VERSION);
            return 0;
        } else if (is_admin_verb(a)) {
            break;
        } else {
            fprintf(stderr, "condrix-maestro: unknown option '%s' (see --help)\n", a);
            return EXIT_USAGE;
        }
    }

    if (i < argc) {
        /* condrix-maestro user ...: the operator verbs work on the same database. */
        return mx_admin_cli(argc - i, argv + i, data_dir);
    }

    char *home = data_dir ? strdup(data_dir) : cx_default_home();
    if (!home) {
        fprintf(stderr, "condrix-maestro: set CONDRIX_HOME or HOME to say where data lives\n");
        return EXIT_USAGE;
    }
    long port;
    if (cx_parse_int(port_s, 0, 65535, &port) != CX_OK) {
        fprintf(stderr, "condrix-maestro: port must be a number from 0 to 65535, not '%s'\n",
                port_s);
        free(home);
        return EXIT_USAGE;
    }
    opt.port = (int)port;
    opt.home = home;

    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    uv_loop_t *loop = uv_default_loop();
    if (mx_server_start(&maestro, loop, &opt) != CX_OK) {
        mx_server_free(&maestro);
        free(home);
        return 1;
    }
    cx_signals sig;
    cx_signals_start(&sig, loop, stop_server, &maestro);

    uv_run(loop, UV_RUN_DEFAULT);
    cx_signals_close(&sig, loop);

    mx_server_free(&maestro);
    uv_loop_close(loop);
    free(home);
    cx_log_info("stopped");
    return 0;
}
