/*
 * state.h — the embedded state store (SQLite, WAL): resources, outputs, lineage + serial, the
 * lock, and crash-recovery intents.
 *
 * Every mutating call is one transaction (or joins a batch: see mle_state_batch_begin) and
 * bumps the serial: state is committed after each operation, never rewritten whole. A file
 * that is not an mlengine state (foreign SQLite, corrupt bytes, a newer format) is refused
 * with a clear error and never written to.
 * Not thread-safe: the apply scheduler commits from its coordinating thread only.
 */
#ifndef MLE_CORE_STATE_H
#define MLE_CORE_STATE_H

#include <stdint.h>
#include <jansson.h>
#include "error.h"

#define MLE_STATE_FORMAT 1

typedef struct mle_state mle_state;

typedef enum mle_res_status {
    MLE_RS_OK = 0,             /* exists; attrs are its last known attributes */
    MLE_RS_PENDING_CREATE = 1, /* intent committed, create call may or may not have run */
    MLE_RS_IN_PROGRESS = 2,    /* an operation answered in-progress; poll_token resumes it */
} mle_res_status;

typedef struct mle_state_resource {
    char *address;  /* "aws_vpc.main" (primary key) */
    char *type;     /* "aws_vpc" */
    char *driver;   /* "aws" */
    char *id;       /* provider ID, NULL while pending */
    json_t *attrs;  /* object: last known attributes (NULL: none yet) */
    json_t *config; /* object: the inputs of the last create/update (for intents) or NULL */
    json_t *deps;   /* array of addresses this resource depended on when applied, or NULL */
    mle_res_status status;
    char *token;      /* idempotency token of the create intent, or NULL */
    char *poll_token; /* IN_PROGRESS: the driver's token */
    int poll_kind;    /* IN_PROGRESS: mle_op_kind being continued */
    int64_t poll_at_ms; /* IN_PROGRESS: unix ms when to poll next */
    int64_t updated_ms;
} mle_state_resource;

typedef struct mle_state_lock_info {
    char *id; /* random, printed for `state unlock ID` */
    char *user, *host, *command;
    long pid;
    int64_t started_ms;
} mle_state_lock_info;

/* Open (create = 1: create the file and schema when it does not exist). A new state gets a
 * random lineage (UUID v4) and serial 0. Caller frees with mle_state_close. */
int mle_state_open(const char *path, int create, mle_state **out, mle_error **err);
void mle_state_close(mle_state *st);

const char *mle_state_lineage(const mle_state *st); /* borrowed */
int64_t mle_state_serial(const mle_state *st);
const char *mle_state_path(const mle_state *st);    /* borrowed */

/* Every resource, sorted by address. *out is an array of n owned structs; free with
 * mle_state_resources_free. */
int mle_state_list(mle_state *st, mle_state_resource **out, size_t *n, mle_error **err);
void mle_state_resources_free(mle_state_resource *rs, size_t n);
/* Only the resources whose status is not MLE_RS_OK (pending intents, operations in
 * progress), sorted by address, like mle_state_list: what crash recovery needs, without
 * decoding every other row. */
int mle_state_list_unfinished(mle_state *st, mle_state_resource **out, size_t *n,
                              mle_error **err);
/* One resource; 1 found (*out filled, free with mle_state_resource_clear), 0 not found,
 * -1 error. */
int mle_state_get(mle_state *st, const char *address, mle_state_resource *out, mle_error **err);
void mle_state_resource_clear(mle_state_resource *r);

/* Insert or replace one resource (borrowed) in its own transaction; serial + 1. */
int mle_state_put(mle_state *st, const mle_state_resource *r, mle_error **err);
/* Batches: between mle_state_batch_begin and mle_state_batch_end, mle_state_put and
 * mle_state_delete join one write transaction, committed by batch_end (each still counts
 * one in the serial). Nothing they wrote is durable before batch_end returns 0; a step that
 * fails leaves the others in the batch. Only puts, deletes and reads may run inside. The
 * apply scheduler commits what it handled in one pass of its loop this way, and starts the
 * driver calls that depend on it only after batch_end. */
int mle_state_batch_begin(mle_state *st, mle_error **err);
int mle_state_batch_end(mle_state *st, mle_error **err);
/* Remove one resource; serial + 1. Not found is not an error (returns 0). */
int mle_state_delete(mle_state *st, const char *address, mle_error **err);
/* Rename; error when `from` is missing or `to` exists. */
int mle_state_move(mle_state *st, const char *from, const char *to, mle_error **err);

/* Outputs: object name -> {"value": v, "sensitive": bool}. Replaces all outputs; serial + 1. */
int mle_state_set_outputs(mle_state *st, json_t *outputs, mle_error **err);
/* New reference (caller decrefs). */
json_t *mle_state_outputs(mle_state *st, mle_error **err);

/* Whole state as JSON (schemas/state.schema.json). New reference. */
json_t *mle_state_export(mle_state *st, mle_error **err);

/* Take the lock for `command`. When another holder has it: -1 and an MLE_E_CONFLICT error
 * naming the holder (user@host pid N, since, command, lock ID). A lock whose holder was a
 * process on this host that no longer exists is stale: it is taken over (see
 * mle_state_lock_takeover), as an OS file lock would have died with its process.
 * On success *info (may be NULL) receives the lock taken (free with mle_state_lock_info_clear). */
int mle_state_lock(mle_state *st, const char *command, mle_state_lock_info *info,
                   mle_error **err);
/* When mle_state_lock took over a stale lock (its holder was a process on this host that no
 * longer exists), a message saying whose; else NULL. Borrowed. */
const char *mle_state_lock_takeover(const mle_state *st);
/* Release our own lock. */
int mle_state_unlock(mle_state *st, mle_error **err);
/* Release whatever lock has this ID (`state unlock ID`); error when the ID does not match. */
int mle_state_force_unlock(mle_state *st, const char *lock_id, mle_error **err);
/* 1 and *info when a lock is held, 0 when free. */
int mle_state_lock_holder(mle_state *st, mle_state_lock_info *info, mle_error **err);
void mle_state_lock_info_clear(mle_state_lock_info *info);

/* Key/value metadata for other modules (e.g. "key_check" for state encryption). NULL when
 * unset; caller frees. */
char *mle_state_meta_get(mle_state *st, const char *key);
int mle_state_meta_set(mle_state *st, const char *key, const char *value, mle_error **err);

#endif
