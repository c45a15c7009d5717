"""Prometheus metrics of the server, the equivalents of a SageMaker endpoint's CloudWatch metrics.

SageMaker -> lensflow (all per endpoint):
  Invocations, by status        lensflow_invocations_total{endpoint, code}
  Invocation4XXErrors / 5XX     lensflow_http_4xx_total{endpoint}, lensflow_http_5xx_total{endpoint}
  end-to-end latency            lensflow_invocation_latency_seconds{endpoint} (histogram)
  ModelLatency                  lensflow_model_latency_seconds{endpoint} (histogram: decode + model)
  ModelSetupTime                lensflow_model_load_seconds{endpoint} (gauge)
plus lensflow_batch_size (images per model call, micro-batching).

Each Metrics has its own prometheus_client registry (not the process-global one), so two apps in
one process, e.g. in tests, never share counters. Exposition is prometheus_client's own, with
content negotiation: the OpenMetrics format when the scraper asks for it, the text format otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class Metrics:
    def __init__(self, endpoints: Iterable[str] = ()) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.invocations = Counter(
            "lensflow_invocations",
            "Requests by endpoint and HTTP status.",
            ["endpoint", "code"],
            registry=reg,
        )
        self.errors = {
            cls: Counter(
                f"lensflow_http_{cls}",
                f"Responses with a {cls} status, by endpoint.",
                ["endpoint"],
                registry=reg,
            )
            for cls in ("4xx", "5xx")
        }
        self.latency = Histogram(
            "lensflow_invocation_latency_seconds",
            "Time from request received to response ready.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.model_latency = Histogram(
            "lensflow_model_latency_seconds",
            "Time a request spends in the model: image decoding, queueing for a batch, inference.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.batch_size = Histogram(
            "lensflow_batch_size",
            "Images per model call (micro-batching).",
            buckets=BATCH_BUCKETS,
            registry=reg,
        )
        self.model_load_seconds = Gauge(
            "lensflow_model_load_seconds",
            "Time to load each endpoint's bundle.",
            ["endpoint"],
            registry=reg,
        )
        for name in endpoints:
            # Known label values start at 0, so a rate() over them works before the first error.
            for counter in self.errors.values():
                counter.labels(name)

    def record(self, endpoint: str, status: int, seconds: float) -> None:
        self.invocations.labels(endpoint, str(status)).inc()
        if 400 <= status < 600:
            self.errors[f"{status // 100}xx"].labels(endpoint).inc()
        self.latency.labels(endpoint).observe(seconds)

    def record_model(self, endpoint: str, seconds: float) -> None:
        self.model_latency.labels(endpoint).observe(seconds)

    def record_batch(self, size: int) -> None:
        self.batch_size.observe(size)

    def set_model_load(self, endpoint: str, seconds: float) -> None:
        self.model_load_seconds.labels(endpoint).set(seconds)

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition body and its content type, in the format the `Accept` header asks for."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type
