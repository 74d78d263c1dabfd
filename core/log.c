/*
 * log.c — owns the engine's logger: level filtering, plain one-line records
 * ("2026-11-24T21:50:00Z INFO [aws] message"), an optional copy to a file, and the redaction
 * of registered secrets from every string that leaves the engine.
 *
 * One mutex guards the secret set and the writes, so lines from concurrent workers never
 * interleave and a secret registered on one thread is redacted on all of them at once.
 */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define REDACTED "(sensitive)"
#define MIN_SECRET_LEN 4

struct mle_logger {
    pthread_mutex_t mu;
    atomic_int level;
    FILE *out;  /* borrowed */
    FILE *file; /* borrowed, may be NULL */
    char **secrets; /* owned; sorted longest first so a secret containing another wins */
    size_t *lens;
    size_t n_secrets, cap_secrets;
};

mle_logger *mle_logger_new(FILE *out, mle_log_level level)
{
    mle_logger *lg = calloc(1, sizeof *lg);
    if (!lg)
        return NULL;
    pthread_mutex_init(&lg->mu, NULL);
    atomic_init(&lg->level, (int)level);
    lg->out = out;
    return lg;
}

void mle_logger_free(mle_logger *lg)
{
    if (!lg)
        return;
    for (size_t i = 0; i < lg->n_secrets; i++) {
        /* The secret copies are secrets too: do not leave them in freed memory. */
        memset(lg->secrets[i], 0, lg->lens[i]);
        free(lg->secrets[i]);
    }
    free(lg->secrets);
    free(lg->lens);
    pthread_mutex_destroy(&lg->mu);
    free(lg);
}

void mle_logger_set_level(mle_logger *lg, mle_log_level level)
{
    if (lg)
        atomic_store(&lg->level, (int)level);
}

mle_log_level mle_logger_level(const mle_logger *lg)
{
    if (!lg)
        return MLE_LOG_ERROR;
    return (mle_log_level)atomic_load(&((mle_logger *)lg)->level);
}

void mle_logger_set_file(mle_logger *lg, FILE *f)
{
    if (!lg)
        return;
    pthread_mutex_lock(&lg->mu);
    lg->file = f;
    pthread_mutex_unlock(&lg->mu);
}

static int secret_known(const mle_logger *lg, const char *s, size_t n)
{
    for (size_t i = 0; i < lg->n_secrets; i++)
        if (lg->lens[i] == n && memcmp(lg->secrets[i], s, n) == 0)
            return 1;
    return 0;
}

static int secrets_grow(mle_logger *lg)
{
    if (lg->n_secrets < lg->cap_secrets)
        return 0;
    size_t cap = lg->cap_secrets ? lg->cap_secrets * 2 : 16;
    char **s = realloc(lg->secrets, cap * sizeof *s);
    if (!s)
        return -1;
    lg->secrets = s;
    size_t *l = realloc(lg->lens, cap * sizeof *l);
    if (!l)
        return -1;
    lg->lens = l;
    lg->cap_secrets = cap;
    return 0;
}

void mle_logger_add_secret(mle_logger *lg, const char *s)
{
    if (!lg || !s)
        return;
    size_t n = strlen(s);
    if (n < MIN_SECRET_LEN)
        return;
    pthread_mutex_lock(&lg->mu);
    char *copy = NULL;
    if (secret_known(lg, s, n) || secrets_grow(lg) != 0 || !(copy = strdup(s))) {
        pthread_mutex_unlock(&lg->mu);
        return;
    }
    size_t at = lg->n_secrets;
    while (at > 0 && lg->lens[at - 1] < n) {
        lg->secrets[at] = lg->secrets[at - 1];
        lg->lens[at] = lg->lens[at - 1];
        at--;
    }
    lg->secrets[at] = copy;
    lg->lens[at] = n;
    lg->n_secrets++;
    pthread_mutex_unlock(&lg->mu);
}

/* Length of the registered secret that starts at p (the longest one), or 0. */
static size_t secret_at(const mle_logger *lg, const char *p, size_t left)
{
    for (size_t i = 0; i < lg->n_secrets; i++) {
        size_t n = lg->lens[i];
        if (n <= left && lg->secrets[i][0] == *p && memcmp(lg->secrets[i], p, n) == 0)
            return n;
    }
    return 0;
}

/* One left-to-right pass, so a replacement is never scanned again (a secret that happens to
 * occur inside "(sensitive)" cannot mangle it). Caller holds lg->mu. */
static char *redact_locked(const mle_logger *lg, const char *in)
{
    size_t len = strlen(in);
    if (lg->n_secrets == 0)
        return strdup(in);
    /* Each secret is at least 4 bytes and becomes 11: the output is at most 11/4 longer. */
    char *out = malloc(len / MIN_SECRET_LEN * strlen(REDACTED) + len + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t n = secret_at(lg, in + i, len - i);
        if (n) {
            memcpy(out + o, REDACTED, strlen(REDACTED));
            o += strlen(REDACTED);
            i += n;
        } else {
            out[o++] = in[i++];
        }
    }
    out[o] = '\0';
    return out;
}

char *mle_redact(mle_logger *lg, const char *in)
{
    if (!in)
        return NULL;
    if (!lg)
        return strdup(in);
    pthread_mutex_lock(&lg->mu);
    char *out = redact_locked(lg, in);
    pthread_mutex_unlock(&lg->mu);
    return out;
}

static const char *level_name(mle_log_level lvl)
{
    switch (lvl) {
    case MLE_LOG_ERROR: return "ERROR";
    case MLE_LOG_WARN: return "WARN";
    case MLE_LOG_INFO: return "INFO";
    case MLE_LOG_DEBUG: return "DEBUG";
    }
    return "INFO";
}

/* A record is one line: line breaks inside a message would let a value forge records. */
static void flatten_lines(char *s)
{
    for (; *s; s++)
        if (*s == '\n' || *s == '\r')
            *s = ' ';
}

void mle_logv(mle_logger *lg, mle_log_level lvl, const char *source, const char *fmt,
              va_list ap)
{
    if (!lg || (int)lvl > atomic_load(&lg->level))
        return;
    char *msg = NULL;
    if (vasprintf(&msg, fmt ? fmt : "", ap) < 0)
        return;
    char stamp[32];
    struct tm tm;
    time_t now = time(NULL);
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);

    pthread_mutex_lock(&lg->mu);
    char *clean = redact_locked(lg, msg);
    if (clean) {
        flatten_lines(clean);
        for (int i = 0; i < 2; i++) {
            FILE *f = i == 0 ? lg->out : lg->file;
            if (!f)
                continue;
            if (source && *source)
                fprintf(f, "%s %s [%s] %s\n", stamp, level_name(lvl), source, clean);
            else
                fprintf(f, "%s %s %s\n", stamp, level_name(lvl), clean);
            fflush(f);
        }
    }
    pthread_mutex_unlock(&lg->mu);
    free(clean);
    free(msg);
}

void mle_log(mle_logger *lg, mle_log_level lvl, const char *source, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mle_logv(lg, lvl, source, fmt, ap);
    va_end(ap);
}
