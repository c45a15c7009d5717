"""`lensflow serve --engine ray`: the same FastAPI app as N Ray Serve replicas.

Each replica builds the app of `serve/app.py` itself (`__serve_build_asgi_app__`: predictors
hold onnxruntime sessions, which cannot be pickled), so routes, SigV4 and bearer auth, body
and batch limits, error codes and the micro-batcher are the single-process server's, byte for
byte. Serve's proxy listens on --host:--port and spreads requests over the replicas; every
response names its replica in `X-Lensflow-Replica`.

/metrics is per replica: the counters are those of the replica that answered (see the
header). For cluster-wide numbers scrape Ray's own metrics endpoint on each node
(`ray_serve_*` series) or sum the replicas' series by that header.

Bundles and key files must be readable at the same absolute path on every node, and
lensflow installed there (the replica imports it).
"""

from __future__ import annotations

import ast
import dataclasses
import json
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from lensflow.config import reject_unknown
from lensflow.errors import ServeError
from lensflow.serve.config import ServeConfig

APP_NAME = "lensflow"
PROXY_LOCATIONS = ("HeadOnly", "EveryNode")


@dataclass(frozen=True)
class RayServeOptions:
    replicas: int = 1
    replica_cpus: float = 1.0  # CPUs each replica reserves (and its default onnxruntime threads)
    autoscaling: dict[str, Any] | None = None  # Ray Serve's autoscaling_config, passed through
    address: str | None = None  # "auto", "ray://HOST:PORT" or None = start a local Ray
    proxy_location: str = "HeadOnly"
    # Requests one replica holds (its micro-batches grow up to this). Ray's proxy prefers the
    # replicas on its own node until they hold this many, so it also sets when load spills over
    # to other nodes: a high value keeps a HeadOnly cluster's traffic on the head node.
    max_ongoing_requests: int = 8
    graceful_shutdown_timeout_s: float = 20.0  # a stopping replica finishes what it accepted

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ServeError(f"--replicas must be >= 1, got {self.replicas}")
        if self.replica_cpus <= 0:
            raise ServeError(f"--replica-cpus must be > 0, got {self.replica_cpus}")
        if self.max_ongoing_requests < 1:
            raise ServeError(f"--replica-max-ongoing must be >= 1, got {self.max_ongoing_requests}")
        if self.proxy_location not in PROXY_LOCATIONS:
            raise ServeError(
                f"--ray-proxy must be one of {', '.join(PROXY_LOCATIONS)}, "
                f"got {self.proxy_location!r}"
            )


