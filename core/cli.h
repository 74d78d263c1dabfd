/*
 * cli.h — the command line: parsing, the commands, their help, and exit codes.
 *
 * Exit codes: 0 success (plan: no changes), 1 error, 2 plan has changes (only with
 * --detailed-exitcode), 130 interrupted by a signal.
 */
#ifndef MLE_CORE_CLI_H
#define MLE_CORE_CLI_H

#include <signal.h>

/* Run a command line. `interrupted` is set by the signal handler. Returns the exit code. */
int mle_cli_main(int argc, char **argv, volatile sig_atomic_t *interrupted);

#endif
