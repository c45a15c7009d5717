"""`lensflow live --source rtsp://...` against a real RTSP server (GStreamer's gst-rtsp-server on
loopback, an FFmpeg-made MJPEG video of real photos): frames are classified and published; the
server is stopped mid-run and started again and live reconnects with back-off; a server that
never answers is a clear error within --stream-timeout."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lensflow.cli import app
from lensflow.live.loop import LiveConfig, MqttSink, run_live
from lensflow.live.video import photo_frames
from lensflow.predictor import Predictor
from tests.fixtures.mqtt import HOST

pytestmark = pytest.mark.rtsp
SIZE, REPEAT = (320, 240), 10  # 5 photos x 10 frames = 5 s of video at 10 fps


@pytest.fixture(scope="module")
def frames(sample_folder: Path) -> list[np.ndarray]:
    """One validation photo per class, each shown for a second (BGR, as a camera gives them)."""
    photos = [sorted(d.glob("*.jpg"))[0] for d in sorted((sample_folder / "validation").iterdir())]
    return list(photo_frames(photos, SIZE, REPEAT))


@pytest.fixture(scope="module")
def allowed(tiny_bundle: Path, frames: list[np.ndarray]) -> set[str]:
    """Labels a frame of the stream may get: each photo's top class, and its second where the
    model is unsure (a 0.3 margin; JPEG coding moves unsure probabilities, as in test_live)."""
    predictor = Predictor.from_bundle(tiny_bundle)
    probs = predictor.predict_proba([f[:, :, ::-1].copy() for f in frames[::REPEAT]])
    out = set()
    for row in probs:
        first, second = np.argsort(-row)[:2]
        out.add(predictor.classes[first])
        if row[first] - row[second] < 0.3:
            out.add(predictor.classes[second])
    return out


def test_cli_classifies_a_real_rtsp_stream(tiny_bundle, frames, allowed, rtsp_server) -> None:
    server = rtsp_server(frames * 4)  # 20 s: longer than the run
    result = CliRunner().invoke(
        app,
        ["live", str(tiny_bundle), "--source", server.url, "--stdout", "--json", "--threshold",
         "0", "--max-frames", "40", "--stream-timeout", "10", "-q"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    messages, summary = [json.loads(x) for x in lines[:-1]], json.loads(lines[-1])
    # --max-frames counts frames read; a live source skips those that came while the model was
    # busy (FFmpeg hands over the ~2 s it buffered while probing the stream at once).
    assert summary["frames_read"] == 40
    assert summary["classified"] == summary["published"] == len(messages) >= 2
    assert {m["image"] for m in messages} <= allowed
    assert all(m["source"] == server.url for m in messages)
    frame_numbers = [m["frame"] for m in messages]
    assert frame_numbers == sorted(set(frame_numbers))  # in stream order, newest frames only


@pytest.mark.mqtt
def test_live_reconnects_with_backoff_when_the_server_comes_back(
    tiny_bundle, frames, allowed, rtsp_server, mosquitto
) -> None:
    server = rtsp_server(frames * 6)
    mosquitto.sub_session("sockfound", "lensflow-rtsp")
    config = LiveConfig(
        bundle=str(tiny_bundle), source=server.url, mqtt=mosquitto.url, qos=1, threshold=0,
        max_frames=90, stream_timeout=5,
    )  # fmt: skip
    sink = MqttSink(mosquitto.url, "sockfound", qos=1)
    restart = threading.Timer(1.5, server.start)
    outage = threading.Event()

    def on_classified(summary, decision) -> None:
        if summary.frames_read >= 30 and not outage.is_set():
            outage.set()
            server.stop()  # the camera goes away mid-run ...
            restart.start()  # ... and is back 1.5 s later

    try:
        predictor = Predictor.from_bundle(tiny_bundle)
        summary = run_live(config, predictor, [sink], on_classified=on_classified)
    finally:
        restart.cancel()
        restart.join()
    assert summary.frames_read == 90  # went on after the outage (the video restarted)
    lost = [e for e in summary.events if " lost; reopening in " in e]
    waits = [float(re.search(r"reopening in ([\d.]+)s", e).group(1)) for e in lost]
    assert waits and waits[0] == 0.5 and waits == sorted(waits)  # exponential back-off
    assert any(e.endswith("is back after " + f"{len(lost)} attempt(s)") for e in summary.events)
    received = [json.loads(x) for x in mosquitto.fetch("sockfound", "lensflow-rtsp", wait=3)]
    # every classified frame was published (QoS 1 may deliver one twice)
    assert len({m["frame"] for m in received}) == summary.classified == summary.published
    assert max(m["frame"] for m in received) > 30  # including frames from after the outage
    assert {m["image"] for m in received} <= allowed


def test_a_server_that_never_answers_is_a_clear_error_within_the_timeout(tiny_bundle) -> None:
    # A socket that accepts connections (the kernel's backlog) and never says a word.
    with socket.socket() as silent:
        silent.bind((HOST, 0))
        silent.listen(4)
        url = f"rtsp://{HOST}:{silent.getsockname()[1]}/live"
        started = time.monotonic()
        result = CliRunner().invoke(
            app, ["live", str(tiny_bundle), "--source", url, "--stream-timeout", "2", "-q"]
        )
        seconds = time.monotonic() - started
    assert result.exit_code == 2, result.output
    assert f"Error: cannot open stream {url}" in result.output
    assert "no video within 2s (--stream-timeout)" in result.output
    assert "Traceback" not in result.output
    assert seconds < 60  # a hang guard only: FFmpeg's own default would wait far longer
