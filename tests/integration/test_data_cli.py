"""The real `lensflow data ...` commands on the bundled sample: import -> info -> pack, --help, atomicity."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lensflow.cli import app
from lensflow.data import PackedReader, load_dataset

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, ["data", *args])


@pytest.mark.parametrize("command", ["import", "info", "split", "pack", "export-lst", "export-rec"])
def test_help_has_an_example(command):
    result = run(command, "--help")
    assert result.exit_code == 0 and "Example: lensflow data" in result.output


def test_import_info_pack_json_contract(tmp_path, sample_folder):
    out = tmp_path / "ds"
    result = run("import", str(sample_folder), "--out", str(out), "--workers", "2", "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["classes"] == ["dress", "hat", "pants", "shoes", "t-shirt"]
    assert info["total"] == 80
    assert info["splits"] == {
        "train": dict.fromkeys(info["classes"], 12),
        "validation": dict.fromkeys(info["classes"], 4),
    }
    assert info["skipped"] == [] and info["duplicates"] == []
    again = run("info", str(out), "--json")
    assert again.exit_code == 0 and json.loads(again.stdout)["splits"] == info["splits"]
    text = run("info", str(out))
    assert "t-shirt" in text.output and "skipped: 0 file(s)" in text.output
    packed = run("pack", str(out), "--size", "32", "--resize", "40", "--json")
    assert packed.exit_code == 0, packed.output
    index = json.loads(packed.stdout)
    assert index["count"] == 80 and index["size"] == 32
    assert PackedReader(index["path"]).images.shape == (80, 32, 32, 3)
    assert json.loads(run("info", str(out), "--json").stdout)["packed"] == ["32-40-center-bicubic"]


def test_user_mistakes_are_messages_not_tracebacks(tmp_path, sample_folder):
    missing = run("import", str(tmp_path / "nope"), "--out", str(tmp_path / "ds"))
    assert missing.exit_code == 2 and "does not exist" in missing.output
    assert "Traceback" not in missing.output
    not_ds = run("info", str(tmp_path))
    assert not_ds.exit_code == 2 and "lensflow data import" in not_ds.output
    bad_fmt = run("import", str(sample_folder), "--out", str(tmp_path / "x"), "--format", "zip")
    assert bad_fmt.exit_code == 2 and "unknown --format 'zip'" in bad_fmt.output


def test_import_killed_midway_leaves_no_dataset(tmp_path, sample_folder):
    # ~2,400 hard links to the sample photos: long enough to kill the import while it writes.
    src = tmp_path / "src"
    photos = sorted(sample_folder.rglob("*.jpg"))
    for copy in range(30):
        for photo in photos:
            dest = src / photo.parent.name / f"{copy}-{photo.name}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.link(photo, dest)
    out = tmp_path / "ds"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lensflow",
            "data",
            "import",
            str(src),
            "--out",
            str(out),
            "-j",
            "1",
            "-q",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        partial = list(tmp_path.glob(".ds.*.partial"))
        if partial and sum(1 for _ in partial[0].rglob("*.jpg")) >= 100:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "import finished before it could be killed; make the source larger"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    leftovers = list(tmp_path.glob(".ds.*.partial"))
    assert leftovers and not (leftovers[0] / "card.json").exists()
    for candidate in (out, leftovers[0]):
        result = run("info", str(candidate))
        assert result.exit_code == 2, result.output
    # a new import into the same --out works despite the leftover
    ok = run("import", str(sample_folder), "--out", str(out), "-q")
    assert ok.exit_code == 0, ok.output
    assert len(load_dataset(out)) == 80


def test_python_m_entry_point_exists():
    assert (Path(__file__).parents[2] / "src" / "lensflow" / "__main__.py").is_file()


def test_export_and_reimport_via_cli(tmp_path, tiny_dataset):
    result = run(
        "export-rec", str(tiny_dataset), "--out", str(tmp_path / "rec"), "--name", "c", "--json"
    )
    assert result.exit_code == 0, result.output
    files = json.loads(result.stdout)["files"]
    assert {Path(f).name for f in files} >= {"c_train.rec", "c_train.idx", "c_val.rec", "c_val.idx"}
    back = run(
        "import",
        str(tmp_path / "rec" / "c_val.rec"),
        "--out",
        str(tmp_path / "back"),
        "--json",
        "--min-per-class",
        "0",
    )
    assert back.exit_code == 0, back.output
    info = json.loads(back.stdout)
    assert info["format"] == "rec" and info["splits"]["validation"]["hat"] == 4
    lst = run("export-lst", str(tiny_dataset), "--out", str(tmp_path / "lst"))
    assert lst.exit_code == 0 and "_train.lst" in lst.output


def test_split_cli_keeps_pre_split_and_resplits(tmp_path, tiny_dataset):
    import shutil

    copy = tmp_path / "ds"
    shutil.copytree(tiny_dataset, copy)
    kept = run("split", str(copy), "--json")
    assert kept.exit_code == 0 and json.loads(kept.stdout)["assigned"] == 0
    resplit = run(
        "split",
        str(copy),
        "--train",
        "0.5",
        "--val",
        "0.25",
        "--test",
        "0.25",
        "--resplit",
        "--json",
    )
    assert resplit.exit_code == 0, resplit.output
    counts = json.loads(resplit.stdout)["splits"]
    assert counts["test"] == dict.fromkeys(counts["train"], 4) and counts["train"]["hat"] == 8
    bad = run("split", str(copy), "--train", "0.9", "--val", "0.2", "--test", "0")
    assert bad.exit_code == 2 and "must add up to 1" in bad.output
