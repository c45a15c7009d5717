"""The browser view: `http://HOST:PORT/` shows the live frames as MJPEG with the overlay drawn in.

Routes: `/` (the page), `/stream.mjpg` (multipart/x-mixed-replace JPEG stream), `/frame.jpg` (the
latest frame), `/status.json` (counters and the last label, polled by the page). A small threaded
http.server: one thread per viewer, frames JPEG-encoded lazily once per new frame and only while
someone is watching, so the view costs nothing without viewers.
"""

from __future__ import annotations

import json
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from lensflow.errors import LiveError

BOUNDARY = "lensflowframe"

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lensflow live: {title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body {{ margin: 0; background: #111; color: #eee; font: 16px system-ui, sans-serif; }}
 header {{ padding: 10px 16px; display: flex; gap: 24px; align-items: baseline; }}
 h1 {{ font-size: 18px; margin: 0; }}
 #label {{ font-size: 22px; font-weight: 600; color: #6d6; }}
 #label.blank {{ color: #aaa; }}
 main {{ display: flex; justify-content: center; }}
 img {{ max-width: 100%; max-height: calc(100vh - 60px); background: #000; }}
 .muted {{ color: #999; font-size: 14px; }}
</style></head>
<body>
<header><h1>lensflow live</h1><span id="label">waiting for frames...</span>
<span id="stats" class="muted"></span><span class="muted">{title}</span></header>
<main><img id="video" src="stream.mjpg" alt="live video"></main>
<script>
async function poll() {{
  try {{
    const s = await (await fetch("status.json", {{cache: "no-store"}})).json();
    const el = document.getElementById("label");
    if (s.label !== null) {{
      // --pair-by-appearance has no probability per frame (0): its label says it all
      el.textContent = s.label + (s.probability > 0 ? " " + s.probability.toFixed(1) + "%" : "");
      el.className = s.blank ? "blank" : "";
    }}
    document.getElementById("stats").textContent =
      s.fps.toFixed(1) + " fps, " + s.classified + " classified, " + s.published + " published" +
      (s.running ? "" : " (ended)");
  }} catch (e) {{ /* the run ended and the server is gone: keep the last state */ }}
}}
setInterval(poll, 500); poll();
</script></body></html>
"""


def parse_host_port(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """`HOST:PORT`, `:PORT` or `PORT` -> (host, port); port 0 picks a free one."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep:
        host, port_text = "", text.strip()
    try:
        port = int(port_text)
    except ValueError:
        raise LiveError(
            f"--view expects HOST:PORT (e.g. 127.0.0.1:8090 or 0.0.0.0:8090), got {text!r}"
        ) from None
    if not 0 <= port <= 65535:
        raise LiveError(f"--view port must be 0..65535, got {port}")
    return (host.strip("[]") or default_host), port


class FrameHub:
    """The latest overlaid frame and status, shared between the loop and the viewer threads."""

    def __init__(self, jpeg_quality: int = 80) -> None:
        self.jpeg_quality = jpeg_quality
        self._cond = threading.Condition()
        self._frame: np.ndarray | None = None
        self._seq = 0
        self._jpeg: bytes | None = None
        self._jpeg_seq = -1
        self.status: dict[str, Any] = {
            "label": None, "probability": 0.0, "blank": False, "fps": 0.0,
            "frames": 0, "classified": 0, "published": 0, "running": True,
        }  # fmt: skip
        self.viewers = 0
        self.closed = False

    def update(self, frame_bgr: np.ndarray, **status: Any) -> None:
        with self._cond:
            self._frame = frame_bgr
            self._seq += 1
            self.status.update(status)
            self._cond.notify_all()

    def set_status(self, **status: Any) -> None:
        with self._cond:
            self.status.update(status)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self.status["running"] = False
            self._cond.notify_all()

    def jpeg(self, after: int = -1, timeout: float = 1.0) -> tuple[int, bytes | None]:
        """(seq, JPEG) of the first frame newer than `after`, waiting up to `timeout`."""
        import cv2

        with self._cond:
            deadline = time.monotonic() + timeout
            while self._seq <= after and not self.closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            if self._frame is None:
                return self._seq, None
            if self._jpeg_seq != self._seq:
                ok, buf = cv2.imencode(
                    ".jpg", self._frame, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality]
                )
                self._jpeg = buf.tobytes() if ok else None
                self._jpeg_seq = self._seq
            return self._seq, self._jpeg

    def status_json(self) -> bytes:
        with self._cond:
            return json.dumps(self.status).encode()


class _Handler(BaseHTTPRequestHandler):
    server: _ViewServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the status line is the UI
        pass

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        hub = self.server.hub
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            self._send(200, self.server.page, "text/html; charset=utf-8")
        elif path == "/status.json":
            self._send(200, hub.status_json(), "application/json")
        elif path == "/frame.jpg":
            _, jpeg = hub.jpeg(timeout=2.0)
            if jpeg is None:
                self._send(503, b"no frame yet", "text/plain")
            else:
                self._send(200, jpeg, "image/jpeg")
        elif path == "/stream.mjpg":
            self._stream(hub)
        elif path == "/favicon.ico":
            self.send_response(HTTPStatus.NO_CONTENT)  # browsers ask; a 404 would log an error
            self.end_headers()
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found: try /", "text/plain")

    def _stream(self, hub: FrameHub) -> None:
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        seq = -1
        hub.viewers += 1
        try:
            while not self.server.stopping:
                new_seq, jpeg = hub.jpeg(after=seq, timeout=1.0)
                if jpeg is None or new_seq == seq:
                    if hub.closed and jpeg is not None:
                        break
                    continue
                seq = new_seq
                self.wfile.write(
                    f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                    f"Content-Length: {len(jpeg)}\r\n\r\n".encode()
                    + jpeg
                    + b"\r\n"
                )
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the viewer closed the tab
        finally:
            hub.viewers -= 1


class _ViewServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], hub: FrameHub, page: bytes) -> None:
        super().__init__(addr, _Handler)
        self.hub = hub
        self.page = page
        self.stopping = False


class ViewServer:
    """Serve a FrameHub over HTTP in a background thread. `url` is the page address."""

    def __init__(self, hub: FrameHub, host: str = "127.0.0.1", port: int = 0, title: str = ""):
        self.hub = hub
        page = PAGE.format(title=_html_escape(title)).encode()
        try:
            self._server = _ViewServer((host, port), hub, page)
        except OSError as e:
            raise LiveError(
                f"cannot serve the view on {host}:{port} ({e.strerror or e}); "
                "pick another --view port, e.g. --view 127.0.0.1:8091"
            ) from e
        self.host, self.port = self._server.server_address[:2]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}/"

    def close(self) -> None:
        self._server.stopping = True
        self.hub.close()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2)


def _html_escape(text: str) -> str:
    import html

    return html.escape(text, quote=True)
