"""The Studio server: REST API (OpenAPI at /docs) and the web UI, one FastAPI app.

`create_app(config)` builds it; `lensflow studio` runs it with uvicorn. Every action calls the
same stage functions the CLI uses: uploads are validated by the dataset importer, training jobs
run import -> split -> train -> export -> evaluate (studio/jobs.py), predictions use the
`Predictor` on the exported bundle.
"""

from __future__ import annotations

import asyncio
import csv
import hmac
import io
import json
import secrets
import shutil
import threading
import zipfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route

from lensflow.errors import StudioError
from lensflow.serve.config import is_loopback
from lensflow.studio import pages
from lensflow.studio.jobs import MODES, JobWorker, check_trainable
from lensflow.studio.store import BUSY, Conflict, Store
from lensflow.studio.uploads import (
    CATEGORY_PATTERN,
    Limits,
    Uploader,
    check_categories,
    check_category_name,
)

STATIC = Path(__file__).parent / "static"
SESSION_COOKIE = "lensflow_studio"


@dataclass(frozen=True)
class StudioConfig:
    data_dir: Path = Path("studio-data")  # SQLite state + uploaded images + jobs
    host: str = "127.0.0.1"  # loopback by default; anything else needs api_keys
    port: int = 8000
    api_keys: tuple[str, ...] = ()  # bearer keys for the API (and the UI login)
    limits: Limits = field(default_factory=Limits)
    start_worker: bool = True  # run training jobs (tests of the API alone may turn it off)


class NotFound(StudioError):
    status = 404


def check_security(config: StudioConfig) -> None:
    if not is_loopback(config.host) and not config.api_keys:
        raise StudioError(
            f"--host {config.host} exposes Studio beyond this machine: pass --api-keys FILE "
            "(one secret key per line) so the API needs a bearer key and the UI a login"
        )


def read_api_keys(path: Path) -> tuple[str, ...]:
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise StudioError(f"cannot read --api-keys {path}: {e.strerror or e}") from e
    keys = tuple(k.strip() for k in lines if k.strip() and not k.strip().startswith("#"))
    if not keys:
        raise StudioError(f"--api-keys {path} holds no keys (one per line)")
    if any(len(k) < 16 for k in keys):
        raise StudioError(f"--api-keys {path}: use keys of at least 16 characters")
    return keys


# -- the API's documents ------------------------------------------------------------------------
# Naming rules are published as schema patterns but checked by the server's own code (same
# expression), so a bad name gets a 400 that says the rule instead of a generic 422.
CATEGORY_NAME = {
    "type": "string",
    "pattern": CATEGORY_PATTERN,
    "description": "1-64 ASCII letters, digits, '-', '_', '.', '+'; a letter or digit first, "
    "no '.' or '_' last; not a split name (train, val, test, ...)",
}


class CreateModel(BaseModel):
    name: str = Field(
        ..., min_length=1, max_length=100, examples=["socks"], json_schema_extra={"pattern": r"\S"}
    )
    categories: list[str] = Field(
        default_factory=list,
        examples=[["left", "right"]],
        description="Names are unique, also ignoring case (a repeat is a 409).",
        json_schema_extra={"items": CATEGORY_NAME, "uniqueItems": True},
    )


class AddCategory(BaseModel):
    name: str = Field(..., examples=["striped"], json_schema_extra=CATEGORY_NAME)


class TrainRequest(BaseModel):
    mode: str = Field("quick", examples=["quick"], json_schema_extra={"enum": list(MODES)})
    time_budget: float | None = Field(None, gt=0, description="seconds (mode auto)")


class Problem(BaseModel):
    """Every error answer (except FastAPI's own 422): what was wrong and how to fix it."""

    detail: str


ERRORS = {
    400: "The request is malformed or a value breaks a rule; `detail` names the rule.",
    401: "Missing or wrong API key: send 'Authorization: Bearer KEY'.",
    404: "No such model, job or image.",
    409: "Not possible in the model's current state (training, not trained yet, too few "
    "images), or a category name repeats another one.",
    411: "An upload without Content-Length (chunked bodies are refused).",
    413: "The request is larger than the server's limit.",
}
BODY_ERRORS = (400, 411, 413)
BINARY = {"type": "string", "format": "binary"}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {c: {"model": Problem, "description": ERRORS[c]} for c in sorted(codes)}


