"""The server for real: uvicorn on a free loopback port, boto3 with SigV4, every error code."""

from __future__ import annotations

import base64
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from lensflow.cli import app as cli_app
from lensflow.predictor import Predictor
from lensflow.serve.app import create_app
from lensflow.serve.background import BackgroundServer
from lensflow.serve.config import ServeConfig
from tests.fixtures.prometheus import prometheus_samples

ACCESS_KEY, SECRET = "AKIALENSFLOWTEST01", "s3cr3t/Key+ForSigV4Tests"
TOKEN = "bearer-token-0123456789abcdef"


@pytest.fixture(scope="module")
def server(tiny_bundle, tmp_path_factory):
    keys = tmp_path_factory.mktemp("keys")
    (keys / "sigv4.txt").write_text(f"# test keys\n{ACCESS_KEY} {SECRET}\nAKIAOTHER other-secret\n")
    (keys / "api.txt").write_text(f"{TOKEN}\n")
    config = ServeConfig(
        endpoints=(("clothing", tiny_bundle), ("second", tiny_bundle)),
        sigv4_keys=keys / "sigv4.txt",
        api_keys=keys / "api.txt",
        max_body_bytes=1024 * 1024,  # 1 MiB keeps the 413 test cheap
    )
    predictors = {name: Predictor.from_bundle(path) for name, path in config.endpoints}
    app = create_app(config, predictors, {"clothing": 0.5, "second": 0.25})
    with BackgroundServer(app) as url:
        yield url


def runtime(url, secret=SECRET, access_key=ACCESS_KEY, unsigned=False):
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    cfg = Config(
        retries={"max_attempts": 1}, **({"signature_version": UNSIGNED} if unsigned else {})
    )
    return boto3.client(
        "sagemaker-runtime",
        endpoint_url=url,
        region_name="eu-west-1",
        aws_access_key_id=access_key,
        aws_secret_access_key=secret,
        config=cfg,
    )


def bearer(**headers):
    return {"Authorization": f"Bearer {TOKEN}", **headers}


def test_ping_is_open_and_ok(server):
    url = server
    assert httpx.get(f"{url}/ping").status_code == 200


def test_boto3_invoke_endpoint_unmodified_seed_code(server, sample_images, tiny_bundle):
    url = server
    client = runtime(url)
    img = sample_images[1].read_bytes()
    # the seed's exact call and parsing
    response = client.invoke_endpoint(
        EndpointName="clothing", ContentType="application/x-image", Body=bytearray(img)
    )
    probs = json.loads(response["Body"].read())
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    predictor = Predictor.from_bundle(tiny_bundle)
    assert len(probs) == len(predictor.classes) and abs(sum(probs) - 1) < 1e-5
    expected = predictor.predict_proba([img])[0]
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    assert int(np.argmax(probs)) == int(np.argmax(expected))
    # a second named endpoint works the same way
    other = client.invoke_endpoint(EndpointName="second", ContentType="image/jpeg", Body=img)
    np.testing.assert_allclose(json.loads(other["Body"].read()), expected, atol=1e-5)


def test_sigv4_wrong_secret_unknown_key_and_unsigned(server, sample_images):
    from botocore.exceptions import ClientError

    url = server
    img = sample_images[0].read_bytes()
    cases = [
        (runtime(url, secret="wrong-secret"), 403, "InvalidSignatureException"),
        (runtime(url, access_key="AKIAUNKNOWN"), 403, "UnrecognizedClientException"),
        (runtime(url, unsigned=True), 401, "MissingAuthenticationTokenException"),
    ]
    for client, status, code in cases:
        with pytest.raises(ClientError) as err:
            client.invoke_endpoint(
                EndpointName="clothing", ContentType="application/x-image", Body=img
            )
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
        assert err.value.response["Error"]["Code"] == code


def test_bearer_keys(server, sample_images):
    url = server
    img = sample_images[0].read_bytes()
    ok = httpx.post(
        f"{url}/invocations", content=img, headers=bearer(**{"Content-Type": "image/jpeg"})
    )
    assert ok.status_code == 200 and len(ok.json()) == 5
    bad = httpx.post(
        f"{url}/invocations",
        content=img,
        headers={"Authorization": "Bearer not-the-token-at-all", "Content-Type": "image/jpeg"},
    )
    assert bad.status_code == 403
    none = httpx.post(f"{url}/invocations", content=img, headers={"Content-Type": "image/jpeg"})
    assert none.status_code == 401 and "missing credentials" in none.json()["message"]


