"""`lensflow serve` configuration: one frozen object, validated when built."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from lensflow.errors import ServeError

SAGEMAKER_MAX_BODY = 6 * 1024 * 1024  # SageMaker's real-time payload limit: 6 MB
# SageMaker endpoint names: letters, digits and hyphens, up to 63, no leading/trailing hyphen.
_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


@dataclass(frozen=True)
class ServeConfig:
    endpoints: tuple[
        tuple[str, Path], ...
    ]  # (endpoint name, bundle path); the first serves /invocations
    host: str = "127.0.0.1"
    port: int = 8080
    sigv4_keys: Path | None = None  # lines of "ACCESS_KEY_ID SECRET_ACCESS_KEY"
    api_keys: Path | None = None  # one bearer token per line
    insecure: bool = False  # allow a non-loopback bind without any keys
    max_body_bytes: int = SAGEMAKER_MAX_BODY
    max_images: int = 64  # images per JSON batch request
    max_batch: int = 32  # images per model call (micro-batching)
    max_wait_ms: float = 2.0  # how long a lone request waits for company
    threads: int | None = None  # onnxruntime threads per model; default: all cores
    top_k: int = 5  # labels in verbose responses

    def __post_init__(self) -> None:
        if not self.endpoints:
            raise ServeError("give at least one bundle: lensflow serve [NAME=]BUNDLE")
        names = [n for n, _ in self.endpoints]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ServeError(f"endpoint names must be unique, {dup} repeat; use NAME=BUNDLE")
        if not 0 <= self.port <= 65535:
            raise ServeError(f"--port must be 0..65535, got {self.port}")
        for field, value in (
            ("max_body_bytes", self.max_body_bytes),
            ("max_images", self.max_images),
            ("max_batch", self.max_batch),
            ("top_k", self.top_k),
        ):
            if value < 1:
                raise ServeError(f"{field} must be >= 1, got {value}")
        if self.max_wait_ms < 0:
            raise ServeError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")

    @property
    def auth_configured(self) -> bool:
        return self.sigv4_keys is not None or self.api_keys is not None


def parse_endpoint(spec: str) -> tuple[str, Path]:
    """`NAME=BUNDLE` or `BUNDLE` (name = the bundle's directory name) -> (name, path)."""
    name, sep, path = spec.partition("=")
    if not sep:
        path = spec
        name = Path(spec.rstrip("/")).name
        for suffix in (".tar.gz", ".tgz"):
            name = name.removesuffix(suffix)
    if not _NAME.match(name):
        raise ServeError(
            f"{name!r} is not a valid endpoint name (letters, digits and hyphens, up to 63); "
            f"name it explicitly: NAME={path}"
        )
    return name, Path(path)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a hostname: assume it is reachable from elsewhere


def check_bind(config: ServeConfig) -> None:
    """Refuse to expose an unauthenticated server beyond this machine unless asked to."""
    if not is_loopback(config.host) and not config.auth_configured and not config.insecure:
        raise ServeError(
            f"refusing to serve on {config.host} without authentication: anyone who can reach it "
            "could use the model. Pass --api-keys FILE or --sigv4-keys FILE, bind to 127.0.0.1, "
            "or accept the risk with --insecure"
        )
