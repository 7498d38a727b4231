#!/usr/bin/env bash
# The consoles' browser libraries, from npm at a pinned version (npm checks each package
# against the registry's integrity hash), copied into the package: the consoles load
# them from the dispatch service itself, never from a CDN. Run by setup-venv.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

LEAFLET_VERSION=1.9.4
VENDOR=dashboards/operator/vendor

if [ -s "$VENDOR/leaflet/leaflet.js" ] && grep -qx "$LEAFLET_VERSION" "$VENDOR/leaflet/VERSION" 2>/dev/null; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "installing npm (the consoles' map library, Leaflet, comes from npm)" >&2
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "leaflet@$LEAFLET_VERSION" >/dev/null && tar xzf "leaflet-$LEAFLET_VERSION.tgz")
rm -rf "$VENDOR/leaflet"
mkdir -p "$VENDOR/leaflet/images"
cp "$work/package/dist/leaflet.js" "$work/package/dist/leaflet.css" "$work/package/LICENSE" "$VENDOR/leaflet/"
cp "$work/package/dist/images/"*.png "$VENDOR/leaflet/images/"
echo "$LEAFLET_VERSION" >"$VENDOR/leaflet/VERSION"
echo "vendored Leaflet $LEAFLET_VERSION into $VENDOR/leaflet"
