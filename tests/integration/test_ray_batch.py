"""`lensflow predict --engine ray` on a real two-node Ray cluster in a network namespace.

The cluster (tests/fixtures/raycluster.py) is shared by every Ray test of the session; the CLI
runs inside the namespace with `--address` pointing at it, exactly as a user would run it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lensflow.predictor import Predictor

pytestmark = [pytest.mark.slow, pytest.mark.ray]


@pytest.fixture(scope="module")
def lists(tmp_path_factory, sample_folder) -> dict[str, Path]:
    """File lists: `first` (half the real images and a corrupt one) and `all` (every image)."""
    d = tmp_path_factory.mktemp("ray-batch")
    images = sorted((sample_folder / "validation").rglob("*.jpg"))
    corrupt = d / "corrupt.jpg"
    corrupt.write_bytes(images[0].read_bytes()[:500])  # a truncated JPEG
    first = [*images[: len(images) // 2], corrupt]
    (d / "first.txt").write_text("\n".join(str(p.absolute()) for p in first) + "\n")
    (d / "all.txt").write_text("\n".join(str(p.absolute()) for p in [*images, corrupt]) + "\n")
    return {"first": d / "first.txt", "all": d / "all.txt", "corrupt": corrupt}


def predict_on_cluster(ray_netns, bundle: Path, source: Path, out: Path) -> dict:
    return ray_netns.python_json(
        [
            "-m", "lensflow", "predict", str(bundle), str(source), "--out", str(out),
            "--engine", "ray", "--address", ray_netns.address, "--actors", "2", "--json",
        ]
    )  # fmt: skip


def read_rows(out: Path) -> dict[str, dict]:
    import pyarrow.parquet as pq

    return {r["path"]: r for r in pq.read_table(out).to_pylist()}


def test_ray_batch_equals_local_predictor_and_resumes(ray_netns, tiny_bundle, lists, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = tmp_path / "predictions.parquet"
    first = predict_on_cluster(ray_netns, tiny_bundle, lists["first"], out)
    n_first = len(lists["first"].read_text().split())
    assert first["engine"] == "ray" and first["rows"] == n_first
    assert first["predicted"] == n_first - 1 and first["errors"] == 1
    # both actors (1 CPU each, one per 1-CPU node) did work
    assert len(first["nodes"]) == 2

    rows = read_rows(out)
    bad = rows[str(lists["corrupt"].absolute())]
    assert bad["label"] is None and "cannot decode" in bad["error"]

    # Mark one finished row: a resumed run must keep it, not predict that image again.
    table = pq.read_table(out)
    kept = next(p for p, r in rows.items() if not r["error"])
    labels = [
        "KEPT" if p == kept else lab
        for p, lab in zip(table["path"].to_pylist(), table["label"].to_pylist())
    ]
    pq.write_table(table.set_column(1, "label", pa.array(labels)), out)

    resumed = predict_on_cluster(ray_netns, tiny_bundle, lists["all"], out)
    n_all = len(lists["all"].read_text().split())
    assert resumed["skipped"] == n_first - 1  # every prediction was kept
    # only the missing images ran, plus the corrupt file (error rows are retried)
    assert resumed["predicted"] == n_all - n_first and resumed["errors"] == 1
    rows = read_rows(out)
    assert len(rows) == resumed["rows"] == n_all
    assert rows[kept]["label"] == "KEPT"

    # Every prediction equals the local Predictor's on the same files.
    predictor = Predictor.from_bundle(tiny_bundle)
    paths = [p for p, r in rows.items() if not r["error"] and p != kept]
    expected = predictor.predict(paths, top_k=3)
    for path, want in zip(paths, expected, strict=True):
        got = rows[path]
        assert got["label"] == want.label and got["index"] == want.index
        assert got["probability"] == pytest.approx(want.probability, abs=1e-5)
        top = json.loads(got["top_k"])
        assert [t["label"] for t in top] == [lab for lab, _ in want.top_k]
        np.testing.assert_allclose(
            [t["probability"] for t in top], [p for _, p in want.top_k], atol=1e-5
        )
