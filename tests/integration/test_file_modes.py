"""Every artifact lensflow writes gets the mode the user's umask gives: nothing 0600 or 0644 by fiat.

Made under umask 027 (files 0640, folders 0750), which differs both from mkstemp's 0600 and from
the usual 0644, so a writer that forces either would show here. Studio's real job (dataset,
packed arrays, quick run, bundle, evaluation, feature cache) makes most kinds; the CLI adds a
bundle with its archive and the .lst/.rec exports of the job's dataset.
"""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from lensflow.cli import app as cli_app
from lensflow.studio.app import StudioConfig, create_app
from tests.integration.test_studio_train import CATEGORIES, upload_sample, wait_for

pytestmark = pytest.mark.slow
UMASK = 0o027
FILE_MODE, DIR_MODE = 0o666 & ~UMASK, 0o777 & ~UMASK


@pytest.fixture
def umask_027() -> Iterator[None]:
    old = os.umask(UMASK)
    try:
        yield
    finally:
        os.umask(old)


def wrong_modes(root: Path) -> list[str]:
    """Every file or folder under `root` whose permission bits are not what the umask gives."""
    bad = []
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            continue
        want = DIR_MODE if path.is_dir() else FILE_MODE
        got = stat.S_IMODE(path.stat().st_mode)
        if got != want:
            bad.append(f"{path.relative_to(root)}: {got:o} (expected {want:o})")
    return bad


def cli(*args: str) -> dict:
    result = CliRunner().invoke(cli_app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_every_artifact_kind_follows_the_umask(
    tmp_path: Path, sample_folder: Path, monkeypatch: pytest.MonkeyPatch, umask_027: None
) -> None:
    root = tmp_path / "out"
    root.mkdir()
    monkeypatch.setenv("LENSFLOW_CACHE", str(root / "cache"))  # cache files are ours too
    with TestClient(create_app(StudioConfig(data_dir=root / "studio"))) as client:
        mid = client.post("/api/models", json={"name": "modes", "categories": CATEGORIES}).json()
        mid = mid["id"]
        upload_sample(client, mid, sample_folder)
        assert client.post(f"/api/models/{mid}/train", json={"mode": "quick"}).status_code == 202
        assert wait_for(client, mid, {"ready", "error"})[-1] == "ready"
        job_id = client.get(f"/api/models/{mid}").json()["job"]["id"]
        download = client.get(f"/api/models/{mid}/bundle")
        assert download.status_code == 200
    job_dir = root / "studio" / "models" / mid / "jobs" / job_id
    kinds = {
        "dataset": job_dir / "dataset" / "manifest.csv",
        "packed arrays": next((job_dir / "dataset" / "packed").rglob("*.npy")),
        "run": job_dir / "run" / "best.pt",
        "bundle": job_dir / "bundle" / "model.onnx",
        "evaluation": job_dir / "report" / "metrics.json",
        "Studio download": job_dir / "bundle.zip",
        "feature cache": next((root / "cache").rglob("*.npy")),
    }

    exported = cli("export", str(job_dir / "run"), "--out", str(root / "b"), "--archive")
    assert Path(exported["bundle"]) == root / "b"
    kinds["archive"] = root / "b.tar.gz"
    rec = cli("data", "export-rec", str(job_dir / "dataset"), "--out", str(root / "rec"))
    lst = cli("data", "export-lst", str(job_dir / "dataset"), "--out", str(root / "lst"))
    kinds[".rec"] = next(Path(p) for p in rec["files"] if p.endswith(".rec"))
    kinds[".lst"] = next(Path(p) for p in lst["files"] if p.endswith(".lst"))

    for kind, path in kinds.items():
        assert stat.S_IMODE(path.stat().st_mode) == FILE_MODE, f"{kind}: {path}"
    assert wrong_modes(root) == []
    # The modes travel inside the archives too: whoever unpacks them gets what the umask gave.
    with zipfile.ZipFile(io.BytesIO(download.content)) as zf:
        assert {i.external_attr >> 16 & 0o777 for i in zf.infolist()} == {FILE_MODE}
    with tarfile.open(kinds["archive"]) as tar:
        assert {m.mode for m in tar.getmembers() if m.isfile()} == {FILE_MODE}