def content(media_types: dict[str, dict[str, Any]], description: str) -> dict[int | str, Any]:
    """A 200 answer that is a file, not JSON."""
    return {200: {"description": description, "content": media_types}}


def image_body(limits: Limits, *, urls: bool) -> dict[str, Any]:
    """The request body of an upload or a prediction (read by hand, so described by hand)."""
    files = {
        "type": "object",
        "required": ["files"],
        "properties": {"files": {"type": "array", "items": BINARY, "maxItems": limits.max_files}},
    }
    media: dict[str, Any] = {
        "multipart/form-data": {"schema": files},
        "image/*": {"schema": BINARY},
    }
    if urls:
        media["application/octet-stream"] = {"schema": BINARY}
        media["application/json"] = {
            "schema": {
                "type": "object",
                "required": ["urls"],
                "properties": {
                    # any items: one that is not a fetchable image URL is listed as rejected
                    "urls": {"type": "array", "items": {}, "maxItems": limits.max_files},
                    "category": {"type": "string"},
                },
            }
        }
    return {"requestBody": {"required": True, "content": media}}


def links(parameter: str, source: str, *operations: str) -> dict[str, Any]:
    """OpenAPI links: where an answer's id goes next (clients and schemathesis follow them)."""
    return {
        "links": {
            op: {"operationId": op, "parameters": {parameter: f"$response.body#/{source}"}}
            for op in operations
        }
    }


def allowed_methods(app: FastAPI, scope: dict[str, Any]) -> list[str]:
    """Every method some route serves at this path (Starlette's 405 names only one route's)."""
    methods: set[str] = set()
    for route in app.router.routes:
        if isinstance(route, Route) and route.methods and route.matches(scope)[0] != Match.NONE:
            methods |= route.methods
    return sorted(methods)


# -- views of the state --------------------------------------------------------------------------
def model_view(store: Store, model_id: str) -> dict[str, Any]:
    model = store.get_model(model_id)
    counts = store.counts(model_id)
    job = store.get_job(model["job_id"]) if model["job_id"] else None
    state = model["state"]
    if state in ("created", "has_images"):  # derived from the image count
        state = "has_images" if sum(counts.values()) else "created"
    return {
        "id": model["id"],
        "name": model["name"],
        "state": state,
        "error": model["error"],
        "categories": [{"name": c, "count": counts.get(c, 0)} for c in model["categories"]],
        "images": sum(counts.values()),
        "job": job_view(job) if job else None,
        "metrics": short_metrics(ready_job(store, model_id)),
        "created": model["created"],
        "updated": model["updated"],
    }


def job_view(job: dict[str, Any]) -> dict[str, Any]:
    return {
        k: job[k]
        for k in ("id", "state", "mode", "progress", "error", "restarts", "created", "finished")
    }


def ready_job(store: Store, model_id: str) -> dict[str, Any] | None:
    """The newest finished job: its bundle answers predictions while a retrain runs."""
    with store.connect() as db:
        row = db.execute(
            "SELECT id FROM jobs WHERE model_id = ? AND state = 'done' "
            "ORDER BY finished DESC, rowid DESC LIMIT 1",
            (model_id,),
        ).fetchone()
    return store.get_job(row[0]) if row else None


def short_metrics(job: dict[str, Any] | None) -> dict[str, Any] | None:
    if job is None or not job["metrics"]:
        return None
    m = job["metrics"]
    return {"accuracy": m.get("accuracy"), "n": m.get("n"), "loss": m.get("loss")}


