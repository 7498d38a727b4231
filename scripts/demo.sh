#!/usr/bin/env bash
# One command: set up, then run the demo (simulated homes -> gateway -> dispatch -> console)
# on embedded defaults: an embedded MQTT broker and SQLite. Extra arguments go to
# `trygg demo` (see `--help`).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "setting up .venv (first run takes a minute)…"
scripts/setup-venv.sh
exec .venv/bin/trygg demo "$@"
