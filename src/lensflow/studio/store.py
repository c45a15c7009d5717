"""Studio state: models, their images and training jobs in SQLite under --data-dir.

Files live beside the database:

    DATA_DIR/studio.sqlite3
    DATA_DIR/models/<model id>/images/<category>/<image id>.<ext>   accepted uploads
    DATA_DIR/models/<model id>/jobs/<job id>/{dataset,run,bundle,report,log.txt}

A model's state follows Nanonets' machine:

    created -> has_images -> queued -> training -> ready | error

`created`/`has_images` come from the image count; `queued`, `training`, `ready` and `error` are
stored when a job changes them. The database is opened per call (WAL mode) so the API threads,
the job worker thread and the training subprocess can all use it.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lensflow.errors import StudioError
from lensflow.io import now_iso

SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    categories TEXT NOT NULL,          -- JSON list, in creation order
    state TEXT NOT NULL,               -- created|has_images|queued|training|ready|error
    error TEXT,
    job_id TEXT,                       -- the latest job
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model_id TEXT NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    category TEXT NOT NULL,
    path TEXT NOT NULL,                -- relative to the model directory
    sha256 TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    source TEXT NOT NULL,              -- the upload's name or URL, for messages only
    created TEXT NOT NULL,
    UNIQUE (model_id, sha256)
);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    model_id TEXT NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    state TEXT NOT NULL,               -- queued|running|done|failed
    mode TEXT NOT NULL,
    time_budget REAL,
    progress TEXT NOT NULL,            -- JSON {stage, percent, epoch, epochs, eta_s, message}
    metrics TEXT,                      -- JSON, when done
    error TEXT,
    pid INTEGER,
    restarts INTEGER NOT NULL DEFAULT 0, -- times re-queued after Studio stopped mid-job
    created TEXT NOT NULL,
    started TEXT,
    finished TEXT
);
"""

STATES = ("created", "has_images", "queued", "training", "ready", "error")
BUSY = ("queued", "training")


class Conflict(StudioError):
    """A valid request the model's current state (or its other categories) does not allow."""

    status = 409


