#!/usr/bin/env bash
# A cached virtualenv with the test runner for the CLI end-to-end tests (pytest, jsonschema
# from PyPI). Prints the path of its python. Idempotent; a warm run takes well under a second.
set -euo pipefail
cache=${XDG_CACHE_HOME:-$HOME/.cache}/mlengine
venv=$cache/venv-test
want="pytest==8.3.5 jsonschema==4.23.0"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.mlengine-reqs" 2>/dev/null)" != "$want" ]; then
  mkdir -p "$cache"
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check $want >&2
  echo "$want" > "$venv/.mlengine-reqs"
fi
echo "$venv/bin/python"