def test_json_batch_and_verbose_accept(server, sample_images, tiny_bundle):
    url = server
    imgs = [p.read_bytes() for p in sample_images[:3]]
    body = {
        "instances": [
            base64.b64encode(imgs[0]).decode(),
            {"b64": "data:image/jpeg;base64," + base64.b64encode(imgs[1]).decode()},
        ]
    }
    r = httpx.post(f"{url}/endpoints/clothing/invocations", json=body, headers=bearer())
    assert r.status_code == 200
    rows = r.json()
    assert len(rows) == 2 and all(len(row) == 5 for row in rows)
    predictor = Predictor.from_bundle(tiny_bundle)
    np.testing.assert_allclose(rows, predictor.predict_proba(imgs[:2]), atol=1e-5)

    v = httpx.post(
        f"{url}/endpoints/clothing/invocations",
        content=imgs[2],
        headers=bearer(
            **{"Content-Type": "image/jpeg", "Accept": "application/json; verbose=true; top_k=2"}
        ),
    )
    doc = v.json()
    assert doc["labels"] == predictor.classes and doc["version"] == predictor.version
    (pred,) = doc["predictions"]
    expected = predictor.predict([imgs[2]], top_k=2)[0]
    assert pred["label"] == expected.label and len(pred["top_k"]) == 2
    # the verbose body carries the open-set fields; the plain SageMaker body above did not change
    assert pred["unknown"] == expected.unknown
    assert pred["ood_score"] == pytest.approx(expected.ood_score, rel=1e-4, abs=1e-6)
    assert v.headers["X-Lensflow-Model-Version"] == predictor.version


@pytest.mark.parametrize(
    ("path", "content_type", "body", "status", "message"),
    [
        ("/invocations", "text/plain", b"hello", 415, "unsupported content type"),
        (
            "/invocations",
            "image/jpeg",
            b"\xff\xd8\xff\xe0 not really a jpeg",
            400,
            "undecodable image",
        ),
        ("/invocations", "application/json", b"{not json", 400, "not valid JSON"),
        ("/invocations", "application/json", b'["%%%"]', 400, "not valid base64"),
        ("/invocations", "application/json", b"[]", 400, "non-empty list"),
        ("/invocations", "image/png", b"", 400, "empty request body"),
        ("/endpoints/nope/invocations", "image/jpeg", b"x", 404, "'nope' not found"),
        ("/invocations", "image/jpeg", b"\0" * (1024 * 1024 + 1), 413, "limit"),
    ],
)
def test_error_codes_with_clear_messages(server, path, content_type, body, status, message):
    url = server
    r = httpx.post(f"{url}{path}", content=body, headers=bearer(**{"Content-Type": content_type}))
    assert r.status_code == status, r.text
    assert message in r.json()["message"]
    assert r.headers["x-amzn-ErrorType"]


