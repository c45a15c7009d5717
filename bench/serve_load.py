"""Server load test: 16 concurrent clients on loopback vs the raw Predictor's throughput.

With `--engine ray --replicas N` it also serves the same bundle on Ray Serve (N replicas on a
real two-node cluster, 1 CPU per node, on this machine) and loads it the same way, beside the
single process of the same run. Ray runs inside a network namespace made here (only `lo`:
Ray would otherwise bind the host's interface address), and so does that load client.

Target (issue 5): >= 80% of the raw Predictor's throughput with 0 errors; p50/p99 reported.
Baseline, same run: `Predictor.predict_proba` on the same JPEG bytes in batches of 32 (decode +
preprocess + model, in-process, no HTTP). The server (`lensflow serve`, its own process) gets the
same images one per request, `application/x-image`, from an asyncio client; bounded both by time
(--seconds) and by count (--max-requests).

    .venv/bin/python bench/serve_load.py [--bundle BUNDLE] [--clients 16] [--seconds 20]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets" / "clothing-small" / "validation"
SAMPLE = ROOT / "examples" / "clothing-sample" / "validation"


def real_jpegs(n: int) -> list[bytes]:
    folder = DATA if DATA.is_dir() else SAMPLE
    return [p.read_bytes() for p in sorted(folder.rglob("*.jpg"))[:n]]


def make_bundle(out: Path) -> Path:
    """Lite0 (ImageNet weights, 10-class head): the model cost is what matters, not the head."""
    from lensflow.export.exporter import export_model, preprocess_paths
    from lensflow.models import create_model

    model = create_model("efficientnet_lite0", 10, pretrained=True).eval()
    paths = sorted(SAMPLE.rglob("*.jpg"))[:8]
    x = preprocess_paths(model.preprocess, paths, "parity", quiet=True)
    classes = [f"class-{i}" for i in range(10)]
    return export_model(model, classes, model.preprocess, out, x, quiet=True)


def raw_throughput(bundle: Path, images: list[bytes], seconds: float) -> float:
    from lensflow.predictor import Predictor

    p = Predictor.from_bundle(bundle)
    p.predict_proba(images[:32])
    n, t, i = 0, time.perf_counter(), 0
    while time.perf_counter() - t < seconds:
        batch = [images[(i + k) % len(images)] for k in range(32)]
        p.predict_proba(batch)
        n += len(batch)
        i += 32
    return n / (time.perf_counter() - t)


async def load(
    url: str, images: list[bytes], clients: int, seconds: float, max_requests: int
) -> dict:
    import httpx

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    replicas: set[str] = set()
    errors: list[str] = []
    sent = 0
    deadline = time.monotonic() + seconds

    async def client(c: httpx.AsyncClient, k: int) -> None:
        nonlocal sent
        i = k
        while time.monotonic() < deadline and sent < max_requests:
            sent += 1
            t = time.perf_counter()
            try:
                r = await c.post(
                    f"{url}/endpoints/bench/invocations",
                    content=images[i % len(images)],
                    headers={"Content-Type": "application/x-image"},
                )
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                replicas.add(r.headers.get("x-lensflow-replica", ""))
                if r.status_code == 200:
                    latencies.append(time.perf_counter() - t)
            except httpx.HTTPError as e:
                errors.append(type(e).__name__)
            i += clients

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=60, limits=limits) as c:
        # warm-up outside the measurement
        await c.post(
            f"{url}/endpoints/bench/invocations",
            content=images[0],
            headers={"Content-Type": "image/jpeg"},
        )
        started = time.perf_counter()
        await asyncio.gather(*(client(c, k) for k in range(clients)))
        elapsed = time.perf_counter() - started
    lat = np.array(latencies) * 1000
    return {
        "requests": sent,
        "ok": len(latencies),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "transport_errors": len(errors),
        "seconds": round(elapsed, 2),
        "img_s": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(lat, 50)) if len(lat) else None,
        "p99_ms": float(np.percentile(lat, 99)) if len(lat) else None,
        "replicas_seen": len(replicas - {""}),
    }


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/ping", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    sys.exit("server did not become ready")


def serve_on_ray(bundle: Path, images: list[bytes], args: argparse.Namespace) -> dict:
    """The same load against `serve --engine ray` in a namespace-held two-node cluster."""
    sys.path.insert(0, str(ROOT))
    from tests.fixtures.raycluster import NetnsUnavailable, ray_cluster_in_netns

    try:
        with ray_cluster_in_netns(f"lensflow-bench-{os.getpid()}") as cluster:
            proc = cluster.popen(
                [
                    sys.executable, "-m", "lensflow", "serve", f"bench={bundle}",
                    "--engine", "ray", "--address", cluster.address,
                    "--replicas", str(args.replicas), "--port", "8080",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )  # fmt: skip
            try:
                wait_for_line(proc, '"url"', timeout=600)
                client = [
                    sys.executable, __file__, "--client-only", "http://127.0.0.1:8080",
                    "--clients", str(args.clients), "--seconds", str(args.seconds),
                    "--max-requests", str(args.max_requests), "--images", str(args.images),
                ]  # fmt: skip
                with cluster.cpu_meter() as cluster_cpu:
                    done = cluster.run(client, timeout=args.seconds + 600)
                # the client ran in the namespace too: take its own CPU (printed first) out
                cpu = cluster_cpu[0] - float(done.stdout.strip().splitlines()[-2])
                if done.returncode != 0:
                    sys.exit(f"ray load client failed:\n{done.stderr[-2000:]}")
                result = json.loads(done.stdout.strip().splitlines()[-1])
                return {**result, "cpu_ms_per_img": round(1000 * cpu / max(result["ok"], 1), 1)}
            finally:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=60)
    except NetnsUnavailable as e:
        return {"skipped": str(e)}


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a running process: load-independent, unlike img/s."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for_line(proc: subprocess.Popen, marker: str, timeout: float) -> None:
    """Read the server's stderr until `marker` (its ready line); keep draining it after."""
    found = threading.Event()

    def read() -> None:
        for line in proc.stderr:  # type: ignore[union-attr]
            if marker in (line if isinstance(line, str) else line.decode()):
                found.set()

    threading.Thread(target=read, daemon=True).start()
    if not found.wait(timeout):
        sys.exit("the Ray server did not become ready")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", type=Path)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--max-requests", type=int, default=6000)
    ap.add_argument("--raw-seconds", type=float, default=10.0)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--engine", choices=["local", "ray"], default="local")
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--client-only", metavar="URL", help=argparse.SUPPRESS)  # inside the netns
    args = ap.parse_args()
    if args.client_only:
        images = real_jpegs(args.images)
        result = asyncio.run(
            load(args.client_only, images, args.clients, args.seconds, args.max_requests)
        )
        usage = resource.getrusage(resource.RUSAGE_SELF)
        print(usage.ru_utime + usage.ru_stime)  # this client's CPU, for the caller to subtract
        print(json.dumps(result))
        return

    from lensflow.serve.background import free_port

    images = real_jpegs(args.images)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = args.bundle or make_bundle(Path(tmp) / "bench")
        raw = raw_throughput(bundle, images, args.raw_seconds)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = Path(tmp) / "access.log"
        with open(log, "w") as logf:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "lensflow",
                    "serve",
                    f"bench={bundle}",
                    "--port",
                    str(port),
                    "--log-level",
                    "warning",
                ],
                stdout=subprocess.DEVNULL,
                stderr=logf,
            )
            try:
                wait_ready(url, proc)
                cpu0 = process_cpu_s(proc.pid)
                served = asyncio.run(
                    load(url, images, args.clients, args.seconds, args.max_requests)
                )
                served["cpu_ms_per_img"] = round(
                    1000 * (process_cpu_s(proc.pid) - cpu0) / max(served["ok"], 1), 1
                )
            finally:
                proc.terminate()
                proc.wait(timeout=30)
        access_lines = sum(1 for line in log.read_text().splitlines() if line.startswith('{"ts"'))
        ray = serve_on_ray(bundle, images, args) if args.engine == "ray" else None

    errors = served["transport_errors"] + sum(
        v for k, v in served["statuses"].items() if k != "200"
    )
    out = {
        "bench": "serve_load",
        "clients": args.clients,
        "cores": len(os.sched_getaffinity(0)),
        "load_avg_1m": os.getloadavg()[0],
        "raw_predictor_img_s": round(raw, 1),
        "server_img_s": round(served["img_s"], 1),
        "ratio": round(served["img_s"] / raw, 3),
        "p50_ms": round(served["p50_ms"], 1) if served["p50_ms"] else None,
        "p99_ms": round(served["p99_ms"], 1) if served["p99_ms"] else None,
        "requests": served["requests"],
        "errors": errors,
        "statuses": served["statuses"],
        "seconds": served["seconds"],
        "access_log_lines": access_lines,
        "server_cpu_ms_per_img": served["cpu_ms_per_img"],
    }
    out["targets_met"] = {"ratio_ge_0_8": out["ratio"] >= 0.8, "zero_errors": errors == 0}
    if ray is not None:
        out["ray"] = {"replicas": args.replicas, **ray}
        if "img_s" in ray:
            out["ray"]["img_s"] = round(ray["img_s"], 1)
            out["ray"]["ratio_vs_single_process"] = round(ray["img_s"] / served["img_s"], 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
