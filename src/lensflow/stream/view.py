"""Displays of the live pair table: a rich table on the terminal and a small web page (--view).

The page is one static HTML file polling /table.json once a second; the server is the standard
library's, in a daemon thread, so `pairs` needs no web framework.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from rich.table import Table

from lensflow.errors import StreamError


def _clock(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M:%S.%f")[:-3]


def rich_table(view: dict[str, Any]) -> Table:
    """The pair table as rich renders it (labels, sightings, Pair/Un-matched, last seen UTC)."""
    stats = view["stats"]
    table = Table(
        title=f"sock pairs ({view['window']}, min {view['min_count']} events)",
        caption=(
            f"{stats['received']} messages: {stats['accepted']} counted, {stats['blank']} blank, "
            f"{stats['low_probability']} low probability, {stats['late_dropped']} late, "
            f"{stats['invalid']} invalid"
        ),
    )
    table.add_column("sock")
    table.add_column("seen", justify="right")
    table.add_column("pair")
    table.add_column("last seen (UTC)")
    for row in view["rows"]:
        style = "green" if row["pair_seen"] == "Pair" else "yellow"
        table.add_row(
            row["label"],
            str(row["number_socks_seen"]),
            f"[{style}]{row['pair_seen']}[/]",
            _clock(row["last_seen"]),
        )
    return table


def _page() -> bytes:
    return resources.files("lensflow.stream").joinpath("view.html").read_bytes()


class ViewServer:
    """Serves the page and /table.json from `get_view()`; start() returns once it listens."""

    def __init__(self, host: str, port: int, get_view: Callable[[], dict[str, Any]]) -> None:
        page = _page()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path in ("/", "/index.html"):
                    self._send(200, "text/html; charset=utf-8", page)
                elif path == "/table.json":
                    self._send(200, "application/json", json.dumps(get_view()).encode())
                elif path == "/healthz":
                    self._send(200, "text/plain", b"ok")
                else:
                    self._send(404, "text/plain", b"not found")

            def _send(self, status: int, kind: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:  # keep the terminal for the table
                pass

        try:
            self.server = ThreadingHTTPServer((host, port), Handler)
        except OSError as e:
            raise StreamError(
                f"--view {host}:{port}: cannot listen there ({e}); choose another port"
            ) from e
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/"

    def start(self) -> ViewServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
