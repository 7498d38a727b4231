#!/usr/bin/env bash
# The real Zigbee model catalogue, zigbee-herdsman-converters from npm at a pinned version
# (npm checks it against the registry's integrity hash), into .cache/zhc: the coverage
# test and `make bench` read every model's exposes from it (tests/zigbee_catalogue.js).
# No install scripts run; nothing of it is shipped or loaded by Trygg itself.
set -euo pipefail
cd "$(dirname "$0")/.."

ZHC_VERSION=26.112.0
DIR=.cache/zhc
PACKAGE="$DIR/node_modules/zigbee-herdsman-converters/package.json"

if [ -s "$PACKAGE" ] && grep -q "\"version\": \"$ZHC_VERSION\"" "$PACKAGE"; then
  exit 0
fi
echo "fetching zigbee-herdsman-converters $ZHC_VERSION from npm"
rm -rf "$DIR"
mkdir -p "$DIR"
(cd "$DIR" && echo '{"private": true}' >package.json \
  && npm install --silent --no-audit --no-fund --ignore-scripts \
    "zigbee-herdsman-converters@$ZHC_VERSION" >/dev/null)
