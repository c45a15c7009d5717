"""`lensflow download`: a list of image URLs -> OUT/<label>/<image>, ready for `lensflow data import`.

Every URL gets exactly one status, and no bad URL stops the run:

- `downloaded`  fetched, fully decoded, stored as OUT/<label>/<name>-<urlhash><ext>;
- `exists`      a file for this URL is already there (a re-run skips it without a request);
- `duplicate`   the bytes equal a file already kept (this run or an earlier one): not stored again;
- `http_error`  a 4xx/5xx answer (`code`) or a connection that failed (`code` null);
- `timeout`     no complete answer within `timeout` seconds, after the retries;
- `not_image`   a non-image content-type or bytes that are no image format;
- `corrupt`     an image that does not decode fully (truncated, empty, broken);
- `too_large`   more than `max_bytes` (Content-Length or body), or absurdly many pixels.

Retries (with exponential back-off) only on timeouts and 5xx: a 4xx will not change on retry.
Downloads run concurrently in threads (I/O bound); the results are resolved in list order in the
calling thread, so de-duplication and the report are deterministic whatever the timing.
Nothing is half-written: bodies go to OUT/.download-tmp/ and are renamed into place when kept.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import ipaddress
import os
import re
import shutil
import socket
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
from PIL import Image

from lensflow import __version__
from lensflow.data.importer import safe_name
from lensflow.data.validate import IMAGE_EXTENSIONS, Rejected, decode_image
from lensflow.errors import CollectError
from lensflow.progress import track

STATUSES = (
    "downloaded",
    "exists",
    "duplicate",
    "http_error",
    "timeout",
    "not_image",
    "corrupt",
    "too_large",
)
KEPT = ("downloaded", "exists")
# Servers label binary downloads these ways; the decode check decides whether they are images.
_GENERIC_TYPES = {"application/octet-stream", "binary/octet-stream", "application/binary"}
_FORMAT_EXT = {
    "JPEG": ".jpg",
    "PNG": ".png",
    "GIF": ".gif",
    "WEBP": ".webp",
    "BMP": ".bmp",
    "TIFF": ".tif",
    "PPM": ".ppm",
}
TMP_DIR = ".download-tmp"


@dataclass(frozen=True)
class DownloadConfig:
    list_file: Path | None  # text file of URLs or CSV url,label (None: items given in Python)
    out: Path  # OUT/<label>/<image>
    label: str | None = None  # label of a plain URL list (and of CSV rows without one)
    workers: int = 8  # concurrent downloads
    timeout: float = 10.0  # seconds per request (connect + whole body)
    retries: int = 2  # extra attempts after a timeout or a 5xx
    max_bytes: int = 20_000_000  # larger bodies are refused (too_large)
    backoff: float = 0.5  # seconds before the first retry, doubled for each further one
    public_only: bool = False  # refuse private, loopback and link-local hosts (Studio on a network)

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise CollectError(f"--workers must be >= 1, got {self.workers}")
        if self.timeout <= 0:
            raise CollectError(f"--timeout must be > 0 seconds, got {self.timeout}")
        if self.retries < 0:
            raise CollectError(f"--retries must be >= 0, got {self.retries}")
        if self.max_bytes < 1:
            raise CollectError(f"--max-bytes must be >= 1, got {self.max_bytes}")
        if self.backoff < 0:
            raise CollectError(f"backoff must be >= 0 seconds, got {self.backoff}")


@dataclass(frozen=True)
class UrlItem:
    url: str
    label: str


@dataclass
class ItemResult:
    url: str
    label: str
    status: str
    path: str | None = None  # relative to OUT (posix); for a duplicate: the copy that was kept
    code: int | None = None  # HTTP status code of an http_error
    reason: str | None = None  # why it was not kept, in words

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "url": self.url,
            "label": self.label,
            "status": self.status,
            "path": self.path,
        }
        if self.status == "http_error":
            d["code"] = self.code
        if self.reason is not None:
            d["reason"] = self.reason
        return d


@dataclass
class DownloadResult:
    out: Path
    items: list[ItemResult]

    @property
    def counts(self) -> dict[str, int]:
        c = Counter(i.status for i in self.items)
        return {s: c.get(s, 0) for s in STATUSES}

    @property
    def by_label(self) -> dict[str, dict[str, int]]:
        per: dict[str, Counter[str]] = defaultdict(Counter)
        for i in self.items:
            per[i.label][i.status] += 1
        return {label: {s: c.get(s, 0) for s in STATUSES} for label, c in sorted(per.items())}

    def report(self) -> dict[str, Any]:
        return {
            "items": [i.to_dict() for i in self.items],
            "counts": self.counts,
            "by_label": self.by_label,
        }


# -- reading the list ------------------------------------------------------------------------


def read_url_list(path: Path, label: str | None = None) -> list[UrlItem]:
    """A text file with one URL per line (label from `label`) or a CSV `url,label`.

    Blank lines and lines starting with '#' are ignored; a CSV header `url,label` is skipped.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise CollectError(f"cannot read URL list {path}: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise CollectError(f"{path} is not a UTF-8 text file of URLs") from e
    lines = [
        (n, line.strip())
        for n, line in enumerate(text.splitlines(), 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        raise CollectError(f"{path} lists no URLs (one URL per line, or CSV url,label)")
    is_csv = path.suffix.lower() == ".csv" or "," in lines[0][1]
    items = _parse_csv(path, lines, label) if is_csv else _parse_text(path, lines, label)
    if not items:
        raise CollectError(f"{path} lists no URLs (one URL per line, or CSV url,label)")
    return items


def _parse_text(path: Path, lines: list[tuple[int, str]], label: str | None) -> list[UrlItem]:
    if not label:
        raise CollectError(
            f"{path} is a plain list of URLs: give their label with --label NAME "
            "(or use a CSV with url,label rows)"
        )
    return [UrlItem(line, label) for _, line in lines]


def _parse_csv(path: Path, lines: list[tuple[int, str]], label: str | None) -> list[UrlItem]:
    items = []
    for (n, _), row in zip(lines, csv.reader(line for _, line in lines), strict=True):
        cells = [c.strip() for c in row]
        if n == lines[0][0] and cells and cells[0].lower() == "url":
            continue  # header
        row_label = cells[1] if len(cells) > 1 and cells[1] else label
        if not cells or not cells[0]:
            raise CollectError(f"{path}:{n}: empty URL (expected url,label)")
        if not row_label:
            raise CollectError(f"{path}:{n}: no label for {cells[0]} (add it, or pass --label)")
        items.append(UrlItem(cells[0], row_label))
    return items


# -- one URL ---------------------------------------------------------------------------------


@dataclass
class _Fetched:
    """A body that decoded as an image, parked in the temp dir until resolved in list order."""

    tmp: Path
    sha256: str
    ext: str


def url_hash(url: str) -> str:
    return hashlib.sha1(url.encode("utf-8")).hexdigest()[:10]


def file_name(url: str, ext: str) -> str:
    """Readable and stable: the URL's last path segment plus a hash of the whole URL."""
    stem = Path(unquote(urlsplit(url).path)).stem
    stem = re.sub(r"[^\w.+-]+", "_", stem).strip("._")[:40] or "image"
    return f"{stem}-{url_hash(url)}{ext}"


def existing_for_url(label_dir: Path, url: str) -> Path | None:
    """The file an earlier run stored for this URL, if any (that is what makes runs resumable)."""
    if not label_dir.is_dir():
        return None
    for path in label_dir.glob(f"*-{url_hash(url)}.*"):
        if path.is_file() and not path.name.startswith("."):
            return path
    return None


class _Failure(Exception):
    def __init__(self, status: str, reason: str, code: int | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.code = status, reason, code


def _retryable(f: _Failure) -> bool:
    return f.status == "timeout" or (f.code is not None and f.code >= 500)


def fetch(client: httpx.Client, url: str, config: DownloadConfig) -> bytes:
    """GET with retries on timeouts and 5xx; raises _Failure with the final status."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise _Failure("http_error", f"not an http(s) URL: {url[:80]!r}")
    for attempt in range(config.retries + 1):
        if attempt:
            time.sleep(config.backoff * 2 ** (attempt - 1))
        try:
            return _fetch_once(client, url, config)
        except _Failure as f:
            if not _retryable(f) or attempt == config.retries:
                if attempt:
                    f.reason += f" (after {attempt + 1} attempts)"
                raise
    raise AssertionError("unreachable")


def _fetch_once(client: httpx.Client, url: str, config: DownloadConfig) -> bytes:
    deadline = time.monotonic() + config.timeout
    try:
        with client.stream("GET", url, timeout=config.timeout) as r:
            if r.status_code >= 400:
                raise _Failure("http_error", f"HTTP {r.status_code}", r.status_code)
            ctype = r.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype and not ctype.startswith("image/") and ctype not in _GENERIC_TYPES:
                raise _Failure("not_image", f"content-type {ctype}, not an image")
            length = r.headers.get("content-length", "")
            if length.isdigit() and int(length) > config.max_bytes:
                raise _Failure(
                    "too_large", f"{int(length):,} bytes > --max-bytes {config.max_bytes:,}"
                )
            body = bytearray()
            for chunk in r.iter_bytes():  # as it arrives, so the deadline is checked often
                body += chunk
                if len(body) > config.max_bytes:
                    raise _Failure("too_large", f"body exceeds --max-bytes {config.max_bytes:,}")
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout("body too slow", request=r.request)
            return bytes(body)
    except httpx.TimeoutException as e:
        raise _Failure("timeout", f"no complete answer within {config.timeout:g} s") from e
    except httpx.HTTPError as e:
        raise _Failure("http_error", f"{type(e).__name__}: {e}") from e


def _is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_global


def public_address(host: str, port: int) -> str:
    """The address to connect to for `host`, refused unless every address it has is public."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise _Failure("http_error", f"cannot resolve {host}: {e.strerror or e}") from e
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    for ip in addresses:
        if not _is_public(ip):
            raise _Failure(
                "http_error",
                f"refused: {host} is a private, loopback or link-local address ({ip}); "
                "Studio fetches only public URLs when it listens beyond this machine",
            )
    return str(addresses[0])


class PublicOnlyTransport(httpx.HTTPTransport):
    """Connects only to public addresses, for every request including redirects.

    A Studio reachable from a network must not become a proxy into it (cloud metadata at
    169.254.169.254, admin pages on 127.0.0.1 or 10.x). The request goes to the very address
    that was checked (Host header and TLS name stay the original host's), so a DNS answer that
    changes between the check and the connect (rebinding) cannot slip through.
    """

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        address = public_address(host, port)
        if address != host:
            request.url = request.url.copy_with(host=address)
            request.extensions = {**request.extensions, "sni_hostname": host}
        return super().handle_request(request)


def check_image(data: bytes) -> str:
    """Fully decode with the dataset validator; return the file extension to store it under."""
    try:
        decode_image(data)
    except Rejected as e:
        raise _Failure(e.kind, str(e)) from e
    with Image.open(io.BytesIO(data)) as img:
        ext = _FORMAT_EXT.get(img.format or "", "")
    if ext not in IMAGE_EXTENSIONS:
        raise _Failure("not_image", f"image format {img.format} is not one lensflow imports")
    return ext


def _download_one(
    client: httpx.Client, item: UrlItem, config: DownloadConfig, tmp_dir: Path
) -> ItemResult | _Fetched:
    label_dir = config.out / safe_name(item.label)
    existing = existing_for_url(label_dir, item.url)
    if existing is not None:
        return ItemResult(item.url, item.label, "exists", _rel(existing, config.out))
    try:
        data = fetch(client, item.url, config)
        ext = check_image(data)
    except _Failure as f:
        return ItemResult(item.url, item.label, f.status, None, f.code, f.reason)
    tmp = tmp_dir / uuid.uuid4().hex
    tmp.write_bytes(data)
    return _Fetched(tmp, hashlib.sha256(data).hexdigest(), ext)


# -- the whole list --------------------------------------------------------------------------


def _rel(path: Path, out: Path) -> str:
    return path.relative_to(out).as_posix()


def index_existing(out: Path) -> dict[str, str]:
    """sha256 -> relative path of every image already in OUT/<label>/ (de-dup across re-runs)."""
    index: dict[str, str] = {}
    if not out.is_dir():
        return index
    for label_dir in sorted(d for d in out.iterdir() if d.is_dir() and not d.name.startswith(".")):
        for path in sorted(label_dir.iterdir()):
            usable = path.is_file() and not path.name.startswith(".")
            if usable and path.suffix.lower() in IMAGE_EXTENSIONS:
                sha = hashlib.sha256(path.read_bytes()).hexdigest()
                index.setdefault(sha, _rel(path, out))
    return index


def download(
    items: Sequence[UrlItem], config: DownloadConfig, quiet: bool = False
) -> DownloadResult:
    """Download every item into config.out; never raises for a bad URL."""
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    index = index_existing(out)
    tmp_dir = out / TMP_DIR / uuid.uuid4().hex
    tmp_dir.mkdir(parents=True)
    headers = {"User-Agent": f"lensflow/{__version__} (image downloader)"}
    results: list[ItemResult] = []
    try:
        with (
            httpx.Client(
                follow_redirects=True,
                headers=headers,
                transport=PublicOnlyTransport() if config.public_only else None,
            ) as client,
            ThreadPoolExecutor(max_workers=config.workers) as pool,
        ):
            futures: list[Future[ItemResult | _Fetched]] = [
                pool.submit(_download_one, client, item, config, tmp_dir) for item in items
            ]
            try:
                for item, fut in track(
                    list(zip(items, futures, strict=True)), "downloading", unit="url", quiet=quiet
                ):
                    results.append(_resolve(item, fut.result(), index, out))
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            (out / TMP_DIR).rmdir()  # only when no other run is using it
    return DownloadResult(out, results)


def _resolve(
    item: UrlItem, got: ItemResult | _Fetched, index: dict[str, str], out: Path
) -> ItemResult:
    if isinstance(got, ItemResult):
        return got
    kept = index.get(got.sha256)
    if kept is not None:
        got.tmp.unlink(missing_ok=True)
        return ItemResult(item.url, item.label, "duplicate", kept, reason=f"same bytes as {kept}")
    dest = out / safe_name(item.label) / file_name(item.url, got.ext)
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(got.tmp, dest)
    rel = _rel(dest, out)
    index[got.sha256] = rel
    return ItemResult(item.url, item.label, "downloaded", rel)


def download_list(config: DownloadConfig, quiet: bool = False) -> DownloadResult:
    if config.list_file is None:
        raise CollectError("give the URL list: lensflow download LIST --out FOLDER")
    return download(read_url_list(config.list_file, config.label), config, quiet=quiet)
