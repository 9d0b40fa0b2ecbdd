#!/usr/bin/env bash
# build-ui.sh rebuilds the npm assets that web/ embeds. The built files are
# committed, so `go build` needs neither npm nor a network; run this only to
# move to another uPlot release (change UPLOT_VERSION), then commit
# web/static/vendor.
set -euo pipefail

UPLOT_VERSION="${UPLOT_VERSION:-1.6.32}"
root="$(cd "$(dirname "$0")/.." && pwd)"
vendor="$root/web/static/vendor"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

cd "$tmp"
npm init -y >/dev/null
npm install --no-audit --no-fund --ignore-scripts "uplot@$UPLOT_VERSION" >/dev/null

mkdir -p "$vendor"
cp node_modules/uplot/dist/uPlot.iife.min.js "$vendor/uPlot.iife.min.js"
cp node_modules/uplot/dist/uPlot.min.css "$vendor/uPlot.min.css"
cp node_modules/uplot/LICENSE "$vendor/uPlot.LICENSE"
echo "uPlot $(node -p 'require("./node_modules/uplot/package.json").version') -> $vendor"
