"""`pairs --export-flink` and the Flink SQL, without a JVM: golden files, the one-text rule
(only the connectors' WITH clauses differ between the local run and the export), the input
preparation and the one-line errors. The runtime itself: tests/integration/test_pairs_flink.py.

Regenerate after an intended change with: LENSFLOW_UPDATE_GOLDEN=1 pytest tests/unit/stream/test_flink.py
"""

from __future__ import annotations

import io
import json
import sys
import types
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lensflow.cli import app
from lensflow.errors import StreamError
from lensflow.stream import flink
from lensflow.stream.config import PairsConfig
from lensflow.stream.flink import (
    export_flink,
    export_sql,
    flink_job,
    kafka_source_with,
    prepare_events,
)
from tests.unit.stream.test_ksql import CASES, assert_same_files

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "flink"
FILES = ("pairs.sql", "mqtt-source.json", "README.md", "config.yaml")
LOCAL_WITH = {"connector": "filesystem", "path": "/tmp/x/events.jsonl", "format": "json"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_export_matches_golden_files(tmp_path, case):
    out = tmp_path / case
    written = export_flink(CASES[case], out)
    assert sorted(p.name for p in written) == sorted(FILES)
    assert_same_files(out, GOLDEN / case, FILES)


def statements(sql: str) -> list[str]:
    body = "\n".join(line for line in sql.splitlines() if not line.startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


def split_with(statement: str) -> tuple[str, str]:
    head, sep, tail = statement.partition(") WITH (")
    return head, sep + tail


@pytest.mark.parametrize("case", sorted(CASES))
def test_local_statements_are_the_exported_text_but_for_with(case):
    config = CASES[case]
    local = flink_job(config).statements(LOCAL_WITH)
    exported = statements(export_sql(config))
    # The export: SET lines, then exactly the local statements, then the sink and its INSERT.
    settings = [s for s in exported if s.startswith("SET ")]
    assert settings == [f"SET '{k}' = '{v}'" for k, v in flink_job(config).settings().items()]
    body = [s for s in exported if not s.startswith("SET ")]
    assert len(body) == len(local) + 2
    for mine, theirs in zip(local, body):
        assert split_with(mine)[0] == split_with(theirs)[0]
        if split_with(mine)[1]:  # the source: a filesystem here, Kafka there
            assert "'connector' = 'filesystem'" in split_with(mine)[1]
            assert "'connector' = 'kafka'" in split_with(theirs)[1]
    assert body[-2].startswith("CREATE TABLE sock_pairs_out") and "'upsert-kafka'" in body[-2]
    assert body[-1].startswith("INSERT INTO sock_pairs_out")


def test_sql_follows_the_config():
    session = flink_job(PairsConfig(window="session:2500ms", min_count=6, grace="0s"))
    text = "\n".join(session.statements(LOCAL_WITH))
    assert "SESSION(TABLE sock_events PARTITION BY image, DESCRIPTOR(event_time), " in text
    assert "INTERVAL '2.500' SECOND)" in text
    assert "event_time - INTERVAL '0.002' SECOND END" in text  # grace 0 + 2 ms (sessions)
    assert "WHERE events >= 6" in text
    assert "TUMBLE(" not in text and "probability >=" not in text  # no floor unless asked
    tumbling = flink_job(
        PairsConfig(window="tumbling:150s", min_probability=75, blank=("Blank", "Nobody's"))
    )
    text = "\n".join(tumbling.statements(LOCAL_WITH))
    assert "TUMBLE(TABLE sock_events, DESCRIPTOR(event_time), " in text
    assert "INTERVAL '0 00:02:30.000' DAY TO SECOND)" in text  # over 99 s: DAY TO SECOND
    assert "event_time - INTERVAL '2.001' SECOND END" in text  # grace 2 s + 1 ms (tumbling)
    assert "probability >= 75.0" in text and "image NOT IN ('Blank', 'Nobody''s')" in text
    with pytest.raises(StreamError, match="too long for a Flink interval"):
        flink_job(PairsConfig(window="tumbling:2400h")).views()


def test_kafka_source_reads_the_connector_topic():
    source = kafka_source_with(PairsConfig(topic="home/sockfound"))
    assert source["topic"] == "home_sockfound" and source["format"] == "json"


def test_prepare_events_keeps_the_engine_notion_of_a_message():
    lines = [
        {"image": "Google", "probability": 90, "ts": 5},
        {"image": "Blank", "probability": 90, "ts": 6},
        {"image": "Google", "probability": 10, "ts": 7},
        {"image": "Google", "probability": "97", "ts": 8},  # invalid: a string, not a number
        {"image": 3, "ts": 9},
    ]
    raw = "".join(json.dumps(m) + "\n" for m in lines) + "\nnot json\n"
    out = io.BytesIO()
    stats = prepare_events(PairsConfig(min_probability=50), io.BytesIO(raw.encode()), out, False)
    assert stats.to_dict() == {
        "received": 6,  # the empty line is not a message
        "accepted": 1,  # counted so far; the Flink run replaces it with what landed in windows
        "blank": 1,
        "low_probability": 1,
        "invalid": 3,
        "late_dropped": 0,
    }
    kept = [json.loads(line) for line in out.getvalue().splitlines()]
    assert kept == lines[:3]  # what Flink's SQL filters itself; never what the engine rejects


def test_prepare_events_from_stdin_gives_arrival_time_and_a_replay_needs_ts():
    untimed = (json.dumps({"image": "Mongo", "probability": 90}) + "\n").encode()
    out = io.BytesIO()
    prepare_events(PairsConfig(), io.BytesIO(untimed), out, from_stdin=True)
    assert isinstance(json.loads(out.getvalue())["ts"], int)
    with pytest.raises(StreamError, match=r"line 1: .*a replay needs a ts on every message"):
        prepare_events(PairsConfig(), io.BytesIO(untimed), io.BytesIO(), from_stdin=False)
    with pytest.raises(StreamError, match="no line of the replay is a prediction message"):
        prepare_events(PairsConfig(), io.BytesIO(b"[1]\n"), io.BytesIO(), from_stdin=False)


def test_missing_extra_or_java_is_one_line_naming_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pyflink", None)  # import fails as if not installed
    with pytest.raises(StreamError, match=r"needs the \[flink\] extra: pip install"):
        flink.check_flink()
    monkeypatch.setitem(sys.modules, "pyflink", types.ModuleType("pyflink"))
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))
    with pytest.raises(StreamError, match="needs a Java 17 runtime and found none"):
        flink.check_flink()
    old = tmp_path / "jdk8" / "bin" / "java"
    old.parent.mkdir(parents=True)
    old.write_text("#!/bin/sh\necho 'openjdk version \"1.8.0_392\"' >&2\n")
    old.chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk8"))
    with pytest.raises(StreamError, match=r"needs Java 17 \(at least 11\); .* is Java 8"):
        flink.check_flink()
    result = CliRunner().invoke(
        app, ["pairs", "--replay", str(tmp_path / "x.jsonl"), "--engine", "flink"]
    )
    assert result.exit_code == 2
    assert "Error: --engine flink needs Java 17" in result.stderr
    assert "Traceback" not in result.output


def test_cli_engine_choices_and_export(tmp_path):
    bad = CliRunner().invoke(app, ["pairs", "--replay", "x.jsonl", "--engine", "spark"])
    assert bad.exit_code == 2 and "--engine must be builtin or flink, got 'spark'" in bad.stderr
    live = CliRunner().invoke(
        app, ["pairs", "--mqtt", "mqtt://127.0.0.1:1", "--engine", "flink", "--state", "s.db"]
    )
    assert live.exit_code == 2
    assert "runs a --replay file as one Flink job (not --mqtt, --state)" in live.stderr
    out = tmp_path / "flink"
    result = CliRunner().invoke(
        app, ["pairs", "--export-flink", str(out), "--window", "tumbling:5s", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert sorted(Path(f).name for f in json.loads(result.stdout)["files"]) == sorted(FILES)
    assert "TUMBLE(TABLE sock_events" in (out / "pairs.sql").read_text()
    again = CliRunner().invoke(app, ["pairs", "--export-flink", str(out)])
    assert again.exit_code == 2 and "Traceback" not in again.output
