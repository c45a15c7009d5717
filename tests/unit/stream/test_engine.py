"""The engine event by event, with no broker: both window kinds, lateness, blanks, the seed."""

from __future__ import annotations

import json

import pytest

from lensflow.errors import StreamError
from lensflow.stream.config import PairsConfig
from lensflow.stream.engine import Change, PairEngine
from lensflow.stream.reference import camera_events, reference_table

T0 = 1_700_000_000_000  # a multiple of 5 s: tumbling windows start here


def msg(label: str, seconds: float, probability: float = 95.0) -> dict:
    return {"image": label, "probability": probability, "ts": T0 + round(seconds * 1000)}


def feed(engine: PairEngine, events: list[dict]) -> list[Change]:
    changes: list[Change] = []
    for e in events:
        changes += engine.process(e)
    return changes


def run(label: str, start: float, stop: float, step: float = 0.1) -> list[dict]:
    """A sock held in front of the camera: one frame every `step` s from start to stop inclusive."""
    n = round((stop - start) / step)
    return [msg(label, start + i * step) for i in range(n + 1)]


def tumbling(**kw) -> PairEngine:
    return PairEngine(PairsConfig(window="tumbling:5s", min_count=4, **kw))


def session(**kw) -> PairEngine:
    return PairEngine(PairsConfig(window="session:2s", min_count=4, **kw))


# ---- tumbling -------------------------------------------------------------------------------


def test_tumbling_min_count_reached_on_the_fourth_event():
    e = tumbling()
    assert feed(e, [msg("Google", t) for t in (0.1, 0.2, 0.3)]) == []
    assert e.table.final() == {}
    assert e.process(msg("Google", 0.4)) == [Change("Google", 1, "Un-matched", T0 + 400)]
    # more events in the same window do not count again, but move "last seen"
    assert e.process(msg("Google", 0.5)) == []
    assert e.table.rows["Google"].last_seen == T0 + 500
    assert e.table.final() == {"Google": {"number_socks_seen": 1, "pair_seen": "Un-matched"}}


def test_tumbling_boundaries_start_inclusive_end_exclusive():
    e = tumbling()
    # 4.700, 4.800, 4.999 are in [0, 5); 5.000 starts [5, 10): no window reaches 4
    assert feed(e, [msg("Google", t) for t in (4.7, 4.8, 4.999, 5.0)]) == []
    assert sorted(w.start - T0 for w in e.open_windows()["Google"]) == [0, 5000]
    assert feed(e, [msg("Google", t) for t in (5.1, 5.2)]) == []
    assert e.process(msg("Google", 9.999)) == [Change("Google", 1, "Un-matched", T0 + 9999)]


def test_tumbling_sock_held_across_a_boundary_counts_twice():
    """The seed's flaw: one sock shown from 3 s to 7 s is two sightings, a false Pair."""
    e = tumbling()
    changes = feed(e, run("Google", 3.0, 7.0, step=0.2))
    assert [c.number_socks_seen for c in changes] == [1, 2]
    assert e.table.final() == {"Google": {"number_socks_seen": 2, "pair_seen": "Pair"}}


def test_session_sock_held_across_a_boundary_counts_once():
    e = session()
    changes = feed(e, run("Google", 3.0, 7.0, step=0.2))
    assert [c.number_socks_seen for c in changes] == [1]
    assert e.table.final() == {"Google": {"number_socks_seen": 1, "pair_seen": "Un-matched"}}


def test_sock_shown_three_times_is_a_false_pair_with_tumbling_windows():
    """The issue's reproduction: shown 3 times, one showing across 10 s -> 4 tumbling sightings."""
    events = run("Google", 1.0, 3.0) + run("Google", 8.0, 12.0) + run("Google", 16.0, 18.0)
    t, s = tumbling(), session()
    feed(t, events)
    feed(s, events)
    assert t.table.final() == {"Google": {"number_socks_seen": 4, "pair_seen": "Pair"}}
    assert s.table.final() == {"Google": {"number_socks_seen": 3, "pair_seen": "Un-matched"}}


