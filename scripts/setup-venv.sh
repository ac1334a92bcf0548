#!/usr/bin/env bash
# Create .venv (if missing) and install meshmeet into it, with the extras named in $1 (e.g. "test").
# Idempotent and quiet when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
if [ ! -x .venv/bin/python ]; then
    if ! python3 -m venv .venv 2>/dev/null; then
        echo "meshmeet: installing python3-venv (Debian)..." >&2
        apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv .venv
    fi
fi
spec="."
[ -n "$extras" ] && spec=".[$extras]"
.venv/bin/python -m pip install -q --disable-pip-version-check -e "$spec"
