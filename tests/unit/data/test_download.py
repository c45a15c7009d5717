"""`lensflow download` against a real local HTTP server serving every kind of bad answer."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lensflow.data.download import (
    DownloadConfig,
    UrlItem,
    download,
    file_name,
    read_url_list,
)
from lensflow.errors import CollectError


@dataclass
class ImageServer:
    """A threaded http.server on a free loopback port; `routes` maps a path to a behaviour."""

    routes: dict[str, tuple]
    hits: Counter = field(default_factory=Counter)
    base: str = ""

    def url(self, path: str) -> str:
        return f"{self.base}{path}"


def _handler(server: ImageServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        def _send(self, code: int, body: bytes, ctype: str, length: bool = True) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            if length:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            server.hits[self.path] += 1
            route = server.routes.get(self.path, ("status", 404))
            kind = route[0]
            if kind == "file":  # ("file", bytes, content-type)
                self._send(200, route[1], route[2])
            elif kind == "status":
                self._send(route[1], b"error", "text/plain")
            elif kind == "flaky":  # 500 on the first request, then the image
                if server.hits[self.path] == 1:
                    self._send(500, b"try again", "text/plain")
                else:
                    self._send(200, route[1], "image/jpeg")
            elif kind == "slow":  # headers only after `delay` seconds
                time.sleep(route[2])
                self._send(200, route[1], "image/jpeg")
            elif kind == "dribble":  # headers at once, then the body a little at a time
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(route[1])))
                self.end_headers()
                for i in range(0, len(route[1]), 2000):
                    self.wfile.write(route[1][i : i + 2000])
                    self.wfile.flush()
                    time.sleep(route[2])
            elif kind == "redirect":  # ("redirect", location)
                self.send_response(302)
                self.send_header("Location", route[1])
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif kind == "stream":  # no Content-Length: the size is known only by reading
                self.close_connection = True
                self._send(200, route[1], route[2], length=False)

    return Handler


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # slow handlers must not hold up the test's teardown

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that gave up (timeout, too_large) breaks the pipe: expected, not an error."""


@pytest.fixture
def serve() -> Iterator:
    servers: list[ThreadingHTTPServer] = []

    def _serve(routes: dict[str, tuple]) -> ImageServer:
        state = ImageServer(routes)
        httpd = QuietServer(("127.0.0.1", 0), _handler(state))
        state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        return state

    yield _serve
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def photos(sample_folder: Path, label: str, n: int) -> list[bytes]:
    return [p.read_bytes() for p in sorted((sample_folder / "train" / label).glob("*.jpg"))[:n]]


