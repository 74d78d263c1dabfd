/*
 * main.c — the process: signal handling, then the command line. Nothing else lives here so
 * that every other piece is testable as a library.
 */
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static volatile sig_atomic_t interrupted;

/* First signal: stop starting work and finish cleanly. Second: leave now — every state
 * commit is a transaction, so what is on disk is consistent at any instant. */
static void on_signal(int sig)
{
    (void)sig;
    if (interrupted)
        _exit(130);
    interrupted = 1;
    static const char msg[] = "\ninterrupt: finishing the calls in flight and saving state "
                              "(press again to stop at once)\n";
    ssize_t w = write(STDERR_FILENO, msg, sizeof(msg) - 1);
    (void)w;
}

int main(int argc, char **argv)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    return mle_cli_main(argc, argv, &interrupted);
}
