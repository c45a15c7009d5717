"""The view server over real HTTP: page, single frame, status and the MJPEG stream."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

from lensflow.errors import LiveError
from lensflow.live.view import BOUNDARY, FrameHub, ViewServer, parse_host_port


def test_parse_host_port() -> None:
    assert parse_host_port("0.0.0.0:8090") == ("0.0.0.0", 8090)
    assert parse_host_port(":8090") == ("127.0.0.1", 8090)
    assert parse_host_port("8090") == ("127.0.0.1", 8090)
    assert parse_host_port("[::1]:8090") == ("::1", 8090)
    for bad in ("host:port", "1:70000", ""):
        with pytest.raises(LiveError, match="--view"):
            parse_host_port(bad)


@pytest.fixture
def served():
    hub = FrameHub()
    server = ViewServer(hub, "127.0.0.1", 0, title="<cam>")
    yield hub, server
    server.close()


def _get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read()


def test_page_status_and_frame(served) -> None:
    hub, server = served
    code, ctype, body = _get(server.url)
    assert code == 200 and ctype.startswith("text/html")
    assert b'src="stream.mjpg"' in body and b"&lt;cam&gt;" in body  # title escaped
    assert _get(server.url + "frame.jpg")[0] == 503  # nothing yet
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[:, :, 2] = 255  # red in BGR
    hub.update(frame, label="hat", probability=91.5, fps=12.0, classified=3)
    code, ctype, body = _get(server.url + "frame.jpg")
    assert code == 200 and ctype == "image/jpeg"
    decoded = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (48, 64, 3) and decoded[..., 2].mean() > 200
    status = json.loads(_get(server.url + "status.json")[2])
    assert status["label"] == "hat" and status["probability"] == 91.5 and status["running"]
    assert _get(server.url + "nope")[0] == 404


def test_mjpeg_stream_sends_new_frames_as_multipart(served) -> None:
    hub, server = served
    stop = threading.Event()

    def feed() -> None:
        i = 0
        while not stop.is_set():
            hub.update(np.full((32, 32, 3), (i * 40) % 255, np.uint8))
            i += 1
            time.sleep(0.03)

    threading.Thread(target=feed, daemon=True).start()
    try:
        with urllib.request.urlopen(server.url + "stream.mjpg", timeout=5) as r:
            assert r.headers["Content-Type"] == f"multipart/x-mixed-replace; boundary={BOUNDARY}"
            data = b""
            while data.count(b"--" + BOUNDARY.encode()) < 4:
                data += r.read1(65536)
        parts = data.split(b"--" + BOUNDARY.encode())[1:4]
        for part in parts:
            head, _, body = part.partition(b"\r\n\r\n")
            assert b"Content-Type: image/jpeg" in head
            assert body[:2] == b"\xff\xd8"  # a JPEG
    finally:
        stop.set()


def test_busy_port_is_a_clear_error(served) -> None:
    _, server = served
    with pytest.raises(LiveError, match="pick another --view port"):
        ViewServer(FrameHub(), "127.0.0.1", server.port)
