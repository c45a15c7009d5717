"""SQLite state: a restart continues exactly; replaying the same events gives the same table."""

from __future__ import annotations

import json
import random
import sqlite3

import pytest

from lensflow.errors import StreamError
from lensflow.stream.config import PairsConfig
from lensflow.stream.engine import PairEngine
from lensflow.stream.reference import camera_events, reference_table
from lensflow.stream.runner import REPLAY_COMMIT_EVERY, replay
from lensflow.stream.state import StateStore


def write_jsonl(path, events) -> None:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))


@pytest.mark.parametrize("window", ["tumbling:5s", "session:2s"])
def test_store_round_trips_the_engine(tmp_path, window):
    config = PairsConfig(window=window, state=tmp_path / "pairs.db")
    engine = PairEngine(config)
    for e in camera_events(1, n=800, disorder_ms=500):
        engine.process(e)
    store = StateStore(config.state, config)
    store.save(engine.snapshot())
    store.close()
    again = StateStore(config.state, config)
    restored = PairEngine(config)
    restored.restore(again.load())
    assert restored.snapshot() == engine.snapshot()
    # the tables are plain SQL for anyone who looks
    db = sqlite3.connect(config.state)
    rows = db.execute("SELECT label, pair_seen FROM pairs").fetchall()
    assert {label for label, _ in rows} == set(engine.table.rows)
    saved = json.loads(db.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()[0])
    assert saved["window"] == window and saved["state"] == str(config.state)


def test_saved_config_has_no_broker_password(tmp_path):
    config = PairsConfig(state=tmp_path / "s.db", mqtt="mqtt://socks:hunter2@broker:1883")
    StateStore(config.state, config).close()
    text = (tmp_path / "s.db").read_bytes()
    assert b"hunter2" not in text and b"mqtt://socks@broker:1883" in text


def test_state_made_with_other_options_is_refused(tmp_path):
    StateStore(tmp_path / "s.db", PairsConfig(window="tumbling:5s")).close()
    with pytest.raises(StreamError, match="window: 'tumbling:5s' there, 'session:2s' now"):
        StateStore(tmp_path / "s.db", PairsConfig(window="session:2s"))


def test_state_that_is_not_sqlite_is_refused(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not a database " * 100)
    with pytest.raises(StreamError, match="not a lensflow pairs state file"):
        StateStore(bad, PairsConfig())
    with pytest.raises(StreamError, match="is a directory"):
        StateStore(tmp_path, PairsConfig())


@pytest.mark.parametrize("window", ["tumbling:5s", "session:2s"])
def test_replay_resumes_where_it_stopped(tmp_path, window):
    """A replay stopped part-way (here: a file that grows) continues exactly from the state."""
    events = camera_events(3, n=2 * REPLAY_COMMIT_EVERY + 300, disorder_ms=800)
    path = tmp_path / "events.jsonl"
    config = PairsConfig(window=window, state=tmp_path / "pairs.db", replay=path)
    cut = REPLAY_COMMIT_EVERY + 123
    write_jsonl(path, events[:cut])
    first = replay(config)
    assert first.engine.stats.received == cut
    write_jsonl(path, events)  # the same first lines, then more
    resumed = replay(config)
    assert resumed.engine.stats.received == len(events)
    fresh = replay(PairsConfig(window=window, replay=path))
    assert resumed.engine.table.final() == fresh.engine.table.final()
    assert resumed.engine.snapshot() == fresh.engine.snapshot()
    assert fresh.engine.table.final() == reference_table(events, config)
    # replaying the same file again adds nothing: same table
    assert replay(config).engine.snapshot() == fresh.engine.snapshot()


def test_replay_refuses_a_changed_file(tmp_path):
    path = tmp_path / "events.jsonl"
    events = camera_events(4, n=300)
    write_jsonl(path, events)
    config = PairsConfig(state=tmp_path / "pairs.db", replay=path)
    replay(config)
    random.Random(0).shuffle(events)
    write_jsonl(path, events)
    with pytest.raises(StreamError, match="the file has changed"):
        replay(config)


def test_replay_errors_name_the_line(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(
        '{"image": "Google", "probability": 90, "ts": 1700000000000}\n\n{"image": "Google"}\n'
    )
    with pytest.raises(StreamError, match=r"events\.jsonl:3: message has no 'ts'"):
        replay(PairsConfig(replay=path))
    path.write_text("hello\nworld\n")
    with pytest.raises(StreamError, match=r"no line of .* is a prediction message"):
        replay(PairsConfig(replay=path))
    with pytest.raises(StreamError, match="no such file"):
        replay(PairsConfig(replay=tmp_path / "missing.jsonl"))


def test_replay_counts_broken_lines_as_invalid(tmp_path):
    path = tmp_path / "events.jsonl"
    events = camera_events(5, n=200)
    path.write_text("".join(json.dumps(e) + "\n" for e in events) + '{"image": "Goo')
    pipeline = replay(PairsConfig(replay=path))
    assert pipeline.engine.stats.invalid == 1
    assert pipeline.engine.table.final() == reference_table(events, PairsConfig())


def test_redelivered_last_message_after_a_restart_is_skipped(tmp_path):
    """QoS 1 re-sends the message whose PUBACK a killed process never sent: count it once."""
    from lensflow.stream.runner import PairsPipeline

    config = PairsConfig(state=tmp_path / "pairs.db", min_count=1)
    timed = json.dumps({"image": "Google", "probability": 90, "ts": 1_700_000_000_000}).encode()
    first = PairsPipeline(config)
    assert [c.number_socks_seen for c in first.handle(timed, arrival_ms=0)] == [1]
    first.close()  # "killed" after the commit
    second = PairsPipeline(config)
    assert second.handle(timed, arrival_ms=0) == []  # the redelivery
    assert second.duplicates == 1 and second.engine.stats.received == 1
    second.handle(timed, arrival_ms=0)  # later identical payloads are processed as usual
    assert second.engine.stats.received == 2
    second.close()
    untimed = json.dumps({"image": "Mongo", "probability": 90}).encode()
    third = PairsPipeline(config)
    third.handle(untimed, arrival_ms=1_700_000_000_000)
    third.close()
    fourth = PairsPipeline(config)
    fourth.handle(untimed, arrival_ms=1_700_000_009_000)  # no ts: may be a new frame, counted
    assert fourth.duplicates == 0 and fourth.engine.stats.received == 4
    fourth.close()
