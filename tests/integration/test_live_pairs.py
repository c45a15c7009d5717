"""`lensflow live --pair-by-appearance` end to end on videos made from the real SockSort photos
laid on a generated table: the real backbone, the real CLI, a real Mosquitto."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from lensflow.cli import app
from lensflow.live.pair_loop import PairConfig, run_pairing
from lensflow.live.scenes import Show, show_frames
from lensflow.live.video import write_video
from lensflow.predictor import Predictor

FPS = 10  # of the test videos; --empty-seconds 1 learns the table from 10 frames
# Two photos of each design that the backbone finds alike (used where a test needs a pair it is
# not about; the third photo of a design, another view of the sock, plays the odd sock and the
# third showing below). The all-pairs test draws its own photos at random instead.
TWINS = {
    "class-confluent": ("file_12.jpg", "file_5.jpg"),
    "class-databricks": ("file_87.jpg", "file_99.jpg"),
    "class-github": ("file_90.jpg", "file_96.jpg"),
    "class-google": ("file_127.jpg", "file_128.jpg"),
    "class-mongo": ("file_107.jpg", "file_95.jpg"),
    "class-streamset": ("file_109.jpg", "file_92.jpg"),
}
THIRD = {"class-mongo": "file_108.jpg", "class-databricks": "file_86.jpg"}


@pytest.fixture(scope="module")
def socks(shared_datasets: Path) -> Path:
    src = shared_datasets / "socks-sample"
    if not src.is_dir():
        pytest.skip(f"{src} not found")
    return src


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    """The cached pretrained feature bundle `lensflow match` uses (built once, with torch)."""
    from lensflow.export import backbone_bundle

    return Predictor.from_bundle(backbone_bundle("efficientnet_lite0"))


def make_video(path: Path, shows: list[Show], **kwargs: Any) -> Path:
    """An empty-table start (--empty-seconds 1, and a little more), then `shows`."""
    return write_video(show_frames([Show(None, FPS + 5), *shows], **kwargs), path, fps=FPS)


def run_cli(*args: str) -> tuple[list[dict], dict]:
    result = CliRunner().invoke(
        app, ["live", "--pair-by-appearance", "--empty-seconds", "1", "--json", "-q", *args]
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return lines[:-1], lines[-1]


def check_sightings(events: list[dict], n: int) -> dict[int, int]:
    """n sighting events numbered 1..n, in order; returns id -> frames."""
    sightings = [e for e in events if e["event"] == "sighting"]
    assert [s["id"] for s in sightings] == list(range(1, n + 1)), events
    for s in sightings:
        assert set(s) == {"event", "id", "start_ts", "end_ts", "frames"}
        assert s["start_ts"] <= s["end_ts"] and s["frames"] >= 5
    return {s["id"]: s["frames"] for s in sightings}


@pytest.mark.parametrize("seed", [0, 1])
def test_shuffled_pairs_with_gaps_are_all_paired_right(
    tmp_path: Path, socks: Path, seed: int
) -> None:
    # Two of the three photos of each design, drawn at random, shown in a random order.
    rng = random.Random(seed)
    designs = sorted(d.name for d in socks.iterdir() if d.is_dir())
    shown = [(d, p) for d in designs for p in rng.sample(sorted((socks / d).glob("*.jpg")), 2)]
    rng.shuffle(shown)
    shows = [s for _, photo in shown for s in (Show(photo, 10), Show(None, 8))]
    video = make_video(tmp_path / "socks.avi", shows, seed=seed + 1)

    events, summary = run_cli("--source", str(video), "--stdout")

    check_sightings(events, len(shown))  # one per showing: none from the empty table
    design = {i + 1: d for i, (d, _) in enumerate(shown)}
    pairs = [e for e in events if e["event"] == "pair"]
    assert len(pairs) == len(designs), events
    config = summary["config"]
    last_sighting = max(i for i, e in enumerate(events) if e["event"] == "sighting")
    for p in pairs:
        assert set(p) == {"event", "a", "b", "similarity", "final"}
        assert design[p["a"]] == design[p["b"]], (p, design)
        assert p["a"] < p["b"] and p["similarity"] <= 1
        at = events.index(p)
        if p["final"]:  # made from the socks still open when the feed ended
            assert at > last_sighting and p["similarity"] >= config["final_similarity"]
        else:  # announced right after the sighting that completed it
            assert p["similarity"] >= config["min_similarity"]
            assert events[at - 1] == {**events[at - 1], "event": "sighting", "id": p["b"]}
    assert summary["final_pairs"] == sum(p["final"] for p in pairs)
    assert summary["open"] == [] and summary["sightings"] == len(shown)
    assert config["topic"] == "sockpairs" and config["bundle"] is None
    assert summary["sinks"]["stdout_lines"] == len(events)


class RecordingHub:
    """Stands in for the browser view's FrameHub: keeps what the loop shows."""

    def __init__(self) -> None:
        self.labels: list[str] = []

    def update(self, frame: np.ndarray, **status: Any) -> None:
        assert frame.shape == (480, 640, 3)
        self.labels.append(status["label"])

    def set_status(self, **status: Any) -> None:
        pass


