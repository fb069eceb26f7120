/* Questions to the person at the terminal: a line with echo off for passwords, tokens
 * and codes (termios; restored even on Ctrl-C), or a plain line from stdin when a
 * script pipes the answer in. Reads byte by byte so no copy of a secret is left in a
 * stdio buffer, and the caller wipes what it got. */
#include "cli.h"

#include <errno.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "condrix/error.h"

static struct termios saved_tio;          /* the terminal as it was before echo went off */
static volatile sig_atomic_t echo_is_off; /* restore saved_tio on a signal */

static void restore_and_reraise(int sig)
{
    if (echo_is_off)
        (void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tio);
    /* The newline the user's Enter would have printed. */
    (void)!write(STDERR_FILENO, "\n", 1);
    signal(sig, SIG_DFL);
    raise(sig);
}

bool cli_stdin_tty(void)
{
    return isatty(STDIN_FILENO) == 1;
}

/* One line from fd 0, a byte at a time. */
static int read_line(char *out, size_t out_size)
{
    size_t n = 0;
    bool any = false, toobig = false;
    for (;;) {
        char ch;
        ssize_t r = read(STDIN_FILENO, &ch, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return CX_E_IO;
        if (r == 0) {
            if (!any)
                return CX_E_NOTFOUND;
            break;
        }
        any = true;
        if (ch == '\n')
            break;
        if (n + 1 < out_size)
            out[n++] = ch;
        else
            toobig = true;
        ch = 0;
    }
    if (n > 0 && out[n - 1] == '\r')
        n--;
    out[n] = '\0';
    if (toobig) {
        sodium_memzero(out, out_size);
        return CX_E_TOOBIG;
    }
    return CX_OK;
}

int cli_prompt(const char *prompt, bool secret, char *out, size_t out_size)
{
    if (out_size == 0)
        return CX_E_INVAL;
    out[0] = '\0';
    if (!cli_stdin_tty())
        return read_line(out, out_size);

    fprintf(stderr, "%s", prompt);
    fflush(stderr);
    struct sigaction sa = {.sa_handler = restore_and_reraise}, old_int, old_term, old_hup;
    bool changed = false;
    if (secret && tcgetattr(STDIN_FILENO, &saved_tio) == 0) {
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, &old_int);
        sigaction(SIGTERM, &sa, &old_term);
        sigaction(SIGHUP, &sa, &old_hup);
        struct termios t = saved_tio;
        t.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL);
        t.c_lflag |= ICANON;
        echo_is_off = 1;
        if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &t) == 0)
            changed = true;
    }
    int rc = read_line(out, out_size);
    if (secret) {
        if (changed)
            (void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tio);
        if (echo_is_off) {
            echo_is_off = 0;
            sigaction(SIGINT, &old_int, NULL);
            sigaction(SIGTERM, &old_term, NULL);
            sigaction(SIGHUP, &old_hup, NULL);
        }
        /* Enter was not echoed. */
        fputc('\n', stderr);
    }
    return rc;
}

bool cli_confirm(const char *question)
{
    if (!cli_stdin_tty())
        return false;
    char ans[16];
    fprintf(stderr, "%s [y/N] ", question);
    fflush(stderr);
    if (read_line(ans, sizeof ans) != CX_OK)
        return false;
    return strcmp(ans, "y") == 0 || strcmp(ans, "Y") == 0 || strcasecmp(ans, "yes") == 0;
}
