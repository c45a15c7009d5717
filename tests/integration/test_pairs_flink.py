"""`pairs --engine flink` on the real Flink runtime against the built-in engine, same streams.

One JVM per session (the `flink_env` fixture) and one job per window kind: every scenario runs
in the same job, each shifted a day later than the one before and with its labels prefixed by
its name, so scenarios cannot touch (no window, session or watermark reaches across the gap).
The built-in engine runs each scenario alone; the tables must be identical row for row (count,
Pair/Un-matched, last seen), and so must the counters (late, blank, low probability, ...).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lensflow.cli import app
from lensflow.stream.config import PairsConfig
from lensflow.stream.engine import PairEngine
from lensflow.stream.flink import create_job, export_sql, run_flink
from lensflow.stream.reference import camera_events

pytestmark = pytest.mark.slow

T0 = 1_700_000_000_000  # a multiple of every window size used here: windows align the same
DAY = 86_400_000
GRACE = 1000
CONFIGS = {
    "tumbling": PairsConfig(window="tumbling:5s", min_count=3, min_probability=50, grace="1s"),
    "session": PairsConfig(window="session:2s", min_count=3, min_probability=50, grace="1s"),
}


def ev(label: str, t: int, probability: float = 90.0) -> dict:
    return {"image": label, "probability": probability, "ts": t}


def run(label: str, times: list[int]) -> list[dict]:
    return [ev(label, t) for t in times]


def scenarios(kind: str) -> dict[str, list[dict]]:
    """name -> events (ts from 0); each one exercises one rule of the engine."""
    out = {
        # A window's last millisecond and the next one's first (tumbling); sessions whose
        # events are exactly the gap apart (one session) or one ms more (separate).
        "boundary": run("A", [4997, 4998, 4999, 5000, 5001, 5002])
        + run("B", [10_000, 12_000, 14_000])
        + run("C", [20_000, 22_001, 24_002, 26_003]),
        # Blank and low-probability events never count (Mongo stays at 2 of 3 events), and
        # never move event time on: the blank frames an hour ahead must not make Github late.
        "filtered": [ev("Blank", 3_600_000 + i) for i in range(5)]
        + run("Mongo", [0, 100])
        + [ev("Mongo", 150, probability=49.9), ev("Mongo", 160, probability=10)]
        + [{"image": "Mongo", "ts": 350}]  # no probability: under any floor
        + run("Github", [400, 500, 600]),
        # Late events: stream time moves to a window's close minus 1 ms (tumbling: end +
        # grace - 1; session: last + gap + grace) and one more event lands in it; then to
        # its close, and another one arrives too late.
        "late": run("L", [0, 100])
        + run("X", [5000 + GRACE - 1 if kind == "tumbling" else 100 + 2000 + GRACE])
        + run("L", [200])
        + run("M", [20_000, 20_100])
        + run("X", [25_000 + GRACE if kind == "tumbling" else 20_100 + 2000 + GRACE + 1])
        + run("M", [20_050]),
        # Out of order within the grace period: the same windows as in order.
        "disorder": run("D", [900, 300, 600, 0, 1200, 4900, 5100, 4950, 5300, 5200]),
        # One long showing across a tumbling boundary: two sightings (one for sessions).
        "straddle": run("S", list(range(3000, 7001, 500))),
        # Two sighted sessions 2.3 s apart; a late event in between merges them (sessions:
        # 2 sightings become 1; tumbling: all in one window anyway).
        "merge": run("G", [0, 100, 200, 2500, 2600, 2700, 1300]),
        # A camera-like stream: ghost labels, blanks, low probabilities, up to 6 s disorder.
        "camera": camera_events(seed=5, n=3000, disorder_ms=6000, t0=0),
    }
    return out


def combined(kind: str) -> tuple[list[dict], dict[str, list[dict]]]:
    """All scenarios in one stream (scenario k shifted by k days, labels 'name/label')."""
    stream, parts = [], {}
    for k, (name, events) in enumerate(sorted(scenarios(kind).items())):
        part = [
            {**e, "image": f"{name}/{e['image']}", "ts": T0 + k * DAY + e["ts"]} for e in events
        ]
        for e in part:  # blank labels stay blank
            if e["image"].endswith("/Blank"):
                e["image"] = "Blank"
        parts[name] = part
        stream += part
    return stream, parts


def builtin(config: PairsConfig, events: list[dict]) -> PairEngine:
    engine = PairEngine(config)
    for e in events:
        engine.process(e)
    return engine


def table_rows(engine: PairEngine) -> list[dict]:
    return sorted(engine.table.snapshot(), key=lambda r: r["label"])


def write_jsonl(path: Path, events: list[dict]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


# Tumbling runs with parallelism 2 (windows keyed by label on two subtasks; one source, so one
# watermark for all labels, as the engine's one stream time): the same table is the claim.
@pytest.mark.parametrize(("kind", "parallelism"), [("session", 1), ("tumbling", 2)])
def test_flink_table_equals_the_builtin_engine(flink_env, tmp_path, kind, parallelism):
    config = CONFIGS[kind]
    stream, parts = combined(kind)
    path = write_jsonl(tmp_path / "events.jsonl", stream)
    result = run_flink(config, path, parallelism=parallelism)
    whole = builtin(config, stream)

    # Scenarios are independent: the whole stream is the sum of its parts in the engine too.
    alone = {name: builtin(config, events) for name, events in parts.items()}
    assert table_rows(whole) == sorted(
        (r for e in alone.values() for r in table_rows(e)), key=lambda r: r["label"]
    )
    # The claim: Flink's table and counters are the built-in engine's, row for row.
    assert sorted(result.rows, key=lambda r: r["label"]) == table_rows(whole)
    assert result.final() == whole.table.final()
    assert result.stats.to_dict() == whole.stats.to_dict()
    assert result.view()["rows"] == whole.table.snapshot()

    # And the scenarios do exercise what they are named after (checked on the engine).
    final = whole.table.final()
    seen = {label: row["number_socks_seen"] for label, row in final.items()}
    assert alone["late"].stats.late_dropped == 1
    assert seen["late/L"] == 1 and "late/M" not in seen  # within grace counts, beyond not
    assert "filtered/Mongo" not in seen and seen["filtered/Github"] == 1
    assert alone["filtered"].stats.blank == 5
    assert alone["filtered"].stats.low_probability == 3
    assert alone["camera"].stats.late_dropped > 0
    if kind == "tumbling":
        assert seen["boundary/A"] == 2 and seen["straddle/S"] == 2
        assert seen["merge/G"] == 1 and seen["disorder/D"] == 2
    else:
        assert seen["boundary/A"] == 1 and seen["boundary/B"] == 1
        assert "boundary/C" not in seen  # 2001 ms apart: four sessions of one event
        assert seen["straddle/S"] == 1 and seen["merge/G"] == 1 and seen["disorder/D"] == 2

    # The statements the local run executed are, but for WITH (...), those of the export.
    exported = _statements(export_sql(config))
    for statement in result.statements:
        assert _without_with(statement) in {_without_with(s) for s in exported}


def _statements(sql: str) -> list[str]:
    body = "\n".join(line for line in sql.splitlines() if not line.startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


def _without_with(statement: str) -> str:
    return statement.split(") WITH (")[0]


def test_cli_engine_flink_prints_the_builtin_json(flink_env):
    """Through the CLI, from standard input (`lensflow live ... --stdout | lensflow pairs
    --replay - --engine flink`): Flink cannot read stdin, the runner copies it to a file."""
    events = camera_events(seed=3, n=1500, disorder_ms=1500, t0=T0)
    lines = "".join(json.dumps(e) + "\n" for e in [*events, {"image": 3}])
    args = ["pairs", "--replay", "-", "--window", "session:2s", "--json", "-q"]
    flink = CliRunner().invoke(app, [*args, "--engine", "flink"], input=lines)
    assert flink.exit_code == 0, flink.output
    plain = CliRunner().invoke(app, args, input=lines)
    assert plain.exit_code == 0, plain.output
    assert json.loads(flink.stdout) == json.loads(plain.stdout)
    assert json.loads(flink.stdout)  # some sock was seen


def test_documented_difference_changes_arrive_when_windows_close(flink_env, tmp_path):
    """The difference in timing the export's README documents: the built-in engine counts a
    sighting the moment a window reaches min-count and recounts when a late event merges two
    sessions, so its changes go 1, 2, 1; Flink emits a session once it closes: one change, 1.
    Same final table. Read here from the changelog of the very views the export writes."""
    config = CONFIGS["session"]
    events = [ev("G", T0 + t) for t in (0, 100, 200, 2500, 2600, 2700, 1300)]
    engine = PairEngine(config)
    changes = [c.number_socks_seen for e in events for c in engine.process(e)]
    assert changes == [1, 2, 1]

    path = write_jsonl(tmp_path / "events.jsonl", events)
    create_job(config, path)
    with flink_env.execute_sql("SELECT image, number_socks_seen FROM sock_pairs").collect() as rows:
        changelog = [(str(row.get_row_kind()), row[1]) for row in rows]
    assert changelog == [("+I", 1)]
