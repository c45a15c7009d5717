"""Packed reader: random-access uint8 reads at 224x224 on one core, vs decoding the JPEG files.

    .venv/bin/python bench/packed_reader.py [--src ../shared/datasets/clothing-small] [--reads 20000]

Imports and packs SRC once (not timed; the pack is warmed into the page cache like a training
epoch would), then on one core (threads pinned to 1, no workers):
- packed: `reader[i]` for random i (a fresh HxWx3 uint8 array and the label each time);
- packed_batch: `reader.batch(idx)` for random batches of 256;
- baseline: what a loader without a pack does per image: decode the stored file and
  `Preprocess.resize_crop` it to 224x224.
Prints one JSON line with images/s of each and the ratio packed / baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from lensflow.data import ImportConfig, PackedReader, import_dataset, load_dataset, pack_dataset
from lensflow.preprocess import Preprocess, to_pil

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SRC = ROOT.parent / "shared" / "datasets" / "clothing-small"


def median_rate(fn, n: int, repeats: int = 3) -> float:
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        rates.append(n / (time.perf_counter() - start))
    return float(np.median(rates))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=DEFAULT_SRC)
    parser.add_argument("--reads", type=int, default=20000)
    parser.add_argument("--baseline-reads", type=int, default=300)
    args = parser.parse_args()
    if not args.src.is_dir():
        raise SystemExit(f"{args.src} not found (../shared/datasets beside the project)")
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    tmp = Path(tempfile.mkdtemp(prefix="lensflow-bench-reader-"))
    try:
        import_dataset(ImportConfig(src=args.src, out=tmp / "ds", workers=0), quiet=True)
        ds = load_dataset(tmp / "ds")
        reader = PackedReader(pack_dataset(ds, 224, 256, True, workers=0, quiet=True))
        n = len(reader)
        rng = np.random.default_rng(0)
        idx = rng.integers(0, n, args.reads)
        reader.batch(np.arange(n))  # warm the page cache: an epoch has read the pack before

        def single() -> None:
            for i in idx:
                reader[int(i)]

        batches = idx[: (args.reads // 256) * 256].reshape(-1, 256)

        def batched() -> None:
            for b in batches:
                reader.batch(b)

        pp = Preprocess(224, 256)
        paths = [ds.records[int(i)].path for i in idx[: args.baseline_reads]]

        def decode() -> None:
            for p in paths:
                np.asarray(pp.resize_crop(to_pil(p)))

        packed_rate = median_rate(single, len(idx))
        batch_rate = median_rate(batched, batches.size)
        decode_rate = median_rate(decode, len(paths))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        json.dumps(
            {
                "bench": "packed_reader",
                "images": n,
                "size": 224,
                "cores": 1,
                "random_reads": len(idx),
                "packed_images_per_s": round(packed_rate),
                "packed_batch256_images_per_s": round(batch_rate),
                "decode_baseline_images_per_s": round(decode_rate, 1),
                "speedup_vs_decode": round(packed_rate / decode_rate, 1),
                "target_images_per_s": 2000,
                "median_of": 3,
            }
        )
    )


if __name__ == "__main__":
    main()