# -- the app -----------------------------------------------------------------------------------
def create_app(config: StudioConfig) -> FastAPI:
    check_security(config)
    if not is_loopback(config.host):
        # Anyone with a key could otherwise make this machine fetch from its own network.
        config = replace(config, limits=replace(config.limits, public_urls_only=True))
    store = Store(config.data_dir)
    worker = JobWorker(store)
    sessions: set[str] = set()
    predictors: dict[str, Any] = {}
    predictors_lock = threading.Lock()
    upload_lock = threading.Lock()  # one upload at a time: de-dup and limits stay exact

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if config.start_worker:
            worker.start()
        yield
        if config.start_worker:
            await asyncio.to_thread(worker.stop)

    # FastAPIOffline serves the Swagger UI assets from the package: /docs works with no internet.
    app = FastAPIOffline(
        title="lensflow Studio",
        description="Make an image classifier from the browser: create a model, upload photos "
        "per category, train, test, download the bundle.",
        lifespan=lifespan,
        generate_unique_id_function=lambda route: route.name,  # operationId = function name
    )
    app.state.store = store
    app.state.worker = worker
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    # -- errors and security -------------------------------------------------------------------
    @app.exception_handler(StudioError)
    async def _studio_error(request: Request, exc: StudioError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=getattr(exc, "status", 400))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 405:
            allow = ", ".join(allowed_methods(app, request.scope))
            exc.headers = {**(exc.headers or {}), "Allow": allow}
        return await http_exception_handler(request, exc)

    auth = (401,) if config.api_keys else ()

    def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
        return error_responses(*codes, *auth)

    def authorised(request: Request) -> bool:
        if not config.api_keys:
            return True
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            key = header[7:].strip()
            if any(hmac.compare_digest(key, k) for k in config.api_keys):
                return True
        cookie = request.cookies.get(SESSION_COOKIE, "")
        return any(hmac.compare_digest(cookie, s) for s in list(sessions))

    @app.middleware("http")
    async def _guard(request: Request, call_next: Any) -> Response:
        path = request.url.path
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > config.limits.max_request_bytes:
            return JSONResponse(
                {
                    "detail": f"request too large: {int(length):,} bytes > "
                    f"{config.limits.max_request_bytes:,}"
                },
                status_code=413,
            )
        chunked = "chunked" in request.headers.get("transfer-encoding", "").lower()
        if request.method == "POST" and chunked and not length:
            # Without a length the request-size limit cannot be checked before reading.
            return JSONResponse(
                {"detail": "send a Content-Length with uploads (chunked bodies are refused)"},
                status_code=411,
            )
        open_paths = path in ("/login", "/api/health") or path.startswith("/static/")
        if not open_paths and not authorised(request):
            if path.startswith("/api/") or path in ("/openapi.json",):
                return JSONResponse(
                    {"detail": "missing or wrong API key: send 'Authorization: Bearer KEY'"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
            return RedirectResponse("/login", status_code=303)
        return await call_next(request)

    def model_or_404(model_id: str) -> dict[str, Any]:
        try:
            return store.get_model(model_id)
        except StudioError as e:
            raise NotFound(e.message) from None

    # -- API: models -----------------------------------------------------------------------------
    @app.get("/api/health")
    def health() -> dict[str, Any]:
        return {"ok": True}

    model_links = links(
        "model_id", "id", "get_model", "delete_model", "add_category", "upload_images",
        "list_images", "train", "predict", "report", "bundle",
    )  # fmt: skip

    @app.post(
        "/api/models",
        status_code=201,
        responses={
            201: {"description": "The new model", **model_links},
            **errors(*BODY_ERRORS, 409),
        },
    )
    def create_model(body: CreateModel) -> dict[str, Any]:
        """Create a model: `{"name": "socks", "categories": ["left", "right"]}`."""
        if not body.name.strip():
            raise StudioError("the model name is blank: give it a name, e.g. 'socks'")
        model_id = store.create_model(body.name.strip(), check_categories(body.categories))
        return model_view(store, model_id)

    @app.get("/api/models", responses=errors())
    def list_models() -> dict[str, Any]:
        return {"models": [model_view(store, i) for i in store.list_model_ids()]}

    @app.get("/api/models/{model_id}", responses=errors(404))
    def get_model(model_id: str) -> dict[str, Any]:
        """State (created, has_images, queued, training, ready, error), counts, progress."""
        model_or_404(model_id)
        return model_view(store, model_id)

    @app.delete("/api/models/{model_id}", responses=errors(404, 409))
    def delete_model(model_id: str) -> dict[str, Any]:
        model = model_or_404(model_id)
        if model["state"] in BUSY:
            raise Conflict(f"model {model_id} is {model['state']}; wait until training ends")
        store.delete_model(model_id)
        with predictors_lock:  # drop its loaded bundles
            for job_id in [j for j in predictors if j in _job_ids(store, model_id)]:
                del predictors[job_id]
        shutil.rmtree(store.model_dir(model_id), ignore_errors=True)
        return {"deleted": model_id}

    @app.post(
        "/api/models/{model_id}/categories",
        status_code=201,
        responses=errors(*BODY_ERRORS, 404, 409),
    )
    def add_category(model_id: str, body: AddCategory) -> dict[str, Any]:
        model = model_or_404(model_id)
        name = check_category_name(body.name)
        store.set_categories(model_id, check_categories([*model["categories"], name]))
        return model_view(store, model_id)

    # -- API: images -----------------------------------------------------------------------------
    @app.post(
        "/api/models/{model_id}/images",
        responses=errors(*BODY_ERRORS, 404, 409),
        openapi_extra=image_body(config.limits, urls=True),
    )
    async def upload_images(
        model_id: str, request: Request, category: str | None = None
    ) -> dict[str, Any]:
        """Add photos to a category: multipart `files` (images or zips of class folders), a raw
        image body (Content-Type image/*), or JSON `{"urls": [...]}`. Each file is validated by
        the dataset importer; the answer lists what was accepted and what was rejected and why.
        """
        model = model_or_404(model_id)
        if model["state"] in BUSY:
            raise Conflict(f"model {model_id} is {model['state']}; add photos after training")
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        uploader = Uploader(store, model, config.limits)
        if ctype == "application/json":
            try:
                body = await request.json()
            except ValueError as e:
                raise StudioError(f"invalid JSON body: {e}") from None
            urls = body.get("urls") if isinstance(body, dict) else None
            if not isinstance(urls, list):
                raise StudioError('a JSON upload is {"urls": ["https://...", ...]}')
            if len(urls) > config.limits.max_files:
                raise StudioError(f"{len(urls)} URLs; send at most {config.limits.max_files}")
            category = body.get("category", category)
            if category is not None and not isinstance(category, str):
                raise StudioError(f"category must be a name (a string), not {category!r}")
            await asyncio.to_thread(_locked, upload_lock, uploader.add_urls, urls, category)
        elif ctype == "multipart/form-data":
            form = await request.form(max_files=config.limits.max_files)
            files = [
                v for v in form.multi_items() if hasattr(v[1], "filename") and v[1] is not None
            ]
            if not files:
                raise StudioError("no files in the form: send them as multipart field 'files'")
            for _, upload in files:
                name = upload.filename or "upload"
                await asyncio.to_thread(
                    _locked, upload_lock, uploader.add_file, name, upload.file, category
                )
        elif ctype.startswith("image/") or ctype == "application/octet-stream":
            data = await _read_limited(request, config.limits.max_file_bytes)
            name = request.query_params.get("filename") or "upload"
            await asyncio.to_thread(
                _locked, upload_lock, uploader.add_file, name, io.BytesIO(data), category
            )
        else:
            raise StudioError(
                f"unsupported Content-Type {ctype or 'none'!r}: send multipart/form-data files, "
                'an image body, or JSON {"urls": [...]}'
            )
        return {**uploader.result.to_dict(), "model": model_view(store, model_id)}

    @app.get("/api/models/{model_id}/images", responses=errors(404))
    def list_images(model_id: str) -> dict[str, Any]:
        model_or_404(model_id)
        keys = ("id", "category", "width", "height", "source", "created")
        return {"images": [{k: im[k] for k in keys} for im in store.images(model_id)]}

    @app.get(
        "/api/models/{model_id}/images/{image_id}",
        response_class=FileResponse,
        responses={**content({"image/*": {"schema": BINARY}}, "The photo"), **errors(404)},
    )
    def image_file(model_id: str, image_id: int) -> FileResponse:
        model_or_404(model_id)
        try:
            image = store.get_image(model_id, image_id)
        except StudioError as e:
            raise NotFound(e.message) from None
        return FileResponse(store.model_dir(model_id) / image["path"])

    # -- API: training ---------------------------------------------------------------------------
    @app.post(
        "/api/models/{model_id}/train",
        status_code=202,
        responses={
            202: {"description": "The queued job", **links("job_id", "job/id", "get_job")},
            **errors(*BODY_ERRORS, 404, 409),
        },
    )
    def train(model_id: str, body: TrainRequest | None = None) -> dict[str, Any]:
        """Queue a training job (`{"mode": "quick"}`); jobs run one at a time."""
        body = body or TrainRequest()
        model = model_or_404(model_id)
        if body.mode not in MODES:
            raise StudioError(f"mode must be one of {', '.join(MODES)}, not {body.mode!r}")
        if model["state"] in BUSY:
            raise Conflict(f"model {model_id} is already {model['state']}")
        check_trainable(store, model)
        job_id = store.create_job(model_id, body.mode, body.time_budget)
        store.set_state(model_id, "queued", job_id=job_id)
        worker.wake.set()
        return {"job": job_view(store.get_job(job_id)), "model": model_view(store, model_id)}

    @app.get("/api/jobs/{job_id}", responses=errors(404))
    def get_job(job_id: str) -> dict[str, Any]:
        try:
            return job_view(store.get_job(job_id))
        except StudioError as e:
            raise NotFound(e.message) from None

    @app.get(
        "/api/models/{model_id}/events",
        response_class=StreamingResponse,
        responses={
            **content({"text/event-stream": {"schema": {"type": "string"}}}, "Model updates"),
            **errors(404),
        },
    )
    async def events(model_id: str, request: Request) -> StreamingResponse:
        """Server-Sent Events: the model (state, progress) whenever it changes, until it settles."""
        model_or_404(model_id)

        async def stream() -> AsyncIterator[str]:
            last = None
            while not await request.is_disconnected():
                try:
                    view = await asyncio.to_thread(model_view, store, model_id)
                except StudioError:
                    yield "event: deleted\ndata: {}\n\n"
                    return
                text = json.dumps(view)
                if text != last:
                    yield f"data: {text}\n\n"
                    last = text
                if view["state"] not in BUSY:
                    return
                await asyncio.sleep(0.5)

        return StreamingResponse(stream(), media_type="text/event-stream")

    # -- API: using the model --------------------------------------------------------------------
    def predictor_for(model_id: str) -> Any:
        model_or_404(model_id)
        job = ready_job(store, model_id)
        if job is None:
            raise Conflict(
                f"model {model_id} is not trained yet; POST /api/models/{model_id}/train"
            )
        with predictors_lock:
            if job["id"] not in predictors:
                from lensflow.predictor import Predictor

                bundle = store.job_dir(model_id, job["id"]) / "bundle"
                predictors[job["id"]] = Predictor.from_bundle(bundle, threads=2)
            return predictors[job["id"]]

    @app.post(
        "/api/models/{model_id}/predict",
        responses=errors(*BODY_ERRORS, 404, 409),
        openapi_extra=image_body(config.limits, urls=False),
    )
    async def predict(
        model_id: str, request: Request, top_k: int = Query(3, ge=1, le=100)
    ) -> dict[str, Any]:
        """Classify an image body (image/*) or multipart `files`: labels and probabilities."""
        predictor = predictor_for(model_id)
        images = await _request_images(request, config.limits)
        from lensflow.errors import LensflowError

        out = []
        for name, data in images:
            try:
                pred = (await asyncio.to_thread(predictor.predict, [data], top_k))[0]
            except LensflowError as e:
                if len(images) == 1:  # the one image sent is unusable: say so as an error
                    raise StudioError(f"cannot classify {name}: {e.message}") from None
                out.append({"name": name, "error": e.message})
                continue
            out.append({"name": name, **pred.to_dict()})
        return {"predictions": out}

    def report_dir(model_id: str) -> tuple[Path, dict[str, Any]]:
        model_or_404(model_id)
        job = ready_job(store, model_id)
        if job is None:
            raise Conflict(f"model {model_id} has no evaluation yet: train it first")
        return store.job_dir(model_id, job["id"]), job

    @app.get("/api/models/{model_id}/report", responses=errors(404, 409))
    def report(model_id: str, worst: int = Query(12, ge=0, le=1000)) -> dict[str, Any]:
        """The evaluation of the latest trained version: metrics, confusion matrix, mistakes."""
        job_dir, job = report_dir(model_id)
        metrics = json.loads((job_dir / "report" / "metrics.json").read_text())
        return {
            "job_id": job["id"],
            "metrics": metrics,
            "worst_mistakes": worst_mistakes(job_dir, worst),
            "report_html": f"/api/models/{model_id}/report.html",
        }

    @app.get(
        "/api/models/{model_id}/report.html",
        response_class=FileResponse,
        responses={
            **content({"text/html": {"schema": {"type": "string"}}}, "The evaluation report"),
            **errors(404, 409),
        },
    )
    def report_html(model_id: str) -> FileResponse:
        job_dir, _ = report_dir(model_id)
        return FileResponse(job_dir / "report" / "report.html", media_type="text/html")

    @app.get(
        "/api/models/{model_id}/report/images/{record_id}",
        response_class=FileResponse,
        responses={**content({"image/*": {"schema": BINARY}}, "The photo"), **errors(404, 409)},
    )
    def report_image(model_id: str, record_id: str) -> FileResponse:
        """An evaluated photo, looked up by its dataset id (never by a path from the request)."""
        from lensflow.data import load_dataset

        job_dir, _ = report_dir(model_id)
        for record in load_dataset(job_dir / "dataset").records:
            if record.id == record_id:
                return FileResponse(record.path)
        raise NotFound(f"no evaluated image {record_id!r}")

    @app.get(
        "/api/models/{model_id}/bundle",
        response_class=FileResponse,
        responses={
            **content({"application/zip": {"schema": BINARY}}, "The bundle as a zip"),
            **errors(404, 409),
        },
    )
    def bundle(model_id: str) -> FileResponse:
        """The exported bundle as a zip, for `lensflow serve` / `lensflow live` / `predict`."""
        model = model_or_404(model_id)
        job_dir, _ = report_dir(model_id)
        archive = job_dir / "bundle.zip"
        if not archive.is_file():
            zip_dir(job_dir / "bundle", archive)
        name = f"{_slug(model['name'])}-bundle.zip"
        return FileResponse(archive, media_type="application/zip", filename=name)

    # -- UI --------------------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def home() -> str:
        return pages.home([model_view(store, i) for i in store.list_model_ids()])

    @app.get("/models/{model_id}", response_class=HTMLResponse, include_in_schema=False)
    def model_page(model_id: str) -> str:
        model_or_404(model_id)
        return pages.model_page(model_view(store, model_id))

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_form(error: str = "") -> str:
        return pages.login(bool(error))

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = await request.form()
        key = str(form.get("key", ""))
        if not config.api_keys or any(hmac.compare_digest(key, k) for k in config.api_keys):
            token = secrets.token_urlsafe(32)
            sessions.add(token)
            response = RedirectResponse("/", status_code=303)
            response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict")
            return response
        return RedirectResponse("/login?error=1", status_code=303)

    return app


# -- helpers -----------------------------------------------------------------------------------
def _job_ids(store: Store, model_id: str) -> set[str]:
    return {p.name for p in (store.model_dir(model_id) / "jobs").glob("*")}


def _locked(lock: threading.Lock, fn: Any, *args: Any) -> Any:
    with lock:
        return fn(*args)


async def _read_limited(request: Request, limit: int) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise StudioError(f"image too large: more than {limit:,} bytes")
    return bytes(body)


async def _request_images(request: Request, limits: Limits) -> list[tuple[str, bytes]]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        form = await request.form(max_files=limits.max_files)
        out = []
        for _, v in form.multi_items():
            if hasattr(v, "filename"):
                data = await v.read(limits.max_file_bytes + 1)
                if len(data) > limits.max_file_bytes:
                    raise StudioError(f"{v.filename}: more than {limits.max_file_bytes:,} bytes")
                out.append((v.filename or "upload", data))
        if not out:
            raise StudioError("no image in the form: send it as multipart field 'files'")
        return out
    data = await _read_limited(request, limits.max_file_bytes)
    if not data:
        raise StudioError("empty body: send an image (Content-Type image/jpeg) or multipart files")
    return [("body", data)]


def worst_mistakes(job_dir: Path, n: int) -> list[dict[str, Any]]:
    """The wrong predictions with the highest loss, from the evaluation's predictions.csv."""
    path = job_dir / "report" / "predictions.csv"
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["correct"] == "0"]
    rows.sort(key=lambda r: float(r["loss"]), reverse=True)
    return [
        {
            "id": r["id"],
            "true": r["true"],
            "predicted": r["predicted"],
            "probability": float(r["probability"]),
            "true_probability": float(r["true_probability"]),
        }
        for r in rows[:n]
    ]


def zip_dir(directory: Path, archive: Path) -> Path:
    from lensflow.io import atomic_write_bytes

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for item in sorted(directory.rglob("*")):
            if item.is_file():
                zf.write(item, f"bundle/{item.relative_to(directory).as_posix()}")
    return atomic_write_bytes(archive, buf.getvalue())


def _slug(name: str) -> str:
    from lensflow.data.importer import safe_name

    return safe_name(name).lower()
