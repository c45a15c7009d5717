"""Studio's whole state machine with real training: created -> has_images -> queued -> training ->
ready, predictions, report, bundle; then a Studio restart in the middle of a job, which re-runs it."""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lensflow.studio.app import StudioConfig, create_app

pytestmark = pytest.mark.slow
CATEGORIES = ["hat", "shoes"]


def wait_for(client: TestClient, mid: str, states: set[str], timeout: float = 180) -> list[str]:
    """Poll the model until it reaches one of `states`; return every state seen on the way."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        model = client.get(f"/api/models/{mid}").json()
        if not seen or seen[-1] != model["state"]:
            seen.append(model["state"])
        if model["state"] in states:
            return seen
        time.sleep(0.2)
    raise AssertionError(f"model {mid} still {seen[-1]} after {timeout} s: {model}")


def held_back(sample_folder: Path, label: str) -> list[Path]:
    """validation/<label>/*.jpg: the last one is never uploaded and must be recognised."""
    return sorted((sample_folder / "validation" / label).glob("*.jpg"))


def upload_sample(client: TestClient, mid: str, sample_folder: Path) -> None:
    for label in CATEGORIES:
        photos = sorted((sample_folder / "train" / label).glob("*.jpg"))
        photos += held_back(sample_folder, label)[:-1]  # all but the one predicted below
        files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in photos]
        r = client.post(f"/api/models/{mid}/images", params={"category": label}, files=files)
        assert r.json()["counts"] == {"accepted": len(files), "rejected": 0}, r.text


def test_studio_train_predict_report_bundle_restart(tmp_path: Path, sample_folder: Path) -> None:
    config = StudioConfig(data_dir=tmp_path / "studio")
    with TestClient(create_app(config)) as client:
        mid = client.post("/api/models", json={"name": "clothes", "categories": CATEGORIES}).json()[
            "id"
        ]
        assert client.get(f"/api/models/{mid}").json()["state"] == "created"
        upload_sample(client, mid, sample_folder)
        assert client.get(f"/api/models/{mid}").json()["state"] == "has_images"

        r = client.post(f"/api/models/{mid}/train", json={"mode": "quick"})
        assert r.status_code == 202
        seen = ["has_images", *wait_for(client, mid, {"ready", "error"})]
        model = client.get(f"/api/models/{mid}").json()
        assert model["state"] == "ready", model
        assert seen[0] == "has_images" and seen[-1] == "ready"
        assert set(seen[1:-1]) <= {"queued", "training"}
        assert model["job"]["progress"]["percent"] == 100
        assert 0 <= model["metrics"]["accuracy"] <= 1

        # Held-back photos (validation/) of each category are predicted right.
        for label in CATEGORIES:
            photo = held_back(sample_folder, label)[-1]
            r = client.post(
                f"/api/models/{mid}/predict",
                content=photo.read_bytes(),
                headers={"Content-Type": "image/jpeg"},
            )
            pred = r.json()["predictions"][0]
            assert pred["label"] == label, pred
            assert len(pred["top_k"]) == 2

        r = client.post(
            f"/api/models/{mid}/predict", content=b"<html>", headers={"Content-Type": "image/jpeg"}
        )
        assert r.status_code == 400 and "cannot classify" in r.json()["detail"]

        report = client.get(f"/api/models/{mid}/report").json()
        metrics = report["metrics"]
        assert metrics["classes"] == CATEGORIES
        assert sum(map(sum, metrics["confusion_matrix"])) == metrics["n"] > 0
        for mistake in report["worst_mistakes"]:
            assert mistake["true"] != mistake["predicted"]
            img = client.get(f"/api/models/{mid}/report/images/{mistake['id']}")
            assert img.status_code == 200
        assert "<html" in client.get(report["report_html"]).text.lower()

        # Server-Sent Events: a settled model yields its state once and the stream ends.
        events = client.get(f"/api/models/{mid}/events").text
        assert json.loads(events.split("data: ", 1)[1])["state"] == "ready"

        # The bundle zip is a real bundle: the Predictor loads it and agrees with the API.
        r = client.get(f"/api/models/{mid}/bundle")
        assert r.headers["content-type"] == "application/zip"
        with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
            zf.extractall(tmp_path / "dl")
        from lensflow.predictor import Predictor

        predictor = Predictor.from_bundle(tmp_path / "dl" / "bundle")
        assert predictor.classes == CATEGORIES

        # Restart during a job: stop Studio while it trains again.
        client.post(f"/api/models/{mid}/train", json={"mode": "quick"})
        wait_for(client, mid, {"training"}, timeout=60)
        job_id = client.get(f"/api/models/{mid}").json()["job"]["id"]
    # (leaving the block stopped the app: its worker terminated the training process)

    with TestClient(create_app(config)) as client:
        # The interrupted job was queued again and runs from the start.
        job = client.get(f"/api/jobs/{job_id}").json()
        assert job["restarts"] == 1 and job["state"] in ("queued", "running")
        # The earlier trained version still answers while the job runs again.
        photo = held_back(sample_folder, "hat")[-1]
        r = client.post(
            f"/api/models/{mid}/predict",
            content=photo.read_bytes(),
            headers={"Content-Type": "image/jpeg"},
        )
        assert r.json()["predictions"][0]["label"] == "hat"
        assert wait_for(client, mid, {"ready", "error"})[-1] == "ready"
        assert client.get(f"/api/jobs/{job_id}").json()["state"] == "done"
