"""What the benchmark (tests/bench/run) and the crash torture (tests/bench/crash,
tests/e2e/test_crash.py) share: finding the binary, one sandbox folder per scenario (stack,
state, sim store, sim journal), and running the binary with its child's peak RSS measured.

Standard library only: the scripts run with the system's python3, the e2e test in the pytest
virtualenv.
"""
import os
import pathlib
import subprocess
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]

# A fixed test key: the state is sealed with it; nothing here is secret.
STATE_KEY = "11" * 32


def find_binary(build=True):
    """$MLENGINE, else build/core/mlengine (built with dev/build when missing and `build`)."""
    b = os.environ.get("MLENGINE")
    if b:
        if not os.access(b, os.X_OK):
            raise RuntimeError(f"$MLENGINE={b} is not an executable")
        return b
    b = ROOT / "build" / "core" / "mlengine"
    if not b.exists() and build:
        subprocess.run([str(ROOT / "dev" / "build")], check=True)
    if not b.exists():
        raise RuntimeError(f"mlengine binary not found at {b}: build first (dev/build)")
    return str(b)


class Result:
    """One finished run: exit code, output, wall seconds, the child's peak RSS in KiB and its
    CPU seconds."""

    def __init__(self, returncode, stdout, stderr, wall_s, maxrss_kib, cpu_s=0.0):
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.wall_s = wall_s
        self.maxrss_kib = maxrss_kib
        self.cpu_s = cpu_s  # user + system time of the child

    def __repr__(self):
        return f"<rc={self.returncode} wall={self.wall_s:.3f}s rss={self.maxrss_kib}KiB>"


class Sandbox:
    """One folder holding a stack, its state, the sim store and the sim journal."""

    def __init__(self, path, binary, store=None):
        self.path = pathlib.Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.binary = binary
        self.store = pathlib.Path(store) if store else self.path / "sim-store"
        self.journal = self.path / "journal.log"
        self.stack = self.path / "stack.lua"
        self.state = self.path / ".mlengine" / "state.db"
        self.env = dict(os.environ)
        self.env.update({
            "MLE_SIM_STORE": str(self.store),
            "MLE_SIM_JOURNAL": str(self.journal),
            "MLENGINE_STATE_KEY": STATE_KEY,
            "XDG_CONFIG_HOME": str(self.path / "config"),
            "HOME": str(self.path),
        })
        self.env.pop("MLENGINE_DRIVER_PATH", None)

    def write_stack(self, text):
        self.stack.write_text(text)

    def argv(self, *args):
        return [self.binary, *map(str, args)]

    def start(self, *args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
        """Start the binary without waiting (the caller kills or waits)."""
        return subprocess.Popen(self.argv(*args), cwd=self.path, env=self.env,
                                stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)

    def run(self, *args, timeout=600):
        """Run to completion. The peak RSS is this child's own (wait4), not the maximum over
        every child this process ever had (which RUSAGE_CHILDREN would give)."""
        out_path = self.path / ".out"
        err_path = self.path / ".err"
        with open(out_path, "w") as out, open(err_path, "w") as err:
            t0 = time.monotonic()
            p = self.start(*args, stdout=out, stderr=err)
            timer = threading.Timer(timeout, p.kill)
            timer.start()
            try:
                _, status, ru = os.wait4(p.pid, 0)
            finally:
                timer.cancel()
            wall = time.monotonic() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        return Result(p.returncode, out_path.read_text(), err_path.read_text(), wall,
                      ru.ru_maxrss, ru.ru_utime + ru.ru_stime)

    def ok(self, *args, **kw):
        r = self.run(*args, **kw)
        if r.returncode != 0:
            raise RuntimeError(f"mlengine {' '.join(map(str, args))} failed ({r.returncode}):\n"
                               f"{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
        return r

    # -- the sim's side effects

    def journal_lines(self):
        if not self.journal.exists():
            return []
        return [l.split() for l in self.journal.read_text().splitlines() if l.strip()]

    def store_docs(self):
        """Every resource file in the store (temporaries `.sim-...` left by kill -9 are not
        resources)."""
        import json
        return [json.loads(p.read_text()) for p in sorted(self.store.glob("sim-*.json"))]
