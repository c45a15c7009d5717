#!/usr/bin/env bash
# `make demo`: the main job end to end on the bundled CC0 clothing sample.
# Each stage appends its step here as it lands (import -> split -> pack -> info -> train -> evaluate
# -> export -> predict).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=demo-out
rm -rf "$OUT"
mkdir -p "$OUT"
echo "== lensflow demo: outputs in $OUT/"
lensflow --version
