"""The inference server: SageMaker container contract + SageMaker Runtime API over the Predictor.

Routes
  GET  /ping                               200 when every model is loaded (container contract)
  POST /invocations                        the first endpoint (container contract)
  POST /endpoints/{name}/invocations       SageMaker Runtime InvokeEndpoint (boto3 works as is)
  GET  /endpoints                          names, classes and versions of the loaded models
  GET  /metrics                            Prometheus (invocations, latency, model latency, 4xx/5xx,
                                           load time; serve/metrics.py)

Request bodies: `application/x-image`, `image/jpeg`, `image/png` (one image) or
`application/json` (a batch of base64 images: `["<b64>", ...]` or `{"instances": [...]}` whose
items are strings or `{"b64": "..."}`). Response: the SageMaker shape, a JSON list of
probabilities in label order (a list of such lists for a JSON batch); with
`Accept: application/json; verbose=true` (or `?verbose=true`) an object with labels, top-k and the
model version; each prediction also carries `unknown` and `ood_score` (the bundle's open-set
score, null for bundles without one), while the plain body stays the SageMaker list. Errors are JSON `{"message", "code", "status"}` with an `x-amzn-ErrorType` header,
so boto3 raises a ClientError with that code.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import socket
import time
import traceback
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from lensflow.errors import LensflowError
from lensflow.predictor import Predictor
from lensflow.serve.auth import (
    Authenticator,
    AuthError,
    SignedRequest,
    load_api_keys,
    load_sigv4_keys,
)
from lensflow.serve.batcher import MicroBatcher
from lensflow.serve.config import ServeConfig
from lensflow.serve.metrics import Metrics

IMAGE_TYPES = {"application/x-image", "image/jpeg", "image/png", "image/jpg"}
JSON_TYPE = "application/json"
REPLICA_HEADER = "X-Lensflow-Replica"
access_log = logging.getLogger("lensflow.access")
error_log = logging.getLogger("lensflow.serve")


class HTTPProblem(Exception):
    """A request the server refuses, with the status and the message the client sees."""

    def __init__(self, status: int, message: str, error_type: str = "ValidationError") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type


def problem_response(status: int, message: str, error_type: str) -> JSONResponse:
    return JSONResponse(
        {"message": message, "code": error_type, "status": status},
        status_code=status,
        headers={"x-amzn-ErrorType": error_type},
    )


# -- request parsing ------------------------------------------------------------------------------
def media_type(header: str | None) -> tuple[str, dict[str, str]]:
    """'application/json; verbose=true' -> ('application/json', {'verbose': 'true'})."""
    if not header:
        return "", {}
    main, *params = header.split(";")
    out = {}
    for p in params:
        k, _, v = p.partition("=")
        out[k.strip().lower()] = v.strip().strip('"')
    return main.strip().lower(), out


def images_from_body(content_type: str, body: bytes, max_images: int) -> tuple[list[bytes], bool]:
    """The image byte strings in a request body and whether it was a batch (JSON)."""
    if not body:
        raise HTTPProblem(400, "empty request body: send the image bytes")
    if content_type in IMAGE_TYPES:
        return [body], False
    if content_type != JSON_TYPE:
        raise HTTPProblem(
            415,
            f"unsupported content type {content_type or '(none)'!r}; use one of "
            f"{', '.join(sorted(IMAGE_TYPES))} or {JSON_TYPE} (a list of base64 images)",
            "UnsupportedMediaType",
        )
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise HTTPProblem(400, f"request body is not valid JSON: {e}") from None
    items = doc.get("instances") if isinstance(doc, dict) else doc
    if not isinstance(items, list) or not items:
        raise HTTPProblem(
            400, 'JSON body must be a non-empty list of base64 images or {"instances": [...]}'
        )
    if len(items) > max_images:
        raise HTTPProblem(400, f"{len(items)} images in one request; the limit is {max_images}")
    images = []
    for i, item in enumerate(items):
        b64 = item.get("b64") if isinstance(item, dict) else item
        if not isinstance(b64, str):
            raise HTTPProblem(400, f'instance {i} must be a base64 string or {{"b64": "..."}}')
        if b64.startswith("data:") and "," in b64:  # a browser's data URL
            b64 = b64.split(",", 1)[1]
        try:
            images.append(base64.b64decode(b64, validate=True))
        except (binascii.Error, ValueError):
            raise HTTPProblem(400, f"instance {i} is not valid base64") from None
    return images, True


def _decode(predictor: Predictor, images: list[bytes]) -> np.ndarray:
    try:
        return predictor.preprocess_images(images)
    except LensflowError as e:
        raise HTTPProblem(400, f"undecodable image: {e.message}") from None


def _verbose(accept: str | None, query: str | None) -> tuple[bool, int | None]:
    _, params = media_type(accept)
    verbose = params.get("verbose", "").lower() in ("true", "1", "yes")
    if query and query.lower() in ("true", "1", "yes"):
        verbose = True
    top_k = params.get("top_k")
    try:
        return verbose, int(top_k) if top_k else None
    except ValueError:
        raise HTTPProblem(400, f"top_k must be an integer, got {top_k!r}") from None


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing (413) anything over `limit` before and while reading it."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPProblem(
            413,
            f"request body is {int(declared):,} bytes; the limit is {limit:,}",
            "PayloadTooLarge",
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPProblem(
                413, f"request body exceeds the limit of {limit:,} bytes", "PayloadTooLarge"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def signed_request(request: Request, body: bytes) -> SignedRequest:
    headers: dict[str, list[str]] = {}
    for k, v in request.scope["headers"]:
        headers.setdefault(k.decode("latin-1").lower(), []).append(v.decode("latin-1"))
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    return SignedRequest(
        method=request.method,
        raw_path=raw_path.decode("latin-1"),
        query=request.scope.get("query_string", b"").decode("latin-1"),
        headers=headers,
        body=body,
    )


# -- the app ----------------------------------------------------------------------------------------
def create_app(
    config: ServeConfig,
    predictors: dict[str, Predictor],
    load_seconds: dict[str, float] | None = None,
    replica: str | None = None,
) -> FastAPI:
    """The FastAPI app serving `predictors` (endpoint name -> Predictor) as `config` says.

    Every response carries `X-Lensflow-Replica: <replica>` (default: HOST-PID), so a client
    behind a load balancer or Ray Serve can see which copy of the app answered.
    """
    if not predictors:
        raise LensflowError("create_app needs at least one predictor")
    replica = replica or f"{socket.gethostname()}-{os.getpid()}"
    auth = Authenticator(
        sigv4_keys=load_sigv4_keys(config.sigv4_keys) if config.sigv4_keys else {},
        api_keys=load_api_keys(config.api_keys) if config.api_keys else [],
    )
    metrics = Metrics(predictors)
    for name, seconds in (load_seconds or {}).items():
        metrics.set_model_load(name, seconds)
    batchers = {
        name: MicroBatcher(p, config.max_batch, config.max_wait_ms, metrics.record_batch)
        for name, p in predictors.items()
    }
    default = next(iter(predictors))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for b in batchers.values():
            await b.start()
        try:
            yield
        finally:
            for b in batchers.values():
                await b.stop()

    app = FastAPI(
        title="lensflow", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.metrics = metrics
    app.state.predictors = predictors
    app.state.config = config

    @app.middleware("http")
    async def observe(request: Request, call_next: Any) -> Response:
        """Access log, metrics, and a JSON 500 for anything unexpected: the worker never dies."""
        started = time.perf_counter()
        request.state.endpoint = None
        request.state.images = 0
        request.state.principal = None
        try:
            response = await call_next(request)
        except Exception:
            error_log.error(
                "unhandled error on %s %s\n%s",
                request.method,
                request.url.path,
                traceback.format_exc(),
            )
            response = problem_response(500, "internal server error", "InternalFailure")
        response.headers[REPLICA_HEADER] = replica
        seconds = time.perf_counter() - started
        endpoint = request.state.endpoint
        if endpoint is not None:
            metrics.record(endpoint, response.status_code, seconds)
        access_log.info(
            json.dumps(
                {
                    "ts": round(time.time(), 3),
                    "request_id": request.headers.get("x-amzn-requestid") or uuid.uuid4().hex[:16],
                    "client": request.client.host if request.client else None,
                    "method": request.method,
                    "path": request.url.path,
                    "status": response.status_code,
                    "ms": round(seconds * 1000, 2),
                    "endpoint": endpoint,
                    "images": request.state.images,
                    "bytes_in": int(request.headers.get("content-length") or 0),
                    "principal": request.state.principal,
                    "replica": replica,
                }
            )
        )
        return response

    @app.get("/ping")
    async def ping() -> Response:
        ready = all(b._task is not None and not b._task.done() for b in batchers.values())
        return Response(status_code=200 if ready else 503)

    @app.get("/endpoints")
    async def endpoints(request: Request) -> Response:
        try:
            _authenticate(request, b"")
        except HTTPProblem as e:
            return problem_response(e.status, e.message, e.error_type)
        return JSONResponse(
            [
                {
                    "name": n,
                    "classes": p.classes,
                    "version": p.version,
                    "precision": p.card.get("precision"),
                }
                for n, p in predictors.items()
            ]
        )

    @app.get("/metrics")
    async def get_metrics(request: Request) -> Response:
        try:
            _authenticate(request, b"")
        except HTTPProblem as e:
            return problem_response(e.status, e.message, e.error_type)
        body, content_type = metrics.render(request.headers.get("accept"))
        return Response(body, media_type=content_type)

    @app.post("/invocations")
    async def invocations(request: Request) -> Response:
        return await _invoke(request, default)

    @app.post("/endpoints/{name}/invocations")
    async def runtime_invoke(request: Request, name: str) -> Response:
        return await _invoke(request, name)

    def _authenticate(request: Request, body: bytes) -> None:
        try:
            request.state.principal = auth.check(signed_request(request, body))
        except AuthError as e:
            raise HTTPProblem(e.status, e.message, e.error_type) from None

    async def _invoke(request: Request, name: str) -> Response:
        request.state.endpoint = name if name in predictors else "(unknown)"
        try:
            body = await read_body(request, config.max_body_bytes)
            _authenticate(request, body)
            if name not in predictors:
                raise HTTPProblem(
                    404,
                    f"endpoint {name!r} not found; serving: {', '.join(predictors)}",
                    "ValidationError",
                )
            predictor = predictors[name]
            ctype, _ = media_type(request.headers.get("content-type"))
            verbose, top_k = _verbose(
                request.headers.get("accept"), request.query_params.get("verbose")
            )
            images, batch = images_from_body(ctype, body, config.max_images)
            request.state.images = len(images)
            started = time.perf_counter()
            x = await run_in_threadpool(_decode, predictor, images)
            probs, ood_scores = await batchers[name].submit(x)
            metrics.record_model(name, time.perf_counter() - started)
        except HTTPProblem as e:
            return problem_response(e.status, e.message, e.error_type)
        headers = {
            "X-Amzn-Invoked-Production-Variant": name,
            "X-Lensflow-Model-Version": predictor.version,
        }
        if verbose:
            preds = predictor.decode(probs, top_k or config.top_k, ood_scores)
            doc: Any = {
                "endpoint": name,
                "model": predictor.card.get("model"),
                "version": predictor.version,
                "precision": predictor.card.get("precision"),
                "labels": predictor.classes,
                "predictions": [
                    {**p.to_dict(), "probabilities": r.tolist()}
                    for p, r in zip(preds, probs, strict=True)
                ],
            }
        else:
            doc = probs.tolist() if batch else probs[0].tolist()
        return Response(json.dumps(doc), media_type=JSON_TYPE, headers=headers)

    return app


def load_predictors(config: ServeConfig) -> tuple[dict[str, Predictor], dict[str, float]]:
    """Load every endpoint's bundle: (name -> Predictor, name -> seconds it took)."""
    predictors, load_seconds = {}, {}
    for name, path in config.endpoints:
        started = time.perf_counter()
        predictors[name] = Predictor.from_bundle(path, threads=config.threads)
        load_seconds[name] = time.perf_counter() - started
    return predictors, load_seconds