def zoo_routes(sample_folder: Path) -> tuple[dict[str, tuple], list[bytes]]:
    """Every case the issue names, with real photos from the bundled sample."""
    hats, shoes = photos(sample_folder, "hat", 3), photos(sample_folder, "shoes", 2)
    routes = {
        "/hat/a.jpg": ("file", hats[0], "image/jpeg"),
        "/hat/b.jpg": ("file", hats[1], "image/jpeg; charset=binary"),
        "/hat/c": ("file", hats[2], "application/octet-stream"),
        "/shoes/a.jpg": ("file", shoes[0], "image/jpeg"),
        "/missing.jpg": ("status", 404),
        "/flaky.jpg": ("flaky", shoes[1]),
        "/slow.jpg": ("slow", hats[0], 15.0),
        "/dribble.jpg": ("dribble", hats[1] + b"\0" * 20000, 0.4),
        "/page.jpg": ("file", b"<html><body>Not found</body></html>", "text/html"),
        "/lying.jpg": ("file", b"<html><body>hello</body></html>", "image/jpeg"),
        "/truncated.jpg": ("file", hats[2][: len(hats[2]) // 2], "image/jpeg"),
        "/big.jpg": ("file", hats[0] + b"\0" * 200_000, "image/jpeg"),
        "/big-stream.jpg": ("stream", hats[1] + b"\0" * 200_000, "image/jpeg"),
        "/copy-of-hat-a.jpg": ("file", hats[0], "image/jpeg"),
    }
    return routes, hats


# The timeout leaves a loaded machine seconds to answer the good routes; the slow and dribbling
# routes take several times longer than it, so they time out however busy the machine is.
FAST = {"timeout": 2.5, "retries": 2, "backoff": 0.05, "max_bytes": 150_000, "workers": 8}


def expected_zoo(server: ImageServer) -> list[dict]:
    u = server.url

    def kept(path: str, label: str) -> str:
        return f"{label}/{file_name(u(path), '.jpg')}"

    return [
        {
            "url": u("/hat/a.jpg"),
            "label": "hat",
            "status": "downloaded",
            "path": kept("/hat/a.jpg", "hat"),
        },
        {
            "url": u("/hat/b.jpg"),
            "label": "hat",
            "status": "downloaded",
            "path": kept("/hat/b.jpg", "hat"),
        },
        {"url": u("/hat/c"), "label": "hat", "status": "downloaded", "path": kept("/hat/c", "hat")},
        {
            "url": u("/shoes/a.jpg"),
            "label": "shoes",
            "status": "downloaded",
            "path": kept("/shoes/a.jpg", "shoes"),
        },
        {
            "url": u("/missing.jpg"),
            "label": "shoes",
            "status": "http_error",
            "path": None,
            "code": 404,
        },
        {
            "url": u("/flaky.jpg"),
            "label": "shoes",
            "status": "downloaded",
            "path": kept("/flaky.jpg", "shoes"),
        },
        {"url": u("/slow.jpg"), "label": "hat", "status": "timeout", "path": None},
        {"url": u("/dribble.jpg"), "label": "hat", "status": "timeout", "path": None},
        {"url": u("/page.jpg"), "label": "hat", "status": "not_image", "path": None},
        {"url": u("/lying.jpg"), "label": "hat", "status": "not_image", "path": None},
        {"url": u("/truncated.jpg"), "label": "hat", "status": "corrupt", "path": None},
        {"url": u("/big.jpg"), "label": "hat", "status": "too_large", "path": None},
        {"url": u("/big-stream.jpg"), "label": "hat", "status": "too_large", "path": None},
        {
            "url": u("/copy-of-hat-a.jpg"),
            "label": "hat",
            "status": "duplicate",
            "path": kept("/hat/a.jpg", "hat"),
        },
    ]


def zoo_items(server: ImageServer) -> list[UrlItem]:
    return [UrlItem(e["url"], e["label"]) for e in expected_zoo(server)]


def without_reasons(items: list[dict]) -> list[dict]:
    return [{k: v for k, v in d.items() if k != "reason"} for d in items]


def test_every_status_matches_exactly(serve, sample_folder: Path, tmp_path: Path) -> None:
    routes, hats = zoo_routes(sample_folder)
    server = serve(routes)
    out = tmp_path / "photos"
    result = download(zoo_items(server), DownloadConfig(None, out, **FAST), quiet=True)
    report = result.report()

    assert without_reasons(report["items"]) == expected_zoo(server)
    failed = [i for i in report["items"] if i["status"] not in ("downloaded", "exists")]
    assert all(i["reason"] for i in failed), "every failure says why"
    assert report["counts"] == {
        "downloaded": 5,
        "exists": 0,
        "duplicate": 1,
        "http_error": 1,
        "timeout": 2,
        "not_image": 2,
        "corrupt": 1,
        "too_large": 2,
    }
    assert report["by_label"]["shoes"]["downloaded"] == 2
    assert report["by_label"]["hat"]["downloaded"] == 3
    # Retries: 5xx and timeouts are retried (retries=2 -> 3 attempts), a 404 never is.
    assert server.hits["/missing.jpg"] == 1
    assert server.hits["/flaky.jpg"] == 2
    assert server.hits["/slow.jpg"] == 3
    assert server.hits["/page.jpg"] == 1
    # Kept files are the server's bytes, and nothing else is left in OUT (no temp files).
    assert (out / report["items"][0]["path"]).read_bytes() == hats[0]
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == sorted(i["path"] for i in report["items"] if i["status"] == "downloaded")


def test_rerun_skips_what_is_there_without_requests(
    serve, sample_folder: Path, tmp_path: Path
) -> None:
    routes, _ = zoo_routes(sample_folder)
    routes = {
        k: v for k, v in routes.items() if k in ("/hat/a.jpg", "/shoes/a.jpg", "/copy-of-hat-a.jpg")
    }
    server = serve(routes)
    out = tmp_path / "photos"
    items = [UrlItem(server.url(p), p.split("/")[1] if p.count("/") > 1 else "hat") for p in routes]
    first = download(items, DownloadConfig(None, out, **FAST), quiet=True)
    assert [i.status for i in first.items] == ["downloaded", "downloaded", "duplicate"]

    second = download(items, DownloadConfig(None, out, **FAST), quiet=True)
    assert [i.status for i in second.items] == ["exists", "exists", "duplicate"]
    assert [i.path for i in second.items] == [i.path for i in first.items]
    assert server.hits["/hat/a.jpg"] == 1 and server.hits["/shoes/a.jpg"] == 1
    # A new URL serving bytes already on disk (from the earlier run) is a duplicate too.
    assert second.items[2].path == first.items[0].path


def test_unreachable_host_and_bad_scheme_do_not_stop_the_run(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a free port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    items = [UrlItem(f"http://127.0.0.1:{port}/x.jpg", "a"), UrlItem("ftp://example/x.jpg", "a")]
    result = download(items, DownloadConfig(None, tmp_path / "o", **FAST), quiet=True)
    assert [(i.status, i.code) for i in result.items] == [("http_error", None)] * 2
    assert "not an http(s) URL" in (result.items[1].reason or "")


def test_read_url_list_text_and_csv(tmp_path: Path) -> None:
    text = tmp_path / "hats.txt"
    text.write_text("# hats\nhttp://h/a.jpg\n\n  http://h/b.jpg  \n")
    assert read_url_list(text, "hat") == [
        UrlItem("http://h/a.jpg", "hat"),
        UrlItem("http://h/b.jpg", "hat"),
    ]
    with pytest.raises(CollectError, match="--label"):
        read_url_list(text)

    table = tmp_path / "list.csv"
    table.write_text(
        'url,label\nhttp://h/a.jpg,hat\n"http://h/b.jpg?x=1,2",t shirt\nhttp://h/c.jpg,\n'
    )
    with pytest.raises(CollectError, match=r"list.csv:4: no label"):
        read_url_list(table)
    assert read_url_list(table, "misc") == [
        UrlItem("http://h/a.jpg", "hat"),
        UrlItem("http://h/b.jpg?x=1,2", "t shirt"),
        UrlItem("http://h/c.jpg", "misc"),
    ]
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    with pytest.raises(CollectError, match="no URLs"):
        read_url_list(empty, "x")
    with pytest.raises(CollectError, match="cannot read"):
        read_url_list(tmp_path / "absent.txt", "x")


@pytest.mark.parametrize(
    ("field", "value"), [("workers", 0), ("timeout", 0), ("retries", -1), ("max_bytes", 0)]
)
def test_bad_options_are_rejected(field: str, value: float, tmp_path: Path) -> None:
    with pytest.raises(CollectError, match=field.replace("_", "-")):
        DownloadConfig(None, tmp_path, **{field: value})


def test_file_names_are_safe_and_stable() -> None:
    name = file_name("http://h/../../etc/pass wd.JPG?x=1", ".jpg")
    assert "/" not in name and ".." not in name and name.endswith(".jpg")
    assert name == file_name("http://h/../../etc/pass wd.JPG?x=1", ".jpg")
    assert file_name("http://h/", ".png").startswith("image-")


def test_public_only_refuses_internal_hosts_and_redirects_into_them(
    serve, sample_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lensflow.data import download as dl

    hat = photos(sample_folder, "hat", 1)[0]
    server = serve({"/a.jpg": ("file", hat, "image/jpeg")})
    port = server.base.rsplit(":", 1)[1]
    server.routes["/hop"] = ("redirect", f"http://127.0.0.2:{port}/a.jpg")
    server.routes["/here"] = ("redirect", server.url("/a.jpg"))

    def run(paths: list[str], out: str, public_only: bool) -> list:
        config = DownloadConfig(None, tmp_path / out, workers=2, timeout=5, retries=0,
                                public_only=public_only)  # fmt: skip
        return download([UrlItem(server.url(p), "hat") for p in paths], config, quiet=True).items

    assert [i.status for i in run(["/a.jpg"], "open", public_only=False)] == ["downloaded"]
    (refused,) = run(["/a.jpg"], "closed", public_only=True)
    assert refused.status == "http_error" and "refused: 127.0.0.1" in refused.reason
    assert server.hits["/a.jpg"] == 1  # the refused request never reached the server

    # Pretend the test server's address is public: the request is sent to the checked address,
    # and a redirect is checked again before it is followed.
    monkeypatch.setattr(dl, "_is_public", lambda ip: str(ip) == "127.0.0.1")
    items = run(["/a.jpg", "/here", "/hop"], "pretend", public_only=True)
    assert [i.status for i in items] == ["downloaded", "duplicate", "http_error"]
    assert "refused: 127.0.0.2" in items[2].reason
    assert server.hits["/hop"] == 1 and server.hits["/a.jpg"] == 3


@pytest.mark.parametrize(
    ("address", "public"),
    [("127.0.0.1", False), ("10.1.2.3", False), ("169.254.169.254", False), ("::1", False),
     ("::ffff:192.168.0.1", False), ("fd00::1", False), ("93.184.215.14", True),
     ("2606:4700::1111", True)],
)  # fmt: skip
def test_public_address_classification(address: str, public: bool) -> None:
    import ipaddress

    from lensflow.data.download import _is_public

    assert _is_public(ipaddress.ip_address(address)) is public