class Store:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.db_path = self.data_dir / "studio.sqlite3"
        with self.connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
            _add_missing_columns(db)

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA foreign_keys=ON")
        try:
            yield db
        finally:
            db.close()

    def model_dir(self, model_id: str) -> Path:
        return self.data_dir / "models" / model_id

    def job_dir(self, model_id: str, job_id: str) -> Path:
        return self.model_dir(model_id) / "jobs" / job_id

    # -- models ----------------------------------------------------------------------------------
    def create_model(self, name: str, categories: list[str]) -> str:
        model_id = uuid.uuid4().hex[:12]
        now = now_iso()
        with self.connect() as db:
            db.execute(
                "INSERT INTO models (id, name, categories, state, created, updated) "
                "VALUES (?, ?, ?, 'created', ?, ?)",
                (model_id, name, json.dumps(categories), now, now),
            )
        self.model_dir(model_id).mkdir(parents=True, exist_ok=True)
        return model_id

    def get_model(self, model_id: str) -> dict[str, Any]:
        with self.connect() as db:
            row = db.execute("SELECT * FROM models WHERE id = ?", (model_id,)).fetchone()
        if row is None:
            raise StudioError(f"no model {model_id!r}; GET /api/models lists them")
        model = dict(row)
        model["categories"] = json.loads(model["categories"])
        return model

    def list_model_ids(self) -> list[str]:
        with self.connect() as db:
            return [r[0] for r in db.execute("SELECT id FROM models ORDER BY created, id")]

    def set_categories(self, model_id: str, categories: list[str]) -> None:
        with self.connect() as db:
            db.execute(
                "UPDATE models SET categories = ?, updated = ? WHERE id = ?",
                (json.dumps(categories), now_iso(), model_id),
            )

    def set_state(
        self, model_id: str, state: str, error: str | None = None, job_id: str | None = None
    ) -> None:
        assert state in STATES, state
        with self.connect() as db:
            if job_id is None:
                db.execute(
                    "UPDATE models SET state = ?, error = ?, updated = ? WHERE id = ?",
                    (state, error, now_iso(), model_id),
                )
            else:
                db.execute(
                    "UPDATE models SET state = ?, error = ?, job_id = ?, updated = ? WHERE id = ?",
                    (state, error, job_id, now_iso(), model_id),
                )

    def delete_model(self, model_id: str) -> None:
        with self.connect() as db:
            db.execute("DELETE FROM models WHERE id = ?", (model_id,))

    # -- images ----------------------------------------------------------------------------------
    def add_image(
        self,
        model_id: str,
        category: str,
        path: str,
        sha256: str,
        width: int,
        height: int,
        source: str,
    ) -> int:
        with self.connect() as db:
            cur = db.execute(
                "INSERT INTO images (model_id, category, path, sha256, width, height, source, "
                "created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (model_id, category, path, sha256, width, height, source, now_iso()),
            )
            return int(cur.lastrowid or 0)

    def find_image_by_hash(self, model_id: str, sha256: str) -> dict[str, Any] | None:
        with self.connect() as db:
            row = db.execute(
                "SELECT * FROM images WHERE model_id = ? AND sha256 = ?", (model_id, sha256)
            ).fetchone()
        return dict(row) if row else None

    def get_image(self, model_id: str, image_id: int) -> dict[str, Any]:
        with self.connect() as db:
            row = db.execute(
                "SELECT * FROM images WHERE model_id = ? AND id = ?", (model_id, image_id)
            ).fetchone()
        if row is None:
            raise StudioError(f"model {model_id} has no image {image_id}")
        return dict(row)

    def images(self, model_id: str) -> list[dict[str, Any]]:
        with self.connect() as db:
            rows = db.execute(
                "SELECT * FROM images WHERE model_id = ? ORDER BY id", (model_id,)
            ).fetchall()
        return [dict(r) for r in rows]

    def counts(self, model_id: str) -> dict[str, int]:
        with self.connect() as db:
            rows = db.execute(
                "SELECT category, COUNT(*) FROM images WHERE model_id = ? GROUP BY category",
                (model_id,),
            ).fetchall()
        return {r[0]: int(r[1]) for r in rows}

    # -- jobs ------------------------------------------------------------------------------------
    def create_job(self, model_id: str, mode: str, time_budget: float | None) -> str:
        job_id = uuid.uuid4().hex[:12]
        progress = json.dumps({"stage": "queued", "percent": 0.0})
        with self.connect() as db:
            db.execute(
                "INSERT INTO jobs (id, model_id, state, mode, time_budget, progress, created) "
                "VALUES (?, ?, 'queued', ?, ?, ?, ?)",
                (job_id, model_id, mode, time_budget, progress, now_iso()),
            )
        return job_id

    def get_job(self, job_id: str) -> dict[str, Any]:
        with self.connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise StudioError(f"no job {job_id!r}")
        job = dict(row)
        job["progress"] = json.loads(job["progress"])
        job["metrics"] = json.loads(job["metrics"]) if job["metrics"] else None
        return job

    def next_queued_job(self) -> str | None:
        with self.connect() as db:
            row = db.execute(
                "SELECT id FROM jobs WHERE state = 'queued' ORDER BY created, rowid LIMIT 1"
            ).fetchone()
        return row[0] if row else None

    def jobs_in_state(self, state: str) -> list[dict[str, Any]]:
        with self.connect() as db:
            ids = [r[0] for r in db.execute("SELECT id FROM jobs WHERE state = ?", (state,))]
        return [self.get_job(i) for i in ids]

    def update_job(self, job_id: str, **fields: Any) -> None:
        for key in ("progress", "metrics"):
            if key in fields and fields[key] is not None:
                fields[key] = json.dumps(fields[key])
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.connect() as db:
            db.execute(f"UPDATE jobs SET {sets} WHERE id = ?", (*fields.values(), job_id))


def _add_missing_columns(db: sqlite3.Connection) -> None:
    """Columns added after a data dir was created (CREATE TABLE IF NOT EXISTS keeps old tables)."""
    have = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
    if "restarts" not in have:
        db.execute("ALTER TABLE jobs ADD COLUMN restarts INTEGER NOT NULL DEFAULT 0")
