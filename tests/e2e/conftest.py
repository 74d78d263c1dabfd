"""Fixtures for driving the built mlengine binary end to end with the sim and local drivers.

Every test gets its own folder holding the stack, the state, the sim "cloud" (its store) and
the sim journal that counts real creates and deletes.
"""
import hashlib
import os
import pathlib
import sqlite3
import subprocess
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def binary():
    b = os.environ.get("MLENGINE") or str(ROOT / "build" / "core" / "mlengine")
    if not os.path.exists(b):
        raise RuntimeError(f"mlengine binary not found at {b}: build first (dev/build)")
    return b


class Work:
    def __init__(self, path):
        self.path = path
        self.store = path / "sim-store"
        self.journal = path / "journal.log"
        self.stack = path / "stack.lua"
        self.state = path / ".mlengine" / "state.db"
        self.env = dict(os.environ)
        self.env.update({
            "MLE_SIM_STORE": str(self.store),
            "MLE_SIM_JOURNAL": str(self.journal),
            "MLENGINE_STATE_KEY": "11" * 32,
            "XDG_CONFIG_HOME": str(path / "config"),
            "HOME": str(path),
        })
        self.env.pop("MLENGINE_DRIVER_PATH", None)

    def write(self, text, name="stack.lua"):
        p = self.path / name
        p.write_text(textwrap.dedent(text))
        return p

    def run(self, *args, input=None, timeout=120, env=None):
        e = dict(self.env)
        if env:
            e.update(env)
        return subprocess.run([binary(), *map(str, args)], cwd=self.path, env=e,
                              capture_output=True, text=True, input=input, timeout=timeout)

    def ok(self, *args, **kw):
        r = self.run(*args, **kw)
        assert r.returncode == 0, f"mlengine {' '.join(map(str, args))} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
        return r

    def journal_lines(self):
        if not self.journal.exists():
            return []
        return [l.split() for l in self.journal.read_text().splitlines() if l.strip()]

    def creates(self, address=None):
        return [l for l in self.journal_lines() if l[0] == "create" and (address is None or l[1] == address)]

    def deletes(self, address=None):
        return [l for l in self.journal_lines() if l[0] == "delete" and (address is None or l[1] == address)]

    def state_digest(self):
        """What the state says (resources, outputs, lineage, serial), read with SQLite
        itself; the lock table is left out, since taking a lock is not a change."""
        if not self.state.exists():
            return None
        db = sqlite3.connect(f"file:{self.state}?mode=ro", uri=True)
        try:
            rows = []
            for table in ("meta", "resources", "outputs"):
                rows.append(sorted(map(repr, db.execute(f"SELECT * FROM {table}"))))
        finally:
            db.close()
        return hashlib.sha256(repr(rows).encode()).hexdigest()

    def state_list(self):
        r = self.ok("state", "list")
        return [l.split()[0] for l in r.stdout.splitlines() if l.strip()]


@pytest.fixture
def work(tmp_path):
    return Work(tmp_path)