@pytest.mark.parametrize("make", [tumbling, session], ids=["tumbling", "session"])
def test_seed_scenario_ghost_mongo_in_a_google_run(make):
    """A Google run with a ghost Mongo in the middle -> one Google sighting, no Mongo."""
    events = [*run("Google", 0.5, 1.4), msg("Mongo", 1.5), msg("Mongo", 1.6)]
    events += run("Google", 1.7, 3.5) + [msg("Blank", t) for t in (3.6, 3.7, 3.8, 3.9, 4.0)]
    e = make()
    feed(e, events)
    assert e.table.final() == {"Google": {"number_socks_seen": 1, "pair_seen": "Un-matched"}}
    assert e.stats.blank == 5
    assert e.stats.accepted == len(events) - 5


@pytest.mark.parametrize("make", [tumbling, session], ids=["tumbling", "session"])
def test_blank_and_low_probability_are_dropped_first(make):
    e = make(min_probability=60, blank=("Blank", "Nothing"))
    events = [msg("Blank", t) for t in (0.1, 0.2, 0.3, 0.4, 0.5)]
    events += [msg("Nothing", t) for t in (0.6, 0.7, 0.8, 0.9)]
    events += [msg("Google", t, probability=40.0) for t in (1.0, 1.1, 1.2, 1.3)]
    events += [{"image": "Google", "ts": T0 + 1400}]  # no probability: cannot pass a threshold
    assert feed(e, events) == []
    assert e.table.final() == {}
    assert (e.stats.blank, e.stats.low_probability, e.stats.accepted) == (9, 5, 0)
    assert e.stream_time is None  # dropped events do not move event time
    changes = feed(e, [msg("Google", t, probability=60.0) for t in (1.5, 1.6, 1.7, 1.8)])
    assert [c.number_socks_seen for c in changes] == [1]


def test_invalid_messages_are_counted_not_fatal():
    e = session()
    bad = [
        [],
        "Google",
        {"probability": 90},
        {"image": ""},
        {"image": 3},
        {"image": "Google", "probability": "high", "ts": T0},
        {"image": "Google", "ts": "yesterday"},
        {"image": "Google", "ts": float("nan")},
        {"image": "Google", "ts": True},
    ]
    assert feed(e, bad) == []
    assert e.stats.invalid == len(bad)
    assert e.stats.received == len(bad)


def test_event_time_from_ts_else_arrival_time():
    e = session()
    for i in range(3):
        e.process({"image": "Google", "probability": 90.0}, arrival_ms=T0 + i * 100)
    # an event with ts uses it even when an arrival time is given
    changes = e.process(msg("Google", 0.3), arrival_ms=T0 + 60_000)
    assert changes == [Change("Google", 1, "Un-matched", T0 + 300)]
    with pytest.raises(StreamError, match="no 'ts'"):
        e.process({"image": "Google"})


def test_tumbling_late_within_grace_counts_beyond_grace_is_dropped():
    e = tumbling(grace="2s")
    feed(e, [msg("Google", t) for t in (4.0, 4.1, 4.2)])
    feed(e, [msg("Mongo", 6.5)])  # stream time 6.5 s: [0, 5) closes at 5 + 2 = 7 s
    assert e.process(msg("Google", 4.9)) == [Change("Google", 1, "Un-matched", T0 + 4900)]
    feed(e, [msg("Databricks", t) for t in (5.5, 5.6, 5.7)])
    feed(e, [msg("Mongo", 7.0)])  # stream time 7 s: [0, 5) is closed now
    assert e.process(msg("Databricks", 4.99)) == []
    assert e.stats.late_dropped == 1
    assert "Databricks" not in e.table.final()
    assert e.process(msg("Databricks", 5.8)) == [Change("Databricks", 1, "Un-matched", T0 + 5800)]


def test_tumbling_out_of_order_events_land_in_their_window():
    e = tumbling()
    events = [msg("Google", t) for t in (5.3, 1.0, 5.1, 2.0, 5.2, 3.0, 4.0)]
    changes = feed(e, events)
    assert changes == [Change("Google", 1, "Un-matched", T0 + 4000)]
    assert e.process(msg("Google", 5.0)) == [Change("Google", 2, "Pair", T0 + 5300)]


def test_zero_grace_drops_anything_behind_stream_time_window():
    e = tumbling(grace="0s")
    feed(e, [msg("Google", 5.0)])
    assert e.process(msg("Google", 4.999)) == []
    assert e.stats.late_dropped == 1
    e.process(msg("Google", 5.0))  # the same instant is still in an open window
    assert e.stats.late_dropped == 1


