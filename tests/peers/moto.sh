#!/usr/bin/env bash
# tests/peers/moto.sh — installs the AWS peer of the tests: moto server, boto3 (the
# independent client that checks what the driver did) and pytest, pinned, into a virtualenv
# cached under ${XDG_CACHE_HOME:-$HOME/.cache}/mlengine/venv-moto.
#
# Prints the path of the venv's python and nothing else on stdout (the caller runs pytest
# with it); on failure says what failed on stderr and exits non-zero. Idempotent: a run with
# the venv present and complete is near-instant; a change of pins reinstalls.
set -euo pipefail

MOTO_VERSION=5.2.5
BOTO3_VERSION=1.44.5
BOTOCORE_VERSION=1.44.5
PYTEST_VERSION=8.3.5

cache="${XDG_CACHE_HOME:-$HOME/.cache}/mlengine"
venv="${MLE_MOTO_VENV:-$cache/venv-moto}"
stamp="$venv/.mlengine-pins"
want="moto[server]==$MOTO_VERSION boto3==$BOTO3_VERSION botocore==$BOTOCORE_VERSION pytest==$PYTEST_VERSION"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$venv/bin/python" ]]; then
    echo "$venv/bin/python"
    exit 0
fi

python=${PYTHON:-python3}
if ! command -v "$python" >/dev/null 2>&1; then
    echo "moto.sh: $python not found; install Python 3 (apt-get install python3 python3-venv)" >&2
    exit 1
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
mkdir -p "$cache"
rm -rf "$venv"
if ! "$python" -m venv "$venv" >"$log" 2>&1; then
    echo "moto.sh: creating the virtualenv $venv failed:" >&2
    cat "$log" >&2
    echo "moto.sh: hint: apt-get install python3-venv" >&2
    exit 1
fi
# shellcheck disable=SC2086
if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check $want >"$log" 2>&1; then
    echo "moto.sh: pip install $want into $venv failed:" >&2
    cat "$log" >&2
    exit 1
fi
if ! "$venv/bin/python" -c 'import moto.server, boto3, flask, pytest' >"$log" 2>&1; then
    echo "moto.sh: moto server does not import after install:" >&2
    cat "$log" >&2
    exit 1
fi
printf '%s' "$want" >"$stamp"
echo "$venv/bin/python"
