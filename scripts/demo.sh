#!/usr/bin/env bash
# One command on a fresh machine: set up, generate demo exports, load them, write the report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/keymoments demo "${1:-demo-out}" --events "${EVENTS:-20000}"
