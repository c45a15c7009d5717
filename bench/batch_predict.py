"""Batch prediction: `lensflow predict --out` with `--engine local` vs `--engine ray`.

Both engines label the same N real JPEGs (clothing-small validation, else the bundled sample)
into a CSV with the same fp32 EfficientNet-Lite0 bundle, each as the user runs it: the CLI in
its own process, timed wall-clock. The local engine is one process using every core; the Ray
engine is a real two-node cluster (1 CPU per node, so 2 actors x 1 onnxruntime thread) on this
same machine, inside a network namespace made here (only `lo`: Ray would otherwise bind the
host's interface address); the CLI joins it with --address.

Reported per engine: wall seconds of the whole command, the engine's startup (until the first
chunk of rows: interpreter, model load; for Ray also joining the cluster and starting the actor
pool) and the steady rate after it (`steady_images_per_s` of the command's --json summary),
and CPU seconds per image (the command and, for Ray, every process of the cluster's namespace):
on a shared, loaded machine wall-clock rates mostly measure the scheduler, CPU time does not.

    .venv/bin/python bench/batch_predict.py [--bundle BUNDLE] [--images 320]   (root: netns)

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets" / "clothing-small" / "validation"
SAMPLE = ROOT / "examples" / "clothing-sample" / "validation"
sys.path[:0] = [str(ROOT), str(Path(__file__).parent)]


def image_list(n: int, out: Path) -> Path:
    paths = sorted((DATA if DATA.is_dir() else SAMPLE).rglob("*.jpg"))[:n]
    out.write_text("\n".join(str(p) for p in paths) + "\n")
    return out


def timed(command: list[str], env: dict[str, str] | None = None) -> tuple[float, dict]:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return seconds, json.loads(done.stdout.strip().splitlines()[-1])


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def engine_run(
    prefix: list[str], bundle: Path, options: list[str], listing: Path, out: Path, env, cluster=None
) -> dict:
    """One `lensflow predict --out` run: wall seconds, startup, steady rate and CPU per image
    (CPU time does not depend on how busy the shared machine is; wall time does)."""
    cmd = [*prefix, "-m", "lensflow", "predict", str(bundle), str(listing), "--out", str(out)]

    cpu0 = children_cpu_s()  # the command itself (the Ray driver too)
    with cluster.cpu_meter() if cluster else contextlib.nullcontext([0.0]) as cluster_cpu:
        seconds, summary = timed([*cmd, *options, "--json"], env)
    cpu = children_cpu_s() - cpu0 + cluster_cpu[0]
    return {
        "wall_s": round(seconds, 2),
        "cpu_s": round(cpu, 1),
        "cpu_ms_per_img": round(1000 * cpu / summary["predicted"], 1),
        "img_s_end_to_end": round(summary["predicted"] / seconds, 1),
        "startup_s": summary["startup_s"],
        "img_s_steady": summary["steady_images_per_s"],
        "nodes": len(summary["nodes"]),
        "predicted": summary["predicted"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", type=Path)
    ap.add_argument("--images", type=int, default=320)
    args = ap.parse_args()
    from serve_load import make_bundle

    from tests.fixtures.raycluster import NetnsUnavailable, ray_cluster_in_netns

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        bundle = args.bundle or make_bundle(tmp / "bench")
        listing = image_list(args.images, tmp / "images.txt")
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        local = engine_run([sys.executable], bundle, [], listing, tmp / "local.csv", env)
        try:
            with ray_cluster_in_netns(f"lensflow-bench-{os.getpid()}") as cluster:
                options = ["--engine", "ray", "--address", cluster.address, "--actors", "2"]
                prefix = cluster.command([sys.executable])
                ray = engine_run(
                    prefix, bundle, options, listing, tmp / "ray.csv", cluster.env, cluster
                )
        except NetnsUnavailable as e:
            ray = {"skipped": str(e)}
    out = {
        "bench": "batch_predict",
        "images": args.images,
        "cores": len(os.sched_getaffinity(0)),
        "load_avg_1m": os.getloadavg()[0],
        "local": local,
        "ray_2_nodes_x_1_cpu": ray,
    }
    if "img_s_steady" in ray:
        out["ray_over_local_steady"] = round(ray["img_s_steady"] / local["img_s_steady"], 3)
        out["ray_cpu_per_img_over_local"] = round(
            ray["cpu_ms_per_img"] / local["cpu_ms_per_img"], 3
        )
        out["ray_over_local_end_to_end"] = round(
            ray["img_s_end_to_end"] / local["img_s_end_to_end"], 3
        )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
