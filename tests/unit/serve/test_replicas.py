"""X-Lensflow-Replica without Ray, and `serve --engine ray` options checked before any cluster."""

from __future__ import annotations

import os
import socket
import sys

import httpx
import pytest
from typer.testing import CliRunner

from lensflow.cli import app as cli_app
from lensflow.errors import ConfigError, ServeError
from lensflow.predictor import Predictor
from lensflow.serve.app import create_app
from lensflow.serve.background import BackgroundServer
from lensflow.serve.config import ServeConfig


def test_every_response_names_its_replica(tiny_bundle, sample_images):
    predictors = {"clothing": Predictor.from_bundle(tiny_bundle)}
    config = ServeConfig(endpoints=(("clothing", tiny_bundle),))
    img = sample_images[0].read_bytes()
    with BackgroundServer(create_app(config, predictors)) as url:
        ok = httpx.post(f"{url}/invocations", content=img, headers={"Content-Type": "image/jpeg"})
        bad = httpx.post(f"{url}/invocations", content=b"x", headers={"Content-Type": "text/csv"})
        missing = httpx.get(f"{url}/no-such-route")
    expected = f"{socket.gethostname()}-{os.getpid()}"
    assert (ok.status_code, bad.status_code, missing.status_code) == (200, 415, 404)
    assert {r.headers["X-Lensflow-Replica"] for r in (ok, bad, missing)} == {expected}
    with BackgroundServer(create_app(config, predictors, replica="r-7")) as url:
        assert httpx.get(f"{url}/ping").headers["X-Lensflow-Replica"] == "r-7"


def test_autoscaling_options_pass_through_and_are_checked():
    pytest.importorskip("ray.serve", reason="the [ray] extra is not installed")
    from lensflow.serve.ray_engine import RayServeOptions, parse_autoscaling

    assert parse_autoscaling([]) is None
    assert parse_autoscaling(
        ["min_replicas=1", "max_replicas=4", "target_ongoing_requests=2.5"]
    ) == {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 2.5}
    with pytest.raises(ConfigError, match="did you mean 'max_replicas'"):
        parse_autoscaling(["max_replica=4"])
    with pytest.raises(ServeError, match="KEY=VALUE"):
        parse_autoscaling(["max_replicas"])
    with pytest.raises(ServeError, match="invalid --autoscaling"):
        parse_autoscaling(["min_replicas=5", "max_replicas=2"])
    with pytest.raises(ServeError, match="--replicas must be >= 1"):
        RayServeOptions(replicas=0)
    with pytest.raises(ServeError, match="--ray-proxy must be one of"):
        RayServeOptions(proxy_location="Anywhere")


def test_serve_cli_mistakes_and_missing_extra(tiny_bundle, monkeypatch):
    runner = CliRunner()
    result = runner.invoke(cli_app, ["serve", str(tiny_bundle), "--replicas", "2"])
    assert result.exit_code == 2 and "need --engine ray" in result.output
    result = runner.invoke(cli_app, ["serve", str(tiny_bundle), "--engine", "k8s"])
    assert result.exit_code == 2 and "--engine must be 'local' or 'ray'" in result.output
    monkeypatch.setitem(sys.modules, "ray", None)  # as on a core-only install
    result = runner.invoke(cli_app, ["serve", str(tiny_bundle), "--engine", "ray"])
    assert result.exit_code == 2
    assert "needs Ray, which comes with the [ray] extra: pip install 'lensflow[ray]'" in (
        result.output
    )