def parse_autoscaling(items: list[str]) -> dict[str, Any] | None:
    """['min_replicas=1', 'max_replicas=4'] -> {'min_replicas': 1, 'max_replicas': 4},
    checked against Ray Serve's AutoscalingConfig (unknown keys get a did-you-mean)."""
    if not items:
        return None
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ServeError(f"--autoscaling takes KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            out[key.strip()] = value.strip()  # a plain word, e.g. aggregation_function=max
    autoscaling_config = _autoscaling_class()
    fields = getattr(autoscaling_config, "model_fields", None) or autoscaling_config.__fields__
    reject_unknown(out, fields, "autoscaling option")
    try:
        autoscaling_config(**out)
    except Exception as e:  # pydantic's ValidationError: report Ray's own reason
        raise ServeError(f"invalid --autoscaling: {e}".splitlines()[0]) from None
    return out


def _autoscaling_class() -> Any:
    _require_serve()
    from ray.serve.config import AutoscalingConfig

    return AutoscalingConfig


def _require_serve() -> None:
    from lensflow.raycluster import require_ray

    require_ray("lensflow serve --engine ray")
    try:
        import ray.serve  # noqa: F401
    except ImportError:
        raise ServeError(
            "lensflow serve --engine ray needs Ray Serve, which comes with the [ray] extra: "
            "pip install 'lensflow[ray]'"
        ) from None


class LensflowReplica:
    """One Ray Serve replica: loads the bundles and builds the app when it starts."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config

    def __serve_build_asgi_app__(self) -> FastAPI:
        from ray import serve

        from lensflow.serve.app import create_app, load_predictors

        replica = serve.get_replica_context().replica_id.unique_id
        predictors, load_seconds = load_predictors(self.config)
        return create_app(self.config, predictors, load_seconds, replica=replica)


def replica_config(config: ServeConfig, options: RayServeOptions) -> ServeConfig:
    """The config as replicas see it: absolute paths (a replica's working directory is Ray's)
    and onnxruntime threads matching the CPUs a replica reserves."""

    def absolute(p: Path | None) -> Path | None:
        return None if p is None else p.absolute()

    return dataclasses.replace(
        config,
        endpoints=tuple((name, path.absolute()) for name, path in config.endpoints),
        sigv4_keys=absolute(config.sigv4_keys),
        api_keys=absolute(config.api_keys),
        threads=config.threads or max(1, round(options.replica_cpus)),
    )


def build_application(config: ServeConfig, options: RayServeOptions) -> Any:
    """The Ray Serve application (a bound deployment) serving `config` as `options` say."""
    _require_serve()
    from ray import serve

    scaling: dict[str, Any] = (
        {"autoscaling_config": options.autoscaling}
        if options.autoscaling
        else {"num_replicas": options.replicas}
    )
    if (
        options.autoscaling
        and options.replicas > 1
        and "initial_replicas" not in options.autoscaling
    ):
        # --replicas then says how many start before the autoscaler takes over.
        scaling["autoscaling_config"] = {
            **options.autoscaling,
            "initial_replicas": options.replicas,
        }
    deployment = serve.deployment(
        name=APP_NAME,
        ray_actor_options={"num_cpus": options.replica_cpus},
        max_ongoing_requests=options.max_ongoing_requests,
        graceful_shutdown_timeout_s=options.graceful_shutdown_timeout_s,
        **scaling,
    )(serve.ingress()(LensflowReplica))
    return deployment.bind(replica_config(config, options))


def start(config: ServeConfig, options: RayServeOptions) -> str:
    """Deploy on the cluster (connecting first) and return the URL; does not block."""
    from lensflow.raycluster import connect

    connect(options.address, "lensflow serve --engine ray")
    from ray import serve

    serve.start(
        proxy_location=options.proxy_location,
        http_options={"host": config.host, "port": config.port},
    )
    _check_http_options(config)
    serve.run(build_application(config, options), name=APP_NAME, route_prefix="/")
    return f"http://{config.host}:{config.port}"


def _check_http_options(config: ServeConfig) -> None:
    # Serve keeps the proxy options of whoever started it first on this cluster; say so rather
    # than serve on another port than the user asked for.
    from ray.serve.context import _get_global_client

    http = _get_global_client().http_config
    if (http.host, http.port) != (config.host, config.port):
        raise ServeError(
            f"Ray Serve already runs on this cluster with its proxy on {http.host}:{http.port}; "
            f"pass --host {http.host} --port {http.port}, or `serve shutdown` it first"
        )


def serve_on_ray(config: ServeConfig, options: RayServeOptions) -> None:
    """Deploy, print where, and keep serving until Ctrl-C or SIGTERM; then remove the app."""
    url = start(config, options)  # first: it names the [ray] extra when Ray is missing
    import ray
    from ray import serve

    print(
        json.dumps(
            {
                "serving": {n: str(p) for n, p in config.endpoints},
                "url": url,
                "engine": "ray",
                "replicas": options.autoscaling or options.replicas,
                "auth": {
                    "sigv4": config.sigv4_keys is not None,
                    "bearer": config.api_keys is not None,
                },
            }
        ),
        file=sys.stderr,
        flush=True,
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            time.sleep(1)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        serve.delete(APP_NAME)
        ray.shutdown()