def test_truncated_image_is_400_and_server_keeps_working(server, sample_images):
    url = server
    img = sample_images[0].read_bytes()
    r = httpx.post(
        f"{url}/invocations",
        content=img[: len(img) // 3],
        headers=bearer(**{"Content-Type": "image/jpeg"}),
    )
    assert r.status_code == 400
    r = httpx.post(
        f"{url}/invocations", content=img, headers=bearer(**{"Content-Type": "image/jpeg"})
    )
    assert r.status_code == 200


def test_boto3_unknown_endpoint_is_404(server, sample_images):
    from botocore.exceptions import ClientError

    url = server
    with pytest.raises(ClientError) as err:
        runtime(url).invoke_endpoint(EndpointName="missing", ContentType="image/jpeg", Body=b"x")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_metrics_in_prometheus_format(server, sample_images):
    """The SageMaker CloudWatch equivalents, per endpoint, read back by prometheus_client's parser."""
    url = server
    img = sample_images[0].read_bytes()
    invoke = f"{url}/endpoints/second/invocations"
    ok = httpx.post(invoke, content=img, headers=bearer(**{"Content-Type": "image/jpeg"}))
    bad = httpx.post(invoke, content=b"x", headers=bearer(**{"Content-Type": "text/csv"}))
    assert (ok.status_code, bad.status_code) == (200, 415)
    assert httpx.get(f"{url}/metrics").status_code == 401  # auth applies to metrics too
    response = httpx.get(f"{url}/metrics", headers=bearer())
    assert response.headers["content-type"].startswith("text/plain")
    got = prometheus_samples(response.text)
    second = (("endpoint", "second"),)
    assert got["lensflow_invocations_total", (("code", "200"), *second)] >= 1
    assert got["lensflow_invocations_total", (("code", "415"), *second)] >= 1
    assert got["lensflow_http_4xx_total", second] >= 1
    assert got["lensflow_http_5xx_total", second] == 0
    latency = "lensflow_invocation_latency_seconds"
    assert got[f"{latency}_bucket", (*second, ("le", "+Inf"))] == got[f"{latency}_count", second]
    assert got[f"{latency}_count", second] >= 2
    # model latency counts only the requests that reached the model (not the 415)
    model = "lensflow_model_latency_seconds"
    assert 1 <= got[f"{model}_count", second] < got[f"{latency}_count", second]
    assert got[f"{model}_sum", second] > 0
    assert got["lensflow_model_load_seconds", (("endpoint", "clothing"),)] == 0.5
    assert got["lensflow_batch_size_count", ()] >= 1


def test_structured_access_log(server, sample_images, caplog):
    url = server
    with caplog.at_level(logging.INFO, logger="lensflow.access"):
        httpx.post(
            f"{url}/endpoints/clothing/invocations",
            content=sample_images[0].read_bytes(),
            headers=bearer(**{"Content-Type": "image/jpeg"}),
        )
        time.sleep(0.05)
    entries = [json.loads(r.getMessage()) for r in caplog.records if r.name == "lensflow.access"]
    entry = next(e for e in entries if e["path"] == "/endpoints/clothing/invocations")
    assert entry["status"] == 200 and entry["endpoint"] == "clothing" and entry["images"] == 1
    assert entry["principal"] == "bearer" and entry["ms"] > 0


def test_predict_serve_and_predictor_agree(server, tiny_bundle, sample_images):
    url = server
    path = sample_images[3]
    direct = Predictor.from_bundle(tiny_bundle).predict_proba([path])[0]
    served = httpx.post(
        f"{url}/invocations",
        content=path.read_bytes(),
        headers=bearer(**{"Content-Type": "image/jpeg"}),
    ).json()
    result = CliRunner().invoke(
        cli_app, ["predict", str(tiny_bundle), str(path), "--json", "--top-k", "5"]
    )
    assert result.exit_code == 0, result.output
    line = json.loads(result.stdout.strip().splitlines()[-1])
    cli_probs = {d["label"]: d["probability"] for d in line["top_k"]}
    classes = Predictor.from_bundle(tiny_bundle).classes
    np.testing.assert_allclose(served, direct, atol=1e-5)
    np.testing.assert_allclose([cli_probs[c] for c in classes], direct, atol=1e-5)


def test_refuses_public_bind_without_keys(tiny_bundle):
    result = CliRunner().invoke(cli_app, ["serve", str(tiny_bundle), "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "refusing to serve on 0.0.0.0 without authentication" in result.output
    bad = CliRunner().invoke(cli_app, ["serve", "bad_name!=" + str(tiny_bundle)])
    assert bad.exit_code == 2 and "not a valid endpoint name" in bad.output


@pytest.mark.slow
def test_load_20_seconds_16_clients_no_5xx(server, sample_images):
    """16 concurrent clients for 20 s (bounded by time and by 4,000 requests): no 5xx, batching on."""
    url = server
    images = [p.read_bytes() for p in sample_images]
    deadline = time.monotonic() + 20.0
    budget = iter(range(4000))

    def client(i: int) -> list[int]:
        codes = []
        with httpx.Client(timeout=30) as c:
            while time.monotonic() < deadline and next(budget, None) is not None:
                r = c.post(
                    f"{url}/endpoints/clothing/invocations",
                    content=images[i % len(images)],
                    headers=bearer(**{"Content-Type": "image/jpeg"}),
                )
                codes.append(r.status_code)
        return codes

    with ThreadPoolExecutor(16) as pool:
        codes = [c for result in pool.map(client, range(16)) for c in result]
    assert codes, "no requests completed"
    assert sum(c >= 500 for c in codes) == 0
    assert set(codes) == {200}
    # concurrent requests were micro-batched (some model calls saw more than one image)
    text = httpx.get(f"{url}/metrics", headers=bearer()).text
    got = prometheus_samples(text)
    assert got["lensflow_batch_size_sum", ()] > got["lensflow_batch_size_count", ()]


def test_an_internal_failure_is_a_json_500_and_the_worker_survives(tiny_bundle, sample_images):
    """Fault injection: a model that fails on every other call (e.g. out of memory)."""

    class Flaky(Predictor):
        calls = 0

        def classify_arrays(self, x):
            type(self).calls += 1
            if type(self).calls % 2:
                raise MemoryError("simulated allocation failure")
            return super().classify_arrays(x)

    flaky = Flaky(Predictor.from_bundle(tiny_bundle).bundle)
    app = create_app(ServeConfig(endpoints=(("flaky", tiny_bundle),)), {"flaky": flaky})
    img = sample_images[0].read_bytes()
    with BackgroundServer(app) as url:
        codes = [
            httpx.post(f"{url}/invocations", content=img, headers={"Content-Type": "image/jpeg"})
            for _ in range(4)
        ]
        assert [r.status_code for r in codes] == [500, 200, 500, 200]
        assert codes[0].json() == {
            "message": "internal server error",
            "code": "InternalFailure",
            "status": 500,
        }
        got = prometheus_samples(httpx.get(f"{url}/metrics").text)
        assert got["lensflow_http_5xx_total", (("endpoint", "flaky"),)] == 2
        assert httpx.get(f"{url}/ping").status_code == 200
