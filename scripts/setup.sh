#!/usr/bin/env bash
# Create .venv (Python 3.11+) and install keymoments with its test tools. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# a .venv linked from another checkout: installing would repoint that environment's
# keymoments (an editable install) at this checkout
if [ -L .venv ] && [ -x .venv/bin/python ]; then
  where=$(.venv/bin/python -c "import os, keymoments; print(os.path.realpath(os.path.dirname(keymoments.__file__)))" 2>/dev/null || true)
  here=$(realpath src/keymoments)
  if [ -n "$where" ] && [ "$where" != "$here" ]; then
    echo "error: .venv links to $(readlink -f .venv), whose keymoments is $where;" \
         "installing here would point it at this checkout instead." \
         "Remove the link (rm .venv) and run this again for an environment of its own." >&2
    exit 1
  fi
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]" 2>&1 \
  | grep -v "is ignored: it is neither a file nor a directory" || true
.venv/bin/python -c "import keymoments" # fail loudly if the install did not work
