"""Micro-batching with a real Predictor, the Prometheus exposition, and serve config checks."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)

from lensflow.errors import ServeError
from lensflow.predictor import Predictor
from lensflow.serve.batcher import MicroBatcher
from lensflow.serve.config import ServeConfig, check_bind, is_loopback, parse_endpoint
from lensflow.serve.metrics import Metrics
from tests.fixtures.prometheus import prometheus_samples


def test_concurrent_requests_share_model_calls_and_get_their_own_rows(tiny_bundle, sample_images):
    predictor = Predictor.from_bundle(tiny_bundle)
    x = predictor.preprocess_images(sample_images)
    expected, expected_scores = predictor.classify_arrays(x)
    sizes: list[int] = []

    async def main() -> list[np.ndarray]:
        batcher = MicroBatcher(predictor, max_batch=32, max_wait_ms=50, on_batch=sizes.append)
        await batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit(x[i : i + 1]) for i in range(len(x))))
        finally:
            await batcher.stop()

    rows = asyncio.run(main())
    np.testing.assert_allclose(np.concatenate([p for p, _ in rows]), expected, atol=1e-5)
    if expected_scores is not None:  # each request gets its own open-set scores too
        np.testing.assert_allclose(
            np.concatenate([s for _, s in rows]), expected_scores, rtol=1e-4, atol=1e-6
        )
    assert sum(sizes) == len(x) and len(sizes) < len(x)  # batched, nothing lost


def test_a_failing_batch_fails_its_requests_not_the_loop(tiny_bundle, sample_images):
    predictor = Predictor.from_bundle(tiny_bundle)
    good = predictor.preprocess_images(sample_images[:1])

    async def main():
        batcher = MicroBatcher(predictor, max_wait_ms=0)
        await batcher.start()
        try:
            with pytest.raises(Exception, match="shape"):
                await batcher.submit(np.zeros((1, 3, 10, 10), np.float32))
            return await batcher.submit(good)
        finally:
            await batcher.stop()

    assert asyncio.run(main())[0].shape == (1, len(predictor.classes))


def test_metrics_render_counters_and_cumulative_histograms():
    m = Metrics(["a", "b"])
    m.record("a", 200, 0.004)
    m.record("a", 200, 0.2)
    m.record("a", 415, 0.001)
    m.record("b", 500, 0.03)
    m.record_model("a", 0.02)
    m.record_batch(3)
    m.set_model_load("a", 1.25)
    body, content_type = m.render()
    assert content_type.startswith("text/plain")
    got = prometheus_samples(body.decode())
    assert got["lensflow_invocations_total", (("code", "200"), ("endpoint", "a"))] == 2
    assert got["lensflow_http_4xx_total", (("endpoint", "a"),)] == 1
    assert got["lensflow_http_4xx_total", (("endpoint", "b"),)] == 0  # known endpoints start at 0
    assert got["lensflow_http_5xx_total", (("endpoint", "b"),)] == 1
    latency = "lensflow_invocation_latency_seconds"
    assert got[f"{latency}_bucket", (("endpoint", "a"), ("le", "0.005"))] == 2
    assert got[f"{latency}_bucket", (("endpoint", "a"), ("le", "0.25"))] == 3
    assert got[f"{latency}_count", (("endpoint", "a"),)] == 3
    assert got["lensflow_model_latency_seconds_count", (("endpoint", "a"),)] == 1
    assert ("lensflow_model_latency_seconds_count", (("endpoint", "b"),)) not in got
    assert got["lensflow_batch_size_bucket", (("le", "4.0"),)] == 1
    assert got["lensflow_model_load_seconds", (("endpoint", "a"),)] == 1.25


def test_metrics_speak_openmetrics_when_the_scraper_asks():
    m = Metrics(["a"])
    m.record("a", 200, 0.01)
    body, content_type = m.render("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    families = {f.name: f for f in openmetrics_families(body.decode())}
    assert families["lensflow_invocations"].type == "counter"
    assert families["lensflow_invocation_latency_seconds"].type == "histogram"


def test_endpoint_specs_and_bind_safety(tmp_path):
    assert parse_endpoint("clothing=bundles/x") == ("clothing", tmp_path.__class__("bundles/x"))
    assert parse_endpoint("bundles/my-model/")[0] == "my-model"
    assert parse_endpoint("out/model.tar.gz")[0] == "model"
    with pytest.raises(ServeError, match="not a valid endpoint name"):
        parse_endpoint("bundles/my_model")
    with pytest.raises(ServeError, match="unique"):
        ServeConfig(endpoints=(("a", tmp_path), ("a", tmp_path)))
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.com")
    with pytest.raises(ServeError, match="--insecure"):
        check_bind(ServeConfig(endpoints=(("a", tmp_path),), host="0.0.0.0"))
    check_bind(ServeConfig(endpoints=(("a", tmp_path),), host="0.0.0.0", insecure=True))
    check_bind(ServeConfig(endpoints=(("a", tmp_path),), host="0.0.0.0", api_keys=tmp_path / "k"))
