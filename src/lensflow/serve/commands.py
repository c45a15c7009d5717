"""CLI: `lensflow serve` — bundles behind a SageMaker-compatible HTTP API (FastAPI + uvicorn)."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def serve_cmd(
    bundles: list[str] = typer.Argument(
        ..., help="Bundles to serve, as NAME=BUNDLE or BUNDLE (name = the directory's name)."
    ),
    host: str = typer.Option("127.0.0.1", help="Address to bind; non-loopback needs keys."),
    port: int = typer.Option(8080, help="TCP port (SageMaker containers use 8080)."),
    sigv4_keys: Path | None = typer.Option(
        None, "--sigv4-keys", help="File of 'ACCESS_KEY_ID SECRET_ACCESS_KEY' lines (boto3 SigV4)."
    ),
    api_keys: Path | None = typer.Option(
        None, "--api-keys", help="File of bearer tokens, one per line."
    ),
    insecure: bool = typer.Option(
        False, "--insecure", help="Allow a non-loopback bind without any keys."
    ),
    max_body_mb: float = typer.Option(6.0, help="Largest request body in MiB (SageMaker: 6)."),
    max_batch: int = typer.Option(32, help="Images per model call when batching requests."),
    max_wait_ms: float = typer.Option(2.0, help="How long a request waits to be batched."),
    threads: int | None = typer.Option(None, help="onnxruntime threads (default: all cores)."),
    log_level: str = typer.Option("info", help="uvicorn log level (the access log is JSON)."),
    engine: str = typer.Option(
        "local", help="'local' (one uvicorn process) or 'ray' (Ray Serve replicas; [ray] extra)."
    ),
    replicas: int = typer.Option(1, help="Ray Serve replicas of the app (--engine ray)."),
    replica_cpus: float = typer.Option(
        1.0, help="CPUs each replica reserves; its onnxruntime threads default to this."
    ),
    replica_max_ongoing: int = typer.Option(
        8,
        help="Requests one replica holds at once; beyond it Ray Serve routes to other replicas "
        "(its proxy prefers replicas on its own node until they are this busy).",
    ),
    autoscaling: list[str] = typer.Option(
        [],
        "--autoscaling",
        help="Ray Serve autoscaling_config KEY=VALUE, repeatable "
        "(e.g. --autoscaling min_replicas=1 --autoscaling max_replicas=4).",
    ),
    address: str | None = typer.Option(
        None, help="Ray cluster: auto or ray://HOST:PORT (default: start a local Ray)."
    ),
    ray_proxy: str = typer.Option(
        "HeadOnly",
        help="Ray Serve proxy_location: HeadOnly (one entry point at --host:--port) or "
        "EveryNode (one per node, for a load balancer in front).",
    ),
) -> None:
    """Serve bundles over HTTP: SageMaker container and Runtime APIs, Prometheus /metrics.

    boto3's `sagemaker-runtime` client works unchanged with endpoint_url=http://HOST:PORT.
    Routes: POST /invocations and /endpoints/NAME/invocations (application/x-image, image/jpeg,
    image/png, or application/json = a list of base64 images), GET /ping, GET /metrics.
    The answer is a JSON list of probabilities in label order; send
    "Accept: application/json; verbose=true" for labels, top-k and the model version.

    With --engine ray the same app runs as N Ray Serve replicas behind Serve's proxy
    (routes, auth, limits and error codes unchanged; /metrics counts the replica that answers,
    named in every response's X-Lensflow-Replica header).

    Example: lensflow serve clothing=bundles/clothing --port 8080 --sigv4-keys keys.txt
    Example: lensflow serve bundles/clothing --engine ray --address auto --replicas 2
    """
    import logging
    import sys

    import uvicorn

    from lensflow.errors import ServeError
    from lensflow.serve.app import create_app, load_predictors
    from lensflow.serve.config import ServeConfig, check_bind, parse_endpoint

    config = ServeConfig(
        endpoints=tuple(parse_endpoint(b) for b in bundles),
        host=host,
        port=port,
        sigv4_keys=sigv4_keys,
        api_keys=api_keys,
        insecure=insecure,
        max_body_bytes=int(max_body_mb * 1024 * 1024),
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        threads=threads,
    )
    check_bind(config)
    if engine == "ray":
        from lensflow.serve.ray_engine import RayServeOptions, parse_autoscaling, serve_on_ray

        options = RayServeOptions(
            replicas=replicas,
            replica_cpus=replica_cpus,
            max_ongoing_requests=replica_max_ongoing,
            autoscaling=parse_autoscaling(autoscaling),
            address=address,
            proxy_location=ray_proxy,
        )
        serve_on_ray(config, options)
        return
    if replicas != 1 or autoscaling or address is not None:
        raise ServeError("--replicas, --autoscaling and --address need --engine ray")
    if engine != "local":
        raise ServeError(f"--engine must be 'local' or 'ray', got {engine!r}")
    predictors, load_seconds = load_predictors(config)
    app = create_app(config, predictors, load_seconds)
    # The access log is one JSON object per line on stderr (uvicorn's own access log is off).
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access = logging.getLogger("lensflow.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False
    typer.echo(
        json.dumps(
            {
                "serving": {n: str(p) for n, p in config.endpoints},
                "url": f"http://{host}:{port}",
                "auth": {"sigv4": sigv4_keys is not None, "bearer": api_keys is not None},
            }
        ),
        err=True,
    )
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)


def register(app: typer.Typer) -> None:
    """Add `serve` to `app`."""
    app.command("serve")(serve_cmd)
