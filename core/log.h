/*
 * log.h — the engine's logger: levels, plain or JSON lines, and secret redaction.
 *
 * Every string that reaches the log, an error shown to the user, or an HTTP trace passes
 * through mle_redact first: secrets registered with mle_logger_add_secret (sensitive
 * attribute values, variables, credentials) are replaced by "(sensitive)".
 * Thread-safe: workers log concurrently.
 */
#ifndef MLE_CORE_LOG_H
#define MLE_CORE_LOG_H

#include <stdio.h>
#include <mlengine/driver.h>

typedef struct mle_logger mle_logger;

/* New logger writing to `out` (borrowed, e.g. stderr) at `level`. Caller frees. */
mle_logger *mle_logger_new(FILE *out, mle_log_level level);
void mle_logger_free(mle_logger *lg);
void mle_logger_set_level(mle_logger *lg, mle_log_level level);
mle_log_level mle_logger_level(const mle_logger *lg);
/* Also append every line (redacted) to this file (borrowed; NULL stops). */
void mle_logger_set_file(mle_logger *lg, FILE *f);

/* Redact `s` from now on. Strings shorter than 4 bytes are ignored (they would mangle every
 * line). The logger keeps its own copy. */
void mle_logger_add_secret(mle_logger *lg, const char *s);

/* A copy of `in` with every registered secret replaced by "(sensitive)". Caller frees. */
char *mle_redact(mle_logger *lg, const char *in);

/* Write one line: "<time> <level> [<source>] message". source may be NULL. */
void mle_log(mle_logger *lg, mle_log_level lvl, const char *source, const char *fmt, ...)
    MLE_PRINTF(4, 5);
void mle_logv(mle_logger *lg, mle_log_level lvl, const char *source, const char *fmt,
              va_list ap);

#endif
