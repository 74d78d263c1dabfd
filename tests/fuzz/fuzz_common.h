/*
 * fuzz_common.h — helpers shared by the libFuzzer targets: a private scratch folder (under
 * $TMPDIR, removed at exit), writing an input to a file there, and the checks every target
 * makes on the engine's error convention (a failure always comes with an error, a success
 * never does).
 *
 * Every target is a single translation unit that includes this header; nothing here is
 * exported, so the helpers are static.
 */
#ifndef MLE_FUZZ_COMMON_H
#define MLE_FUZZ_COMMON_H

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A key for sealed secrets, the same one tests/fuzz/make-corpus wrote the corpus with. */
#define FUZZ_STATE_KEY "4d4c452d66757a7a2d6b65792d6e6f742d612d7265616c2d7365637265742121"

/* Print to the sanitizers' report stream (libFuzzer's output, also when -close_fd_mask hides
 * the target's stderr) and to stderr. */
void __sanitizer_report_error_summary(const char *error_summary);

/* A broken promise found by a check: say which, then abort (libFuzzer saves the input). */
__attribute__((noreturn, format(printf, 1, 2))) static inline void fz_fail(const char *fmt, ...)
{
    char msg[4096] = "fuzz: ";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + 6, sizeof msg - 6, fmt, ap);
    va_end(ap);
    __sanitizer_report_error_summary(msg);
    abort();
}

static char fz_root[PATH_MAX];

static inline int fz_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* Remove dir and everything under it (symbolic links are removed, never followed). */
static inline void fz_rm_tree(const char *dir)
{
    nftw(dir, fz_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static inline void fz_cleanup(void)
{
    if (fz_root[0])
        fz_rm_tree(fz_root);
}

/* The process's scratch folder, made on first use. */
static inline const char *fz_dir(void)
{
    if (fz_root[0])
        return fz_root;
    const char *tmp = getenv("TMPDIR");
    snprintf(fz_root, sizeof fz_root, "%.3000s/mle-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(fz_root)) {
        fz_fail("cannot make a scratch folder %s: %s", fz_root,
                strerror(errno));
    }
    atexit(fz_cleanup);
    return fz_root;
}

/* fz_dir()/name, in a static buffer per call site's choice (caller copies if needed). */
static inline void fz_path(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", fz_dir(), name);
}

static inline void fz_write(const char *path, const uint8_t *data, size_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        fz_fail("cannot write %s: %s", path, strerror(errno));
    }
    size_t off = 0;
    while (off < size) {
        ssize_t k = write(fd, data + off, size - off);
        if (k <= 0) {
            fz_fail("cannot write %s: %s", path, strerror(errno));
        }
        off += (size_t)k;
    }
    close(fd);
}

/* The error convention of the core: -1/NULL comes with an error that has a message; 0/a
 * value comes with none. A break of it is a bug (the CLI would print "(no error)" or leak). */
static inline void fz_check_result(const char *what, int failed, mle_error *err)
{
    if (failed && (!err || !err->message || !*err->message)) {
        fz_fail("%s failed without an error message", what);
    }
    if (!failed && err) {
        fz_fail("%s succeeded but left an error: %s", what, err->message);
    }
    if (err) {
        char *s = mle_error_format(err);
        free(s);
    }
}

/* Every value the engine hands on must be encodable (it is printed, saved or sent). */
static inline void fz_check_dumps(const char *what, const json_t *v)
{
    if (!v)
        return;
    char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    if (!s) {
        fz_fail("%s produced a JSON value that cannot be encoded", what);
    }
    free(s);
}

#endif
