#!/usr/bin/env bash
# `make demo`: the main job end to end on the bundled CC0 clothing sample (5 classes, 80 photos):
# import -> split -> pack -> info -> train (quick) -> evaluate -> export -> predict -> live -> pairs.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=demo-out
SAMPLE=examples/clothing-sample
rm -rf "$OUT"
mkdir -p "$OUT"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "import: validate every photo, keep the train/validation split"
lensflow data import "$SAMPLE" --out "$OUT/dataset"

step "split: stratified and seeded (the sample is pre-split, so this keeps it)"
lensflow data split "$OUT/dataset" --train 0.8 --val 0.1 --test 0.1 --seed 0

step "pack: decode once into uint8 arrays for fast training reads"
lensflow data pack "$OUT/dataset" --size 224 --resize 256 --center-crop

step "info"
lensflow data info "$OUT/dataset"

step "train: quick mode (frozen EfficientNet-Lite0 features + logistic regression)"
lensflow train "$OUT/dataset" --out "$OUT/run" --mode quick

step "evaluate: metrics, plots, embeddings and a self-contained report"
lensflow evaluate "$OUT/run" --out "$OUT/eval"

step "export: ONNX bundle with a parity check against torch"
lensflow export "$OUT/run" --out "$OUT/bundle"

step "predict: one bundled photo through the bundle (onnxruntime, no torch)"
lensflow predict "$OUT/bundle" "$SAMPLE/validation/hat/$(ls "$SAMPLE/validation/hat" | head -1)" --top-k 3

step "live + pairs: classify a folder as a 5 fps feed, smooth into sightings, count pairs"
lensflow live "$OUT/bundle" --source "$SAMPLE/validation/hat" --fps 5 --stdout -q \
  | lensflow pairs --replay - --min-count 2 --json

printf '\n\033[1mdemo done.\033[0m report: %s  bundle: %s\n' "$OUT/eval/report.html" "$OUT/bundle"
echo "serve it SageMaker-style: lensflow serve $OUT/bundle --port 8080"
