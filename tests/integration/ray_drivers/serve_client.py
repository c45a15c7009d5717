"""Client side of the Ray Serve tests; runs INSIDE the test's network namespace.

The served app listens on 127.0.0.1 of the namespace, so the pytest process (outside it) cannot
reach it: it runs this script with `ip netns exec` and asserts on the one JSON line printed.

    serve_client.py wait URL
    serve_client.py check URL IMAGE
    serve_client.py drain URL RAY_ADDRESS NODE_ID IMAGE REQUESTS
"""

from __future__ import annotations

import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

ACCESS_KEY, SECRET = "AKIALENSFLOWTEST01", "s3cr3t/Key+ForSigV4Tests"
TOKEN = "bearer-token-0123456789abcdef"
REPLICA = "x-lensflow-replica"


def runtime(url: str, secret: str = SECRET) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "sagemaker-runtime",
        endpoint_url=url,
        region_name="eu-west-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}, max_pool_connections=16),
    )


def invoke(client: Any, img: bytes, endpoint: str = "bundle") -> tuple[int, str, list[float]]:
    """The seed's call; (status, replica, probabilities)."""
    r = client.invoke_endpoint(EndpointName=endpoint, ContentType="application/x-image", Body=img)
    meta = r["ResponseMetadata"]
    return (
        meta["HTTPStatusCode"],
        meta["HTTPHeaders"].get(REPLICA, ""),
        json.loads(r["Body"].read()),
    )


def wait(url: str, timeout: float = 300.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ping", timeout=5).status_code == 200:
                return {"ready": True}
        except httpx.HTTPError:
            pass
        time.sleep(1)
    return {"ready": False}


def check(url: str, image: str) -> dict[str, Any]:
    from botocore.exceptions import ClientError

    img = Path(image).read_bytes()
    client = runtime(url)
    out: dict[str, Any] = {}
    out["sigv4_status"], out["sigv4_replica"], out["probabilities"] = invoke(client, img)
    try:
        runtime(url, secret="wrong-secret").invoke_endpoint(
            EndpointName="bundle", ContentType="application/x-image", Body=img
        )
    except ClientError as e:
        out["wrong_secret"] = [
            e.response["ResponseMetadata"]["HTTPStatusCode"],
            e.response["Error"]["Code"],
        ]
    bearer = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "image/jpeg"}
    cases = {
        "bearer": ("/invocations", img, bearer),
        "no_auth": ("/invocations", img, {"Content-Type": "image/jpeg"}),
        "unknown_endpoint": ("/endpoints/nope/invocations", img, bearer),
        "too_large": ("/invocations", b"\0" * (6 * 1024 * 1024 + 1), bearer),
        "wrong_type": ("/invocations", b"hello", {**bearer, "Content-Type": "text/plain"}),
    }
    for name, (path, body, headers) in cases.items():
        r = httpx.post(f"{url}{path}", content=body, headers=headers, timeout=60)
        out[name] = [r.status_code, r.headers.get("x-amzn-ErrorType"), r.headers.get(REPLICA)]
    metrics = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    out["metrics"] = [metrics.status_code, metrics.text, metrics.headers.get(REPLICA)]
    # Concurrent SigV4 load: more requests in flight than one replica takes.
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda _: invoke(client, img), range(96)))
    out["load_statuses"] = sorted({s for s, _, _ in results})
    out["load_replicas"] = sorted({r for _, r, _ in results})
    return out


def drain(url: str, address: str, node_id: str, image: str, requests: int) -> dict[str, Any]:
    """Load from 8 threads; after 1/4 of it, drain NODE_ID as an autoscaler or KubeRay does
    before removing a node: Serve moves its replicas elsewhere and stops them gracefully."""
    img = Path(image).read_bytes()
    client = runtime(url)
    results: list[tuple[float, int, str]] = []
    lock = threading.Lock()
    drained_at: list[float] = []

    def one(i: int) -> None:
        try:
            status, replica, _ = invoke(client, img)
        except Exception as e:  # a lost request: any failure counts
            status, replica = (
                getattr(e, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode", -1),
                repr(e)[:200],
            )
        with lock:
            results.append((time.monotonic(), status, replica))
            if len(results) == requests // 4 and not drained_at:
                drained_at.append(time.monotonic())
                threading.Thread(target=_drain_node, args=(address, node_id), daemon=True).start()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(requests)))
    cut = drained_at[0] if drained_at else float("inf")
    return {
        "statuses": sorted({s for _, s, _ in results}),
        "failures": [r for _, s, r in results if s != 200][:5],
        "count": len(results),
        "replicas_before": sorted({r for t, _, r in results if t < cut}),
        "replicas_after": sorted({r for t, _, r in results if t > cut}),
        "replicas_last_quarter": sorted({r for _, _, r in sorted(results)[-requests // 4 :]}),
    }


def _drain_node(address: str, node_id: str) -> None:
    import ray
    from ray.core.generated import autoscaler_pb2

    gcs = ray._raylet.GcsClient(address=address)
    deadline_ms = int(time.time() * 1000) + 120_000
    accepted, message = gcs.drain_node(
        node_id,
        autoscaler_pb2.DrainNodeReason.Value("DRAIN_NODE_REASON_PREEMPTION"),
        "lensflow test: node going away",
        deadline_ms,
    )
    if not accepted:
        print(f"drain rejected: {message}", file=sys.stderr)


def main() -> None:
    mode, url, *rest = sys.argv[1:]
    if mode == "wait":
        result = wait(url)
    elif mode == "check":
        result = check(url, rest[0])
    else:
        result = drain(url, rest[0], rest[1], rest[2], int(rest[3]))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
