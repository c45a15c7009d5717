"""`pairs --export-ksql`: the generated files, exactly, against golden files in tests/golden/ksql.

Regenerate after an intended change with: LENSFLOW_UPDATE_GOLDEN=1 pytest tests/unit/stream/test_ksql.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from lensflow.errors import LensflowError
from lensflow.stream.config import PairsConfig
from lensflow.stream.ksql import export_ksql, ksql_statements

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "ksql"
CASES = {
    # the default: session windows, as `lensflow pairs` runs locally
    "session": PairsConfig(),
    # the seed's tumbling windows, with a probability floor, two blank labels and a broker login
    "tumbling": PairsConfig(
        window="tumbling:5s",
        min_count=4,
        min_probability=60,
        blank=("Blank", "Nobody's"),
        grace="1500ms",
        mqtt="mqtt://socks:secret@broker.local:1884",
        topic="home/sockfound",
        out_topic="sockpairs",
    ),
}
FILES = ("pairs.sql", "mqtt-source.json", "README.md", "config.yaml")


@pytest.mark.parametrize("case", sorted(CASES))
def test_export_matches_golden_files(tmp_path, case):
    out = tmp_path / case
    written = export_ksql(CASES[case], out)
    assert sorted(p.name for p in written) == sorted(FILES)
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    assert_same_files(out, GOLDEN / case, FILES)


def assert_same_files(out: Path, golden_dir: Path, names: tuple[str, ...]) -> None:
    """Each file of `out` equals its golden copy (rewritten under LENSFLOW_UPDATE_GOLDEN=1)."""
    for name in names:
        golden = golden_dir / name
        text = (out / name).read_text()
        if os.environ.get("LENSFLOW_UPDATE_GOLDEN"):
            golden.parent.mkdir(parents=True, exist_ok=True)
            golden.write_text(text)
        assert text == golden.read_text(), f"{name} differs from {golden}"


def test_window_kind_and_options_follow_the_config():
    session = ksql_statements(PairsConfig(window="session:2500ms", min_count=6, grace="0s"))
    assert "WINDOW SESSION (2500 MILLISECONDS, GRACE PERIOD 0 SECONDS)" in session
    assert "HAVING COUNT(*) >= 6" in session
    assert "TUMBLING" not in session
    assert "probability >=" not in session  # no floor unless asked
    tumbling = ksql_statements(PairsConfig(window="tumbling:5s", min_probability=75))
    assert "WINDOW TUMBLING (SIZE 5 SECONDS, GRACE PERIOD 2 SECONDS)" in tumbling
    assert "probability >= 75.0" in tumbling
    assert "image != 'Blank'" in tumbling


def test_connector_and_config_never_contain_the_password(tmp_path):
    export_ksql(CASES["tumbling"], tmp_path / "k")
    connector = json.loads((tmp_path / "k" / "mqtt-source.json").read_text())
    assert connector["config"]["connector.class"] == "io.confluent.connect.mqtt.MqttSourceConnector"
    assert connector["config"]["mqtt.server.uri"] == "tcp://broker.local:1884"
    assert connector["config"]["kafka.topic"] == "home_sockfound"
    for name in FILES:
        assert "secret" not in (tmp_path / "k" / name).read_text()
    saved = yaml.safe_load((tmp_path / "k" / "config.yaml").read_text())
    assert (
        PairsConfig(**{**saved, "blank": tuple(saved["blank"])}).engine_options()
        == CASES["tumbling"].engine_options()
    )


def test_quotes_in_labels_are_escaped():
    sql = ksql_statements(PairsConfig(blank=("Nobody's",)))
    assert "image != 'Nobody''s'" in sql


def test_existing_directory_needs_overwrite(tmp_path):
    export_ksql(PairsConfig(), tmp_path / "k")
    with pytest.raises(LensflowError, match="already exists"):
        export_ksql(PairsConfig(), tmp_path / "k")
    export_ksql(PairsConfig(window="tumbling:5s"), tmp_path / "k", overwrite=True)
    assert "TUMBLING" in (tmp_path / "k" / "pairs.sql").read_text()
