/* condrix-core: the per-machine server. Resolves flags over environment variables, then
 * either runs the server or one of the `auth` admin verbs on the same database. */
#include "cli_auth.h"
#include "core.h"

#include "condrix/config.h"
#include "condrix/error.h"
#include "condrix/log.h"
#include "condrix/signals.h"
#include "condrix/version.h"

#include <errno.h>
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
            "Usage: condrix-core [options]            run the Core server\n"
            "       condrix-core auth VERB [...]      manage access tokens (condrix-core auth --help)\n"
            "\n"
            "Options (each overrides the environment variable shown):\n"
            "  --host HOST       address to listen on        CONDRIX_CORE_HOST (127.0.0.1)\n"
            "  --port PORT       port to listen on           CONDRIX_CORE_PORT (9100)\n"
            "  --dev             dev mode: local connections need no token   CONDRIX_DEV=1\n"
            "  --data-dir DIR    data directory              CONDRIX_HOME (~/.condrix)\n"
            "  --tls-cert FILE   PEM certificate chain: serve wss://   CONDRIX_CORE_TLS_CERT\n"
            "  --tls-key FILE    PEM private key              CONDRIX_CORE_TLS_KEY\n"
            "  --name NAME       display name                 CONDRIX_CORE_NAME (host name)\n"
            "  -h, --help        show this help\n"
            "  -V, --version     show the version\n"
            "\n"
            "Other environment variables:\n"
            "  CONDRIX_CORE_TOKEN       pre-seed a token (64 hex) named env-token with every scope\n"
            "  CONDRIX_MAESTRO_URL      the Maestro to join: ws://host:9200/ or wss://host/\n"
            "  CONDRIX_MAESTRO_TOKEN    a one-time pairing code (or a token) to join Maestro with;\n"
            "                           the permanent token Maestro issues is then kept in core.db\n"
            "  CONDRIX_MAESTRO_CA       extra CA certificate (PEM) to verify Maestro's wss:// with\n"
            "  CONDRIX_MAESTRO_CREDENTIAL_RETRY_MS   wait after Maestro refuses our credential\n"
            "                           (300000)\n"
            "  CONDRIX_TRUSTED_PROXIES  proxies whose CF-Connecting-IP / X-Forwarded-For count\n"
            "                           (default: loopback)\n"
            "  CONDRIX_RATE_CONN_MAX, CONDRIX_RATE_AUTH_MAX, CONDRIX_RATE_MSG_MAX,\n"
            "  CONDRIX_RATE_BLOCK_SECONDS (and *_WINDOW_SECONDS)   rate limits; 0 = unlimited\n"
            "  CONDRIX_LIMIT_HEAD_BYTES, _MESSAGE_BYTES, _OUTQ_BYTES, _UPGRADE_MS, _AUTH_MS,\n"
            "  _SIGNIN_MS, _PING_MS, _PONG_MS   connection limits\n"
            "  CONDRIX_LOG_LEVEL        debug, info, warn or error (info)\n"
            "\n"
            "On its first start in production mode the Core creates the token default-admin\n"
            "and prints it once on stdout. Data lives in $CONDRIX_HOME/core.db (mode 0600).\n");
}

static cx_core core;

static void stop_server(void *arg)
{
    cx_core_stop(arg);
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

static char *home_dir(const char *flag)
{
    if (flag)
        return strdup(flag);
    return cx_default_home();
}

int main(int argc, char **argv)
{
    cx_log_init("core");
    cx_core_options opt = {0};
    opt.host = cx_env_str("CONDRIX_CORE_HOST", "127.0.0.1");
    const char *data_dir = NULL;
    const char *port_s = cx_env_str("CONDRIX_CORE_PORT", "9100");
    bool dev = false;
    if (cx_parse_bool(cx_env_str("CONDRIX_DEV", "0"), &dev) != CX_OK) {
        fprintf(stderr, "condrix-core: CONDRIX_DEV must be 1 or 0\n");
        return EXIT_USAGE;
    }
    opt.tls_cert = getenv("CONDRIX_CORE_TLS_CERT");
    opt.tls_key = getenv("CONDRIX_CORE_TLS_KEY");
    opt.display_name = getenv("CONDRIX_CORE_NAME");
    if (opt.tls_cert && !*opt.tls_cert)
        opt.tls_cert = NULL;
    if (opt.tls_key && !*opt.tls_key)
        opt.tls_key = NULL;

    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
        /* Flags that take a value: --flag VALUE or --flag=VALUE. */
        static const char *const with_value[] = {"--host", "--port", "--data-dir",
                                                 "--tls-cert", "--tls-key", "--name"};
        bool takes = false;
        for (size_t k = 0; k < sizeof with_value / sizeof with_value[0]; k++) {
            size_t n = strlen(with_value[k]);
            if (strncmp(a, with_value[k], n) == 0 && (a[n] == '\0' || a[n] == '=')) {
                takes = true;
                if (a[n] == '=') {
                    val = a + n + 1;
                } else if (i + 1 < argc) {
                    val = argv[++i];
                } else {
                    fprintf(stderr, "condrix-core: %s needs a value (see --help)\n", a);
                    return EXIT_USAGE;
                }
                break;
            }
        }
        if (takes) {
            if (strncmp(a, "--host", 6) == 0)
                opt.host = val;
            else if (strncmp(a, "--port", 6) == 0)
                port_s = val;
            else if (strncmp(a, "--data-dir", 10) == 0)
                data_dir = val;
            else if (strncmp(a, "--tls-cert", 10) == 0)
                opt.tls_cert = val;
            else if (strncmp(a, "--tls-key", 9) == 0)
                opt.tls_key = val;
            else
                opt.display_name = val;
        } else if (strcmp(a, "--dev") == 0) {
            dev = true;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
            printf("condrix-core %s (protocol v%d)\n", CX_VERSION, CX_PROTOCOL_VERSION);
            return 0;
        } else if (strcmp(a, "auth") == 0) {
            break;
        } else {
            fprintf(stderr, "condrix-core: unknown option '%s' (see --help)\n", a);
            return EXIT_USAGE;
        }
    }

    char *home = home_dir(data_dir);
    if (!home) {
        fprintf(stderr, "condrix-core: set CONDRIX_HOME or HOME to say where data lives\n");
        return EXIT_USAGE;
    }

    if (i < argc) {
        /* condrix-core auth ...: the admin verbs work on the same database. */
        if (cx_mkdir_private(home) != CX_OK) {
            fprintf(stderr, "condrix-core: cannot create %s: %s\n", home, strerror(errno));
            free(home);
            return 1;
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/core.db", home);
        int rc = cx_core_auth_cli(argc - i, argv + i, path);
        free(home);
        return rc;
    }

    long port;
    if (cx_parse_int(port_s, 0, 65535, &port) != CX_OK) {
        fprintf(stderr, "condrix-core: port must be a number from 0 to 65535, not '%s'\n", port_s);
        free(home);
        return EXIT_USAGE;
    }
    opt.port = (int)port;
    opt.dev = dev;
    opt.home = home;

    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    uv_loop_t *loop = uv_default_loop();
    int rc = cx_core_start(&core, loop, &opt);
    if (rc != CX_OK) {
        cx_core_free(&core);
        free(home);
        return 1;
    }
    cx_signals sig;
    cx_signals_start(&sig, loop, stop_server, &core);

    uv_run(loop, UV_RUN_DEFAULT);
    cx_signals_close(&sig, loop);

    cx_core_free(&core);
    uv_loop_close(loop);
    free(home);
    cx_log_info("stopped");
    return 0;
}
