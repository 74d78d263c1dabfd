/*
 * progress.c — owns the apply's running display: live terminal lines, plain event lines, or
 * JSON events. Called from the scheduler's coordinating thread only.
 */
#include "progress.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

typedef struct running {
    char *address, *action;
    int64_t started_ms;
    int waiting;
} running;

struct mle_progress {
    mle_progress_mode mode;
    FILE *f;
    size_t total, done, failed, skipped;
    running *run;
    size_t nrun, caprun;
    size_t drawn; /* lines drawn last time (terminal mode) */
    int64_t last_draw;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

mle_progress *mle_progress_new(mle_progress_mode mode, FILE *f, size_t total)
{
    mle_progress *p = calloc(1, sizeof(*p));
    if (!p)
        abort();
    p->mode = mode;
    p->f = f;
    p->total = total;
    return p;
}

static void erase_drawn(mle_progress *p)
{
    for (size_t i = 0; i < p->drawn; i++)
        fputs("\033[1A\033[2K", p->f);
    p->drawn = 0;
}

static void draw(mle_progress *p)
{
    erase_drawn(p);
    int64_t now = now_ms();
    size_t shown = 0;
    for (size_t i = 0; i < p->nrun && shown < 20; i++, shown++)
        fprintf(p->f, "  %s %s ... %" PRId64 "s%s\n", p->run[i].action, p->run[i].address,
                (now - p->run[i].started_ms) / 1000, p->run[i].waiting ? " (waiting)" : "");
    if (p->nrun > shown)
        fprintf(p->f, "  ... and %zu more\n", p->nrun - shown), shown++;
    size_t left = p->total - p->done - p->failed - p->skipped - p->nrun;
    fprintf(p->f, "[%zu done, %zu in progress, %zu left, %zu failed]\n", p->done, p->nrun,
            left, p->failed + p->skipped);
    p->drawn = shown + 1;
    p->last_draw = now;
    fflush(p->f);
}

void mle_progress_free(mle_progress *p)
{
    if (!p)
        return;
    if (p->mode == MLE_PROGRESS_TTY) {
        erase_drawn(p);
        fflush(p->f);
    }
    for (size_t i = 0; i < p->nrun; i++) {
        free(p->run[i].address);
        free(p->run[i].action);
    }
    free(p->run);
    free(p);
}

static running *find_running(mle_progress *p, const char *address)
{
    for (size_t i = 0; i < p->nrun; i++)
        if (strcmp(p->run[i].address, address) == 0)
            return &p->run[i];
    return NULL;
}

static void track(mle_progress *p, const char *address, const char *action, const char *event,
                  int64_t elapsed)
{
    running *r = find_running(p, address);
    int ends = !strcmp(event, "done") || !strcmp(event, "failed") || !strcmp(event, "skipped");
    if (!r && !ends) {
        if (p->nrun == p->caprun) {
            p->caprun = p->caprun ? p->caprun * 2 : 16;
            p->run = realloc(p->run, p->caprun * sizeof(running));
        }
        r = &p->run[p->nrun++];
        r->address = strdup(address);
        r->action = strdup(action);
        r->started_ms = now_ms() - elapsed;
        r->waiting = 0;
    }
    if (r && !ends)
        r->waiting = !strcmp(event, "waiting") || !strcmp(event, "retry");
    if (r && ends) {
        free(r->address);
        free(r->action);
        *r = p->run[--p->nrun];
    }
    if (!strcmp(event, "done"))
        p->done++;
    else if (!strcmp(event, "failed"))
        p->failed++;
    else if (!strcmp(event, "skipped"))
        p->skipped++;
}

static void json_event(mle_progress *p, const char *address, const char *action,
                       const char *event, const char *detail, int64_t elapsed)
{
    json_t *j = json_pack("{s:I,s:s,s:s,s:s,s:I,s:I,s:I}", "ts",
                          (json_int_t)time(NULL), "address", address, "action", action, "event",
                          event, "elapsed_ms", (json_int_t)elapsed, "done", (json_int_t)p->done,
                          "total", (json_int_t)p->total);
    if (detail)
        json_object_set_new(j, "detail", json_string(detail));
    char *s = json_dumps(j, JSON_COMPACT);
    fprintf(p->f, "%s\n", s);
    fflush(p->f);
    free(s);
    json_decref(j);
}

void mle_progress_event(mle_progress *p, const char *address, const char *action,
                        const char *event, const char *detail, int64_t elapsed_ms)
{
    if (!p)
        return;
    track(p, address, action, event, elapsed_ms);
    switch (p->mode) {
    case MLE_PROGRESS_JSON:
        json_event(p, address, action, event, detail, elapsed_ms);
        break;
    case MLE_PROGRESS_TTY:
        if (!strcmp(event, "failed") || !strcmp(event, "done")) {
            erase_drawn(p);
            fprintf(p->f, "%s %s: %s (%.1fs)%s%s\n", !strcmp(event, "done") ? "ok" : "FAILED",
                    address, action, elapsed_ms / 1000.0, detail ? ": " : "",
                    detail ? detail : "");
        }
        draw(p);
        break;
    case MLE_PROGRESS_LINES: {
        /* Formatted first and written once: stderr is unbuffered, and the scheduler's
         * coordinating thread writes two of these lines per resource. */
        char after[48] = "", *line = NULL;
        if (strcmp(event, "start") != 0)
            snprintf(after, sizeof(after), " after %.1fs", elapsed_ms / 1000.0);
        if (asprintf(&line, "%s: %s %s%s%s%s [%zu/%zu]\n", address, action, event, after,
                     detail ? ": " : "", detail ? detail : "",
                     p->done + p->failed + p->skipped, p->total) >= 0) {
            fputs(line, p->f);
            free(line);
        }
        fflush(p->f);
        break;
    }
    }
}

void mle_progress_tick(mle_progress *p)
{
    if (p && p->mode == MLE_PROGRESS_TTY && now_ms() - p->last_draw >= 1000)
        draw(p);
}
