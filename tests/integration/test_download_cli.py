"""`lensflow download LIST.csv --report` on the bad-answer zoo, then `lensflow data import` of OUT."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from lensflow.cli import app
from lensflow.data import load_dataset
from tests.unit.data.test_download import expected_zoo, serve, without_reasons, zoo_routes

__all__ = ["serve"]  # the fixture, re-exported so pytest finds it here


def test_download_cli_report_then_import(serve, sample_folder: Path, tmp_path: Path) -> None:
    routes, _ = zoo_routes(sample_folder)
    server = serve(routes)
    expected = expected_zoo(server)
    url_list = tmp_path / "urls.csv"
    url_list.write_text("url,label\n" + "".join(f"{e['url']},{e['label']}\n" for e in expected))
    out, report = tmp_path / "photos", tmp_path / "report.json"
    args = ["download", str(url_list), "--out", str(out), "--timeout", "0.6"]
    args += ["--max-bytes", "150000", "--report", str(report), "--quiet"]

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(report.read_text())
    assert without_reasons(doc["items"]) == expected
    assert doc["counts"]["downloaded"] == 5 and doc["counts"]["timeout"] == 2

    # Re-run: everything kept is `exists`, and --json prints the same report on stdout.
    rerun = CliRunner().invoke(app, [*args[:-3], "--retries", "0", "--json"])
    assert rerun.exit_code == 0, rerun.output
    again = json.loads(rerun.stdout)
    kept = [i["url"] for i in doc["items"] if i["status"] == "downloaded"]
    assert [i["url"] for i in again["items"] if i["status"] == "exists"] == kept

    # The folder is a ready import source: 3 hats + 2 shoes, nothing skipped.
    ds = tmp_path / "ds"
    imported = CliRunner().invoke(app, ["data", "import", str(out), "--out", str(ds), "--quiet"])
    assert imported.exit_code == 0, imported.output
    dataset = load_dataset(ds)
    assert dataset.classes == ["hat", "shoes"]
    assert sorted(r.label for r in dataset.records) == ["hat"] * 3 + ["shoes"] * 2


def test_download_cli_plain_list_needs_a_label(tmp_path: Path) -> None:
    url_list = tmp_path / "urls.txt"
    url_list.write_text("http://127.0.0.1:9/a.jpg\n")
    result = CliRunner().invoke(app, ["download", str(url_list), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "--label" in result.output and "Traceback" not in result.output
