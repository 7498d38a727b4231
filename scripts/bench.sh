#!/usr/bin/env bash
# The benchmarks (not part of the tests): installs what they need like test.sh, then
# runs tests/bench.py, which writes docs/BENCHMARKS.md and docs/benchmarks.json.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
missing=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v victoria-metrics >/dev/null 2>&1 || missing+=(victoria-metrics)
command -v pg_isready >/dev/null 2>&1 || missing+=(postgresql)
command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
# The staff page's door taps are measured in Debian's Chromium, driven by Playwright.
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# The Zigbee catalogue's coverage reads zigbee-herdsman-converters, from npm, with node.
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
pg_isready -h 127.0.0.1 -p 5432 -q || for v in $(ls /etc/postgresql); do
  $sudo pg_ctlcluster --skip-systemctl-redirect "$v" main start; done
scripts/setup-venv.sh dev
scripts/zigbee-catalogue.sh
exec .venv/bin/python -m tests.bench "$@"