class ListSink:
    def __init__(self) -> None:
        self.messages: list[dict] = []

    def send(self, message: dict) -> None:
        self.messages.append(message)

    @property
    def published(self) -> int:
        return len(self.messages)

    def close(self) -> dict:
        return {}


def test_hands_an_odd_sock_and_a_third_showing(
    tmp_path: Path, socks: Path, predictor: Predictor
) -> None:
    mongo, github = TWINS["class-mongo"], TWINS["class-github"]
    m, g, d = socks / "class-mongo", socks / "class-github", socks / "class-databricks"
    shows = [
        Show(m / mongo[0], 20, hand=True), Show(None, 8),  # carried in and out by a hand
        Show(g / github[0], 8), Show(None, 2), Show(g / github[0], 8),  # lifted for 2 frames
        Show(None, 8),
        Show(m / mongo[1], 20, hand=True), Show(None, 8),
        Show(d / THIRD["class-databricks"], 10), Show(None, 8),  # an odd sock: no twin
        Show(g / github[1], 10), Show(None, 8),
        Show(m / THIRD["class-mongo"], 12), Show(None, 8),  # mongo a third time
    ]  # fmt: skip
    video = make_video(tmp_path / "hands.avi", shows, seed=2)
    sink, hub = ListSink(), RecordingHub()
    config = PairConfig(bundle=None, source=str(video), empty_seconds=1.0)

    summary = run_pairing(config, predictor, [sink], hub=hub)

    frames = check_sightings(sink.messages, 6)
    # The hand's comings and goings and the 2-frame lift stay inside one sighting each.
    assert frames[2] == 16
    pairs = [(e["a"], e["b"]) for e in sink.messages if e["event"] == "pair"]
    assert pairs == [(1, 3), (2, 5)], sink.messages
    assert summary.open == [4, 6]  # the odd sock, and mongo's third showing, wait
    assert summary.learned_frames == FPS and summary.stopped_by == "end of source"
    # The view followed: learning, then each sock on the table, and each pair flashing on the
    # empty table right after its second sock left (a file waits for its embeddings, so this is
    # the same on any machine).
    assert hub.labels[0].startswith("learning the empty table")
    assert sum(label.startswith("sighting: ") for label in hub.labels) >= 6 * 5
    flashes = [label.split("  ")[0] for label in hub.labels if label.startswith("pair #")]
    assert list(dict.fromkeys(flashes)) == ["pair #1 + #3", "pair #2 + #5"]


