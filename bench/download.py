"""`lensflow download` throughput: concurrent workers vs one-at-a-time, against a local server.

    .venv/bin/python bench/download.py [--urls 80] [--latency 0.05] [--workers 8] [--repeats 3]

A threaded http.server on loopback serves real photos from the bundled sample, each answer delayed
by `--latency` seconds (what a remote host costs; loopback alone would hide it). Each repeat
downloads every URL into a fresh folder (full decode check, de-dup, report) with `--workers` and
with workers=1 (the baseline: a plain sequential loop through the same code). Prints one JSON line
with the median URLs/s of each and the speed-up ratio.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from lensflow.data.download import DownloadConfig, UrlItem, download

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "clothing-sample"


def start_server(photos: list[bytes], latency: float) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            time.sleep(latency)
            body = photos[int(self.path.strip("/").split(".")[0]) % len(photos)]
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def rate(items: list[UrlItem], workers: int) -> float:
    out = Path(tempfile.mkdtemp(prefix="lensflow-bench-download-"))
    try:
        config = DownloadConfig(None, out, workers=workers, timeout=30, retries=0)
        start = time.perf_counter()
        result = download(items, config, quiet=True)
        seconds = time.perf_counter() - start
        assert result.counts["downloaded"] == len(items), result.counts
        return len(items) / seconds
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--urls", type=int, default=80)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    photos = [p.read_bytes() for p in sorted(SAMPLE.rglob("*.jpg"))]
    if len(photos) < args.urls:
        raise SystemExit(f"need {args.urls} distinct photos, the sample has {len(photos)}")
    server = start_server(photos, args.latency)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    items = [UrlItem(f"{base}/{i}.jpg", "x") for i in range(args.urls)]
    concurrent = statistics.median(rate(items, args.workers) for _ in range(args.repeats))
    baseline = statistics.median(rate(items, 1) for _ in range(args.repeats))
    server.shutdown()
    print(
        json.dumps(
            {
                "bench": "download",
                "urls": args.urls,
                "latency_s": args.latency,
                "workers": args.workers,
                "urls_per_s": round(concurrent, 1),
                "baseline_sequential_urls_per_s": round(baseline, 1),
                "speedup": round(concurrent / baseline, 2),
                "repeats": args.repeats,
            }
        )
    )


if __name__ == "__main__":
    main()
