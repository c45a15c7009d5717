"""Prometheus text-format metrics, the CloudWatch equivalents of a SageMaker endpoint.

Hand-written (no prometheus_client dependency): counters and histograms keyed by label values,
rendered in the text exposition format 0.0.4. Thread-safe.
"""

from __future__ import annotations

import threading
from collections import defaultdict

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    if not names:
        return ""
    esc = [v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for v in values]
    return "{" + ",".join(f'{n}="{v}"' for n, v in zip(names, esc, strict=True)) + "}"


def _num(v: float) -> str:
    return repr(float(v)) if v != int(v) else str(int(v))


class Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.sum += value
        self.count += 1
        for i, b in enumerate(self.buckets):
            if value <= b:
                self.counts[i] += 1


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.invocations: dict[tuple[str, str], int] = defaultdict(int)  # (endpoint, code)
        self.errors: dict[tuple[str, str], int] = defaultdict(int)  # (class "4xx"/"5xx", endpoint)
        self.latency: dict[str, Histogram] = {}
        self.batch_size = Histogram(BATCH_BUCKETS)
        self.model_load_seconds: dict[str, float] = {}

    def record(self, endpoint: str, status: int, seconds: float) -> None:
        with self._lock:
            self.invocations[(endpoint, str(status))] += 1
            if 400 <= status < 600:
                self.errors[(f"{status // 100}xx", endpoint)] += 1
            hist = self.latency.setdefault(endpoint, Histogram(LATENCY_BUCKETS))
            hist.observe(seconds)

    def record_batch(self, size: int) -> None:
        with self._lock:
            self.batch_size.observe(size)

    def set_model_load(self, endpoint: str, seconds: float) -> None:
        with self._lock:
            self.model_load_seconds[endpoint] = seconds

    def count(self, endpoint: str, status: int) -> int:
        with self._lock:
            return self.invocations.get((endpoint, str(status)), 0)

    def render(self) -> str:
        with self._lock:
            lines: list[str] = []

            def header(name: str, kind: str, text: str) -> None:
                lines.append(f"# HELP {name} {text}")
                lines.append(f"# TYPE {name} {kind}")

            header("lensflow_invocations_total", "counter", "Requests by endpoint and HTTP status.")
            for (ep, code), n in sorted(self.invocations.items()):
                lines.append(
                    f"lensflow_invocations_total{_labels(('endpoint', 'code'), (ep, code))} {n}"
                )
            for cls in ("4xx", "5xx"):
                name = f"lensflow_http_{cls}_total"
                header(name, "counter", f"Responses with a {cls} status, by endpoint.")
                rows = sorted((ep, n) for (c, ep), n in self.errors.items() if c == cls)
                for ep, n in rows or [("", 0)]:
                    lines.append(f"{name}{_labels(('endpoint',), (ep,)) if ep else ''} {n}")
            name = "lensflow_invocation_latency_seconds"
            header(name, "histogram", "Time from request received to response ready.")
            for ep, h in sorted(self.latency.items()):
                self._histogram(lines, name, h, ("endpoint",), (ep,))
            header("lensflow_batch_size", "histogram", "Images per model call (micro-batching).")
            self._histogram(lines, "lensflow_batch_size", self.batch_size, (), ())
            header("lensflow_model_load_seconds", "gauge", "Time to load each endpoint's bundle.")
            for ep, s in sorted(self.model_load_seconds.items()):
                lines.append(f"lensflow_model_load_seconds{_labels(('endpoint',), (ep,))} {s:.6f}")
            return "\n".join(lines) + "\n"

    @staticmethod
    def _histogram(
        lines: list[str], name: str, h: Histogram, names: tuple[str, ...], values: tuple[str, ...]
    ) -> None:
        for b, n in zip(h.buckets, h.counts, strict=True):
            lines.append(f"{name}_bucket{_labels((*names, 'le'), (*values, _num(b)))} {n}")
        lines.append(f"{name}_bucket{_labels((*names, 'le'), (*values, '+Inf'))} {h.count}")
        lines.append(f"{name}_sum{_labels(names, values)} {h.sum:.6f}")
        lines.append(f"{name}_count{_labels(names, values)} {h.count}")