def test_a_flickering_empty_table_produces_nothing(tmp_path: Path, predictor: Predictor) -> None:
    video = make_video(tmp_path / "flicker.avi", [Show(None, 60)], flicker=0.15, noise=3.0)
    sink = ListSink()
    summary = run_pairing(
        PairConfig(bundle=None, source=str(video), empty_seconds=1.0), predictor, [sink]
    )
    # The pixel test alone keeps it out: not one frame went through the backbone.
    assert sink.messages == [] and summary.sightings == 0 and summary.embedded == 0
    assert summary.classified == FPS + 5 + 60


def test_the_browser_view_gets_the_frames_with_the_strip(
    tmp_path: Path, socks: Path, predictor: Predictor
) -> None:
    import cv2

    from lensflow.live.view import FrameHub

    mongo = [socks / "class-mongo" / f for f in TWINS["class-mongo"]]
    shows = [Show(mongo[0], 10), Show(None, 8), Show(mongo[1], 10), Show(None, 30)]
    video = make_video(tmp_path / "view.avi", shows, seed=5)
    hub = FrameHub()
    summary = run_pairing(
        PairConfig(bundle=None, source=str(video), empty_seconds=1.0), predictor, hub=hub
    )
    assert summary.pairs and summary.pairs[0][:2] == [1, 2]
    _, jpeg = hub.jpeg(timeout=1.0)
    frame = cv2.imdecode(np.frombuffer(jpeg or b"", np.uint8), cv2.IMREAD_COLOR)
    assert frame.shape == (480, 640, 3)
    status = json.loads(hub.status_json())
    assert status["running"] is False and status["classified"] == summary.classified
    # The last frame shows the empty table with the dark strip of open socks along the bottom,
    # empty now that both socks are paired.
    assert frame[-40:, 300:340].mean() < 0.6 * frame[200:280, 300:340].mean()
    assert status["label"] == "empty table  (0 open)"


def test_a_lamp_or_a_shadow_on_the_table_is_not_a_sock(
    tmp_path: Path, socks: Path, predictor: Predictor
) -> None:
    google = socks / "class-google" / TWINS["class-google"][0]
    shows = [
        Show(None, 15, light=60.0), Show(None, 8),  # a lamp lights part of the table
        Show(google, 10), Show(None, 8),
        Show(None, 15, light=-50.0), Show(None, 8),  # a shadow falls on it
    ]  # fmt: skip
    sink = ListSink()
    video = make_video(tmp_path / "lamp.avi", shows, seed=4)
    summary = run_pairing(
        PairConfig(bundle=None, source=str(video), empty_seconds=1.0), predictor, [sink]
    )
    # The pixel test sees both changes; their crops look like the empty table there, the sock's
    # does not: only the sock is published, as sighting 1.
    assert summary.rejected == 2
    assert [(e["event"], e["id"]) for e in sink.messages] == [("sighting", 1)]


@pytest.mark.mqtt
def test_events_reach_mosquitto_on_sockpairs(tmp_path: Path, socks: Path, mosquitto) -> None:
    mongo, google = TWINS["class-mongo"], TWINS["class-google"]
    shows = [
        Show(socks / "class-mongo" / mongo[0], 10), Show(None, 8),
        Show(socks / "class-google" / google[0], 10), Show(None, 8),
        Show(socks / "class-google" / google[1], 10), Show(None, 8),
        Show(socks / "class-mongo" / mongo[1], 10), Show(None, 8),
    ]  # fmt: skip
    video = make_video(tmp_path / "mqtt.avi", shows, seed=3)
    mosquitto.sub_session("sockpairs", "lensflow-sockpairs")

    events, summary = run_cli(
        "--source", str(video), "--mqtt", mosquitto.url, "--qos", "1", "--stdout"
    )

    received = [
        json.loads(x) for x in mosquitto.fetch("sockpairs", "lensflow-sockpairs", count=6, wait=15)
    ]
    assert received == events  # the same JSON lines, in the same order
    assert [(e["a"], e["b"]) for e in received if e["event"] == "pair"] == [(2, 3), (1, 4)]
    assert summary["sinks"]["mqtt_published"] == 6 and summary["sinks"]["mqtt_dropped"] == 0


