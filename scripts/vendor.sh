#!/usr/bin/env bash
# The consoles' browser libraries, from npm at a pinned version (npm checks each package
# against the registry's integrity hash), copied into the package: the consoles load
# them from the dispatch service itself, never from a CDN. Run by setup-venv.sh.
#   Leaflet  the operator's map          -> dashboards/operator/vendor/leaflet
#   uPlot    the technician's charts     -> dashboards/technician/vendor/uplot
set -euo pipefail
cd "$(dirname "$0")/.."

LEAFLET_VERSION=1.9.4
UPLOT_VERSION=1.6.32
LEAFLET=dashboards/operator/vendor/leaflet
UPLOT=dashboards/technician/vendor/uplot

current() {  # current DIR VERSION FILE: the library is there at that version
  [ -s "$1/$3" ] && grep -qx "$2" "$1/VERSION" 2>/dev/null
}

if current "$LEAFLET" "$LEAFLET_VERSION" leaflet.js && current "$UPLOT" "$UPLOT_VERSION" uPlot.iife.min.js; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "installing npm (the consoles' map and chart libraries come from npm)" >&2
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

unpack() {  # unpack NAME VERSION: the package's files in $work/NAME
  mkdir -p "$work/$1"
  (cd "$work/$1" && npm pack --silent "$1@$2" >/dev/null && tar xzf "$1-$2.tgz")
}

if ! current "$LEAFLET" "$LEAFLET_VERSION" leaflet.js; then
  unpack leaflet "$LEAFLET_VERSION"
  rm -rf "$LEAFLET"
  mkdir -p "$LEAFLET/images"
  cp "$work/leaflet/package/dist/leaflet.js" "$work/leaflet/package/dist/leaflet.css" \
    "$work/leaflet/package/LICENSE" "$LEAFLET/"
  cp "$work/leaflet/package/dist/images/"*.png "$LEAFLET/images/"
  echo "$LEAFLET_VERSION" >"$LEAFLET/VERSION"
  echo "vendored Leaflet $LEAFLET_VERSION into $LEAFLET"
fi

if ! current "$UPLOT" "$UPLOT_VERSION" uPlot.iife.min.js; then
  unpack uplot "$UPLOT_VERSION"
  rm -rf "$UPLOT"
  mkdir -p "$UPLOT"
  cp "$work/uplot/package/dist/uPlot.iife.min.js" "$work/uplot/package/dist/uPlot.min.css" \
    "$work/uplot/package/LICENSE" "$UPLOT/"
  echo "$UPLOT_VERSION" >"$UPLOT/VERSION"
  echo "vendored uPlot $UPLOT_VERSION into $UPLOT"
fi
