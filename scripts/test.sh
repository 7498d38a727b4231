#!/usr/bin/env bash
# One command: install what the tests need (mosquitto, PostgreSQL, the Python tools),
# then lint, type-check and run the whole suite against real servers.
# Extra arguments go to pytest (e.g. scripts/test.sh -k e2e).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
missing=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v pg_isready >/dev/null 2>&1 || missing+=(postgresql)
# The console tests drive Debian's Chromium (Playwright's own browser download is not used).
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# The time-series tests write to victoria-metrics, which speaks the InfluxDB v2 write API.
command -v victoria-metrics >/dev/null 2>&1 || missing+=(victoria-metrics)
# The clock-step tests move the dispatch service's wall clock with libfaketime.
compgen -G "/usr/lib/*/faketime/libfaketime.so.1" >/dev/null || missing+=(libfaketime)
# axe-core, which checks the consoles' accessibility in the browser tests, comes from npm.
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The tests run their own mosquitto on free ports; PostgreSQL they use through a
# throwaway database on the local server, which must be up.
if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  echo "starting PostgreSQL"
  for version in $(ls /etc/postgresql); do
    $sudo pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  done
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
export TRYGG_TEST_PG_DSN="${TRYGG_TEST_PG_DSN:-postgresql://postgres@127.0.0.1:5432/postgres}"
if ! psql "$TRYGG_TEST_PG_DSN" -qAtc 'select 1' >/dev/null 2>&1; then
  # A stock Debian server wants a password over TCP: give the test role one.
  $sudo runuser -u postgres -- psql -qc "ALTER ROLE postgres PASSWORD 'trygg-test'" >/dev/null
  export TRYGG_TEST_PG_DSN="postgresql://postgres:trygg-test@127.0.0.1:5432/postgres"
fi

scripts/setup-venv.sh dev

AXE_VERSION=4.10.3
if [ ! -s .cache/axe-core/axe.min.js ] || ! grep -q "\"version\": \"$AXE_VERSION\"" .cache/axe-core/package.json; then
  echo "fetching axe-core $AXE_VERSION from npm"
  rm -rf .cache/axe-core .cache/axe-core-*.tgz
  mkdir -p .cache
  (cd .cache && npm pack --silent "axe-core@$AXE_VERSION" >/dev/null && tar xzf "axe-core-$AXE_VERSION.tgz" \
    && mv package axe-core && rm "axe-core-$AXE_VERSION.tgz")
fi

# The Zigbee model catalogue the coverage test reads (tests/test_zigbee_catalogue.py).
scripts/zigbee-catalogue.sh

echo "ruff";  .venv/bin/ruff check .
echo "ruff format"; .venv/bin/ruff format --check . >/dev/null
echo "mypy --strict"; .venv/bin/mypy
echo "pytest"
exec .venv/bin/pytest -n auto --durations=10 "$@"
