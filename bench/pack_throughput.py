"""Pack throughput vs a naive single-process loop, in the same run.

    .venv/bin/python bench/pack_throughput.py [--src ../shared/datasets/clothing-small] [--workers 0]

Imports SRC once (not timed), then times:
- baseline: one process, for every image PIL open -> convert("RGB") -> resize (shorter side
  256) + center crop 224 -> save as JPEG (quality 95, im2rec's default) into a folder;
- lensflow: `pack_dataset(size=224, resize=256)`, the same geometry as the baseline (resampling
  only the region the crop keeps), written
  to the memory-mapped pack with `--workers` processes.
Prints one JSON line: images, seconds and images/s of both, the speed-up ratio, and the CPU
seconds of each (workers included) so runs on a busy machine can still be compared.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from PIL import Image

from lensflow.data import ImportConfig, import_dataset, load_dataset, pack_dataset
from lensflow.preprocess import Preprocess

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SRC = ROOT.parent / "shared" / "datasets" / "clothing-small"


def _cpu_seconds() -> float:
    """CPU time of this process plus its finished worker processes."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def naive_loop(paths: list[Path], out: Path, pp: Preprocess) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(paths):
        img = Image.open(path).convert("RGB")
        # The plain way: resize the whole image (shorter side), then crop the center.
        w, h = img.size
        s = pp.resize / min(w, h)
        img = img.resize(
            (max(pp.resize, round(w * s)), max(pp.resize, round(h * s))), Image.BICUBIC
        )
        left, top = (img.width - pp.input_size) // 2, (img.height - pp.input_size) // 2
        img = img.crop((left, top, left + pp.input_size, top + pp.input_size))
        img.save(out / f"{i:06d}.jpg", quality=95)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=DEFAULT_SRC)
    parser.add_argument("--workers", type=int, default=0, help="0 = all cores")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--resize", type=int, default=256)
    args = parser.parse_args()
    if not args.src.is_dir():
        raise SystemExit(f"{args.src} not found (../shared/datasets beside the project)")
    tmp = Path(tempfile.mkdtemp(prefix="lensflow-bench-pack-"))
    try:
        import_dataset(ImportConfig(src=args.src, out=tmp / "ds", workers=args.workers), quiet=True)
        ds = load_dataset(tmp / "ds")
        paths = [r.path for r in ds.records]
        pp = Preprocess(input_size=args.size, resize=args.resize)
        for p in paths:  # warm the page cache for both contenders alike
            p.read_bytes()

        start, cpu0 = time.perf_counter(), _cpu_seconds()
        naive_loop(paths, tmp / "naive", pp)
        naive_s, naive_cpu = time.perf_counter() - start, _cpu_seconds() - cpu0

        start, cpu0 = time.perf_counter(), _cpu_seconds()
        pack_dataset(ds, args.size, args.resize, True, args.workers, quiet=True)
        pack_s, pack_cpu = time.perf_counter() - start, _cpu_seconds() - cpu0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n = len(paths)
    print(
        json.dumps(
            {
                "bench": "pack_throughput",
                "images": n,
                "size": args.size,
                "resize": args.resize,
                "cpus": os.cpu_count(),
                "workers": args.workers or os.cpu_count(),
                "naive_seconds": round(naive_s, 2),
                "naive_images_per_s": round(n / naive_s, 1),
                "pack_seconds": round(pack_s, 2),
                "pack_images_per_s": round(n / pack_s, 1),
                "speedup": round(naive_s / pack_s, 2),
                "naive_cpu_seconds": round(naive_cpu, 2),
                "pack_cpu_seconds": round(pack_cpu, 2),
                # wall-clock speed-up is at most cpus x this: the work per image of each contender
                "cpu_work_ratio": round(naive_cpu / pack_cpu, 2),
                "load_average_1min": round(os.getloadavg()[0], 2),
                "target_speedup": 3.0,
            }
        )
    )


if __name__ == "__main__":
    main()
