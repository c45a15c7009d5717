"""`lensflow serve --engine ray`: the app on Ray Serve replicas across a real two-node cluster.

The server and its clients run inside the test's network namespace (see raycluster.py); the
client script (ray_drivers/serve_client.py) prints what it saw as JSON and the asserts are here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from lensflow.predictor import Predictor
from tests.fixtures.prometheus import prometheus_samples

pytestmark = [pytest.mark.slow, pytest.mark.ray]

CLIENT = Path(__file__).with_name("ray_drivers") / "serve_client.py"
ACCESS_KEY, SECRET = "AKIALENSFLOWTEST01", "s3cr3t/Key+ForSigV4Tests"
TOKEN = "bearer-token-0123456789abcdef"
URL = "http://127.0.0.1:8080"  # the namespace has its own ports: 8080 is free there
READY_TIMEOUT = 300.0  # hang guard


@pytest.fixture(scope="module")
def ray_server(ray_netns, tiny_bundle, tmp_path_factory):
    keys = tmp_path_factory.mktemp("ray-serve-keys")
    (keys / "sigv4.txt").write_text(f"{ACCESS_KEY} {SECRET}\n")
    (keys / "api.txt").write_text(f"{TOKEN}\n")
    proc = ray_netns.popen(
        [
            sys.executable, "-m", "lensflow", "serve", f"bundle={tiny_bundle}",
            "--engine", "ray", "--address", ray_netns.address, "--replicas", "2",
            "--replica-cpus", "0.5", "--port", "8080",
            "--sigv4-keys", str(keys / "sigv4.txt"), "--api-keys", str(keys / "api.txt"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    lines: list[str] = []
    ready = threading.Event()

    def drain_stderr() -> None:  # keep reading so the server never blocks on a full pipe
        for line in proc.stderr:  # type: ignore[union-attr]
            lines.append(line)
            if '"url"' in line:
                ready.set()

    threading.Thread(target=drain_stderr, daemon=True).start()
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not ready.wait(1):
            assert proc.poll() is None, "serve exited:\n" + "".join(lines[-30:])
            assert time.monotonic() < deadline, "serve not ready:\n" + "".join(lines[-30:])
        yield URL
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the CLI deletes its Serve app and disconnects
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def test_boto3_sigv4_auth_limits_errors_metrics_and_replicas(
    ray_netns, ray_server, tiny_bundle, sample_images
):
    image = sample_images[1]
    seen = ray_netns.python_json([str(CLIENT), "check", ray_server, str(image)])
    # the seed's boto3 invoke_endpoint call, SigV4-signed, answered by a replica
    assert seen["sigv4_status"] == 200 and seen["sigv4_replica"]
    expected = Predictor.from_bundle(tiny_bundle).predict_proba([image])[0]
    np.testing.assert_allclose(seen["probabilities"], expected, atol=1e-5)
    # auth, limits and error codes are the single-process server's
    assert seen["wrong_secret"] == [403, "InvalidSignatureException"]
    assert seen["bearer"][0] == 200
    assert seen["no_auth"][:2] == [401, "MissingAuthenticationTokenException"]
    assert seen["unknown_endpoint"][:2] == [404, "ValidationError"]
    assert seen["too_large"][:2] == [413, "PayloadTooLarge"]
    assert seen["wrong_type"][:2] == [415, "UnsupportedMediaType"]
    for case in ("bearer", "no_auth", "unknown_endpoint", "too_large", "wrong_type"):
        assert seen[case][2], f"{case}: no X-Lensflow-Replica header"
    status, text, replica = seen["metrics"]
    assert status == 200 and replica
    # the answering replica's own count, read as a scraper reads it
    samples = prometheus_samples(text)
    assert samples[("lensflow_invocations_total", (("code", "200"), ("endpoint", "bundle")))] >= 1
    # concurrent load was spread over both replicas
    assert seen["load_statuses"] == [200]
    assert len(seen["load_replicas"]) >= 2, seen["load_replicas"]


def test_draining_a_node_mid_load_loses_no_request(ray_netns, ray_server, sample_images):
    """The worker node is drained (as an autoscaler or KubeRay does before removing a node)
    while 8 clients send 400 requests: Serve starts a replacement replica and stops the old
    one gracefully, so every accepted request is answered."""
    try:
        seen = ray_netns.python_json(
            [
                str(CLIENT), "drain", ray_server, ray_netns.address, ray_netns.worker_node,
                str(sample_images[0]), "400",
            ]
        )  # fmt: skip
    finally:
        ray_netns.replace_worker()  # later tests get two schedulable nodes again
    assert seen["count"] == 400
    assert seen["statuses"] == [200], seen["failures"]
    restarted = set(seen["replicas_after"]) - set(seen["replicas_before"])
    assert restarted, f"no replacement replica answered: {seen}"
    print(json.dumps(seen))