# ---- sessions -------------------------------------------------------------------------------


def test_session_gap_is_inclusive():
    e = session()
    feed(e, [msg("Google", t) for t in (0.0, 2.0, 4.0)])  # exactly 2 s apart: one session
    assert [(w.start - T0, w.end - T0, w.count) for w in e.open_windows()["Google"]] == [
        (0, 4000, 3)
    ]
    assert e.process(msg("Google", 6.001)) == []  # 2.001 s after the last: a new session
    assert len(e.open_windows()["Google"]) == 2
    assert e.process(msg("Google", 4.5)) == [Change("Google", 1, "Un-matched", T0 + 6001)]


def test_session_min_count_and_two_sightings():
    e = session()
    assert feed(e, [msg("Google", t) for t in (0.0, 0.5, 1.0)]) == []
    assert e.process(msg("Google", 1.5)) == [Change("Google", 1, "Un-matched", T0 + 1500)]
    changes = feed(e, run("Google", 4.0, 5.0))  # 2.5 s later: a second sighting
    assert changes == [Change("Google", 2, "Pair", T0 + 4300)]


def test_session_late_event_bridging_two_sightings_merges_them():
    e = session(grace="2s")
    feed(e, run("Google", 0.0, 1.0, step=0.25))
    feed(e, run("Google", 3.5, 4.5, step=0.25))  # gap 2.5 s: two sightings
    assert e.table.rows["Google"].sightings == 2
    # an out-of-order frame at 2.2 s is within 2 s of both: one sock, not two
    assert e.process(msg("Google", 2.2)) == [Change("Google", 1, "Un-matched", T0 + 4500)]
    [w] = e.open_windows()["Google"]
    assert (w.start - T0, w.end - T0, w.count) == (0, 4500, 11)


def test_session_late_beyond_grace_is_dropped_and_counted():
    e = session(grace="1s")
    feed(e, [msg("Mongo", 10.0)])  # stream time 10 s: sessions ending before 7 s are closed
    assert e.process(msg("Google", 6.9)) == []
    assert e.stats.late_dropped == 1
    assert e.process(msg("Google", 7.0)) == []  # just within grace: accepted
    assert e.stats.late_dropped == 1
    assert e.stats.accepted == 2


def test_session_out_of_order_builds_the_same_session():
    e = session()
    times = [1.0, 0.2, 0.8, 0.4, 0.6]
    changes = feed(e, [msg("Google", t) for t in times])
    assert changes == [Change("Google", 1, "Un-matched", T0 + 1000)]
    [w] = e.open_windows()["Google"]
    assert (w.start - T0, w.end - T0, w.count) == (200, 1000, 5)


def test_closed_sessions_are_forgotten_but_keep_their_sightings():
    e = session(grace="0s")
    feed(e, run("Google", 0.0, 1.0))
    feed(e, [msg("Mongo", 30.0)])
    assert "Google" not in e.open_windows()
    assert e.table.final()["Google"]["number_socks_seen"] == 1


# ---- state and reference --------------------------------------------------------------------


@pytest.mark.parametrize("window", ["tumbling:5s", "session:2s", "session:500ms"])
@pytest.mark.parametrize("disorder_ms", [0, 1500])
def test_engine_equals_the_batch_reference(window, disorder_ms):
    config = PairsConfig(window=window, min_count=4, min_probability=50, grace="2s")
    for seed in range(3):
        events = camera_events(seed, disorder_ms=disorder_ms)
        e = PairEngine(config)
        feed(e, events)
        assert e.stats.late_dropped == 0
        assert e.table.final() == reference_table(events, config)
        assert e.table.final()  # the streams do produce sightings


@pytest.mark.parametrize("window", ["tumbling:5s", "session:2s"])
def test_snapshot_and_restore_continue_exactly(window):
    config = PairsConfig(window=window, min_count=4, grace="2s")
    events = camera_events(7, n=2000, disorder_ms=1000)
    whole = PairEngine(config)
    feed(whole, events)
    first = PairEngine(config)
    feed(first, events[:997])
    restored = PairEngine(config)
    restored.restore(json.loads(json.dumps(first.snapshot())))
    feed(restored, events[997:])
    assert restored.snapshot() == whole.snapshot()
    assert restored.table.final() == whole.table.final()
