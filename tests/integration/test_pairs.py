"""`lensflow pairs` end to end: replay through the CLI, a real Mosquitto broker (mosquitto_pub in,
mosquitto_sub on --out-topic), the --view page in headless Chromium, and kill -9 + restart."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lensflow.cli import app
from lensflow.stream.config import PairsConfig
from lensflow.stream.reference import camera_events, reference_table
from tests.fixtures.mqtt import free_port, mosquitto_sub_path

T0 = 1_700_000_000_000


def write_jsonl(path: Path, events: list[dict]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


def seed_run() -> list[dict]:
    """Google shown twice (with a ghost Mongo and blanks), Mongo once."""
    events = []
    for start, label in ((0.0, "Google"), (6.0, "Google"), (12.0, "Mongo")):
        events += [
            {"image": label, "probability": 95.0, "ts": T0 + int((start + i * 0.1) * 1000)}
            for i in range(20)
        ]
    events.insert(10, {"image": "Mongo", "probability": 70.0, "ts": T0 + 1050})
    events += [{"image": "Blank", "probability": 99.0, "ts": T0 + 15_000 + i} for i in range(5)]
    return events


def test_replay_cli_json(tmp_path):
    path = write_jsonl(tmp_path / "events.jsonl", seed_run())
    result = CliRunner().invoke(app, ["pairs", "--replay", str(path), "--json", "-q"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "Google": {"number_socks_seen": 2, "pair_seen": "Pair"},
        "Mongo": {"number_socks_seen": 1, "pair_seen": "Un-matched"},
    }
    bad = CliRunner().invoke(app, ["pairs", "--replay", str(path), "--window", "tumbling:5"])
    assert bad.exit_code == 2
    flat = " ".join(bad.output.replace("│", " ").split())
    assert "bad window 'tumbling:5': the tumbling window size must be a number with a unit" in flat
    assert "Traceback" not in bad.output


def test_replay_from_stdin(tmp_path):
    """`lensflow live ... --stdout | lensflow pairs --replay -`; untimed messages use arrival time."""
    lines = "".join(json.dumps(e) + "\n" for e in seed_run())
    result = CliRunner().invoke(app, ["pairs", "--replay", "-", "--json", "-q"], input=lines)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["Google"] == {"number_socks_seen": 2, "pair_seen": "Pair"}
    untimed = "".join(json.dumps({"image": "Mongo", "probability": 90}) + "\n" for _ in range(4))
    result = CliRunner().invoke(app, ["pairs", "--replay", "-", "--json", "-q"], input=untimed)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "Mongo": {"number_socks_seen": 1, "pair_seen": "Un-matched"}
    }


def test_replay_is_deterministic_and_matches_the_reference(tmp_path):
    events = camera_events(11, n=4000, disorder_ms=1500)
    path = write_jsonl(tmp_path / "events.jsonl", events)
    outputs = []
    for window in ("session:2s", "tumbling:5s"):
        args = ["pairs", "--replay", str(path), "--window", window, "--min-probability", "50"]
        first = CliRunner().invoke(app, [*args, "--json", "-q"])
        second = CliRunner().invoke(app, [*args, "--json", "-q"])
        assert first.exit_code == 0, first.output
        assert first.stdout == second.stdout
        table = json.loads(first.stdout)
        config = PairsConfig(window=window, min_probability=50)
        assert table == reference_table(events, config)
        outputs.append(table)
    assert outputs[0] != outputs[1]  # tumbling windows split showings: different counts


def replay_progress(state: Path) -> int:
    """Lines of the replay file committed to the state so far (0 before the first commit)."""
    if not state.exists():
        return 0
    try:
        with sqlite3.connect(state, timeout=0.5) as db:
            row = db.execute("SELECT max(lines) FROM sources").fetchone()
    except sqlite3.OperationalError:  # schema not created yet
        return 0
    return int(row[0] or 0)


def test_killed_replay_resumes_exactly(tmp_path):
    """SIGKILL a replay after its first commit; running it again gives the uninterrupted table."""
    events = camera_events(12, n=200_000, disorder_ms=1000)
    path = write_jsonl(tmp_path / "events.jsonl", events)
    state = tmp_path / "pairs.db"
    cmd = [sys.executable, "-m", "lensflow", "pairs", "--replay", str(path), "--state", str(state)]
    proc = subprocess.Popen([*cmd, "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for(lambda: replay_progress(state) > 0, timeout=60, what="the first commit")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert 0 < replay_progress(state) < len(events)  # it really stopped part-way
    resumed = subprocess.run([*cmd, "--json", "-q"], capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout) == reference_table(events, PairsConfig())
    assert replay_progress(state) == len(events)


# ---- MQTT -----------------------------------------------------------------------------------


def get_view(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/table.json", timeout=2) as r:
        return json.loads(r.read())


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


class PairsProcess:
    def __init__(self, broker, tmp_path: Path, extra: list[str]) -> None:
        self.port = free_port()
        self.cmd = [
            sys.executable, "-m", "lensflow", "pairs", "--mqtt", broker.url,
            "--topic", "sockfound", "--out-topic", "sockpairs",
            "--view", f"127.0.0.1:{self.port}", "--json", "-q", *extra,
        ]  # fmt: skip
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> PairsProcess:
        self.proc = subprocess.Popen(
            self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        wait_for(lambda: get_view(self.port)["ready"], what="pairs to subscribe")
        time.sleep(0.3)  # let the broker register the subscription
        return self

    def view(self) -> dict:
        return get_view(self.port)

    def stop(self, sig: int = signal.SIGTERM) -> tuple[str, str]:
        assert self.proc is not None
        self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=20)
        return out, err


def publish(broker, events: list[dict], topic: str = "sockfound") -> None:
    """mosquitto_pub -l: one message per stdin line, QoS 1."""
    lines = "".join(json.dumps(e) + "\n" for e in events)
    subprocess.run(
        ["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-t", topic, "-q", "1", "-l"],
        input=lines, text=True, check=True, timeout=30,
    )  # fmt: skip


needs_clients = pytest.mark.skipif(
    mosquitto_sub_path() is None, reason="mosquitto-clients (mosquitto_pub/sub) not installed"
)


@pytest.mark.mqtt
@pytest.mark.browser
@needs_clients
def test_mqtt_end_to_end_with_view(mosquitto, tmp_path, open_page):
    events = seed_run()
    sub = subprocess.Popen(
        [mosquitto_sub_path(), "-h", mosquitto.host, "-p", str(mosquitto.port), "-t", "sockpairs",
         "-q", "1", "-C", "3", "-W", "60"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    pairs = PairsProcess(mosquitto, tmp_path, ["--state", str(tmp_path / "pairs.db")]).start()
    try:
        publish(mosquitto, events)
        wait_for(lambda: pairs.view()["stats"]["received"] == len(events), what="all messages")
        view = pairs.view()
        assert {r["label"]: r["number_socks_seen"] for r in view["rows"]} == {
            "Google": 2,
            "Mongo": 1,
        }
        check = open_page(f"http://127.0.0.1:{pairs.port}/")
        check.page.wait_for_selector('tr[data-label="Google"]', timeout=10_000)
        google = check.page.inner_text('tr[data-label="Google"]')
        assert "2" in google and "Pair" in google
        assert "Un-matched" in check.page.inner_text('tr[data-label="Mongo"]')
        assert "5 blank" in check.page.inner_text("#stats")
        assert check.console_errors == [] and check.failed_requests == []
    finally:
        out, err = pairs.stop()
    assert json.loads(out) == {
        "Google": {"number_socks_seen": 2, "pair_seen": "Pair"},
        "Mongo": {"number_socks_seen": 1, "pair_seen": "Un-matched"},
    }, err
    changes, _ = sub.communicate(timeout=60)
    got = [json.loads(line) for line in changes.splitlines()]
    assert [(c["image"], c["number_socks_seen"], c["pair_seen"]) for c in got] == [
        ("Google", 1, "Un-matched"),
        ("Google", 2, "Pair"),
        ("Mongo", 1, "Un-matched"),
    ]
    assert got[0]["last_seen"] >= T0


@pytest.mark.mqtt
@needs_clients
def test_mqtt_kill_and_restart_continues_exactly(mosquitto, tmp_path):
    """kill -9 mid-stream; messages published while it is down are delivered after the restart."""
    events = camera_events(21, n=1500, disorder_ms=800)
    state = ["--state", str(tmp_path / "pairs.db"), "--window", "tumbling:5s"]
    first = PairsProcess(mosquitto, tmp_path, state).start()
    publish(mosquitto, events[:700])
    wait_for(lambda: first.view()["stats"]["received"] == 700, what="the first 700 messages")
    first.stop(signal.SIGKILL)
    publish(mosquitto, events[700:1100])  # queued by the broker for the persistent session
    second = PairsProcess(mosquitto, tmp_path, state).start()
    publish(mosquitto, events[1100:])
    wait_for(lambda: second.view()["stats"]["received"] == len(events), what="all messages")
    out, err = second.stop()
    assert second.proc is not None and second.proc.returncode == 0, err
    config = PairsConfig(window="tumbling:5s")
    assert json.loads(out) == reference_table(events, config)


def test_pairs_refuses_an_unreachable_broker(tmp_path):
    port = free_port()
    result = CliRunner().invoke(app, ["pairs", "--mqtt", f"mqtt://127.0.0.1:{port}", "-q"])
    assert result.exit_code == 2
    assert "cannot reach the MQTT broker" in " ".join(result.output.replace("│", " ").split())
    assert os.path.exists(tmp_path)