def test_mistakes_are_one_line_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["live", "--source", str(tmp_path)])
    assert result.exit_code == 2
    assert "Error: live needs a BUNDLE" in result.stderr and "--pair-by-appearance" in result.stderr
    result = runner.invoke(
        app, ["live", "--pair-by-appearance", "--source", "0", "--min-similarity", "2"]
    )
    assert result.exit_code == 2 and "Error: --min-similarity is a cosine" in result.stderr
    result = runner.invoke(
        app, ["live", "--pair-by-appearance", "--source", "0", "--min-frames", "0"]
    )
    assert result.exit_code == 2 and "Error: --min-frames must be >= 1" in result.stderr


def test_stopping_pairs_the_socks_still_open(
    tmp_path: Path, socks: Path, predictor: Predictor
) -> None:
    import threading

    google = [socks / "class-google" / f for f in TWINS["class-google"]]
    mongo = socks / "class-mongo" / TWINS["class-mongo"][0]
    shows = [Show(google[0], 10), Show(None, 8), Show(mongo, 10), Show(None, 8),
             Show(google[1], 10), Show(None, 30)]  # fmt: skip
    video = make_video(tmp_path / "stop.avi", shows, seed=6)
    stop, sink = threading.Event(), ListSink()

    def stop_late(summary: Any, _decision: Any) -> None:
        if summary.classified == FPS + 5 + 60:  # the third sock has left the table
            stop.set()

    # Nothing is sure enough to pair live; stopping the loop (as Ctrl-C does) pairs the rest.
    config = PairConfig(bundle=None, source=str(video), empty_seconds=1.0, min_similarity=0.99)
    summary = run_pairing(config, predictor, [sink], on_classified=stop_late, stop=stop)

    assert summary.stopped_by == "stopped" and summary.sightings == 3
    pairs = [e for e in sink.messages if e["event"] == "pair"]
    assert [(p["a"], p["b"], p["final"]) for p in pairs] == [(1, 3, True)]
    assert pairs[0]["similarity"] >= config.final_similarity
    assert sink.messages[-1] == pairs[0]  # after every sighting
    assert summary.final_pairs == 1 and summary.open == [2]
    assert any(e.startswith("final pair #1 + #3") for e in summary.events)


def test_sigterm_ends_the_feed_like_ctrl_c(tmp_path: Path, socks: Path) -> None:
    """A service manager stops `live` with SIGTERM: the socks still open are paired and
    published before it exits, as with Ctrl-C."""
    import signal
    import subprocess
    import sys
    import time

    google = [socks / "class-google" / f for f in TWINS["class-google"]]
    mongo = socks / "class-mongo" / TWINS["class-mongo"][0]
    shows = [Show(google[0], 10), Show(None, 8), Show(mongo, 10), Show(None, 8),
             Show(google[1], 10), Show(None, 600)]  # fmt: skip  # a minute of empty table
    video = make_video(tmp_path / "term.avi", shows, seed=7)
    proc = subprocess.Popen(
        [sys.executable, "-m", "lensflow", "live", "--pair-by-appearance", "--source", str(video),
         "--fps", str(FPS), "--empty-seconds", "1", "--min-similarity", "0.99", "--stdout",
         "--json", "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: list[dict] = []
    deadline = time.monotonic() + 120
    try:
        assert proc.stdout is not None
        while sum(e.get("event") == "sighting" for e in lines) < 3:
            assert time.monotonic() < deadline, lines
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else "stdout closed"
            lines.append(json.loads(line))
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    rest = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    events, summary = lines + rest[:-1], rest[-1]
    pairs = [(e["a"], e["b"], e["final"]) for e in events if e["event"] == "pair"]
    assert pairs == [(1, 3, True)], (events, summary, err[-2000:])
    assert summary["stopped_by"] == "interrupted (SIGTERM)" and summary["open"] == [2]
    assert summary["frames_read"] < FPS + 5 + 48 + 600  # it did not play to the end
