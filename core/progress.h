/*
 * progress.h — what a person (or a pipeline) watches during apply: on a terminal a live line
 * per running resource with its elapsed time and an overall count; without one a log line
 * per event; with --json-events one JSON object per line.
 */
#ifndef MLE_CORE_PROGRESS_H
#define MLE_CORE_PROGRESS_H

#include <stdint.h>
#include <stdio.h>
#include "engine.h"

typedef struct mle_progress mle_progress;

/* f is borrowed. total: operations to run. Caller frees. */
mle_progress *mle_progress_new(mle_progress_mode mode, FILE *f, size_t total);
void mle_progress_free(mle_progress *p);
/* event: "start", "waiting", "retry", "done", "failed", "skipped". detail may be NULL. */
void mle_progress_event(mle_progress *p, const char *address, const char *action,
                        const char *event, const char *detail, int64_t elapsed_ms);
/* Redraw the live lines (terminal mode) so elapsed times move; cheap when nothing changed. */
void mle_progress_tick(mle_progress *p);

#endif
