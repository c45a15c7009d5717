"""The engine's state in SQLite: open windows, the pair table, counters, input progress.

Every save is one transaction, so a process killed at any moment leaves the last committed state
and a restart continues exactly from it. The tables are plain, for anyone who wants to look:

    sqlite3 pairs.db 'select * from pairs'
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lensflow.errors import StreamError
from lensflow.stream.config import PairsConfig

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS windows (
  label TEXT NOT NULL, start INTEGER NOT NULL, "end" INTEGER NOT NULL,
  count INTEGER NOT NULL, latest INTEGER NOT NULL, PRIMARY KEY (label, start));
CREATE TABLE IF NOT EXISTS pairs (
  label TEXT PRIMARY KEY, number_socks_seen INTEGER NOT NULL, pair_seen TEXT NOT NULL,
  last_seen INTEGER);
CREATE TABLE IF NOT EXISTS sources (
  source TEXT PRIMARY KEY, lines INTEGER NOT NULL, bytes INTEGER NOT NULL, sha256 TEXT NOT NULL);
"""


def _public_config(config: PairsConfig) -> dict[str, Any]:
    """The config as saved: paths as text, no broker password."""
    from lensflow.config import config_to_dict
    from lensflow.messaging import parse_mqtt_url

    data = config_to_dict(config)
    if config.mqtt:
        data["mqtt"] = str(parse_mqtt_url(config.mqtt))
    return data


@dataclass(frozen=True)
class SourceProgress:
    """How much of a replay file is already in the state (a prefix, identified by its hash)."""

    lines: int = 0
    bytes: int = 0
    sha256: str = ""


class StateStore:
    """One SQLite file per pipeline; refuses to continue a state made with other options."""

    def __init__(self, path: str | Path, config: PairsConfig) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise StreamError(f"--state {self.path} is a directory; give a file, e.g. pairs.db")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # The paho network thread saves, the main thread reads: the runner's lock serialises.
            self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a commit survives a killed process (not necessarily a power cut).
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as e:
            raise StreamError(
                f"--state {self.path} is not a lensflow pairs state file ({e}); "
                "give a new file name or delete it"
            ) from e
        self._check_options(config)
        with self.db:  # the full options of the latest run, for whoever inspects the file
            self.db.execute("BEGIN")
            self._put("config", _public_config(config))

    def meta(self, key: str) -> Any:
        """A value saved with save(extra=...), or None."""
        return self._meta(key)

    def _meta(self, key: str) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def _check_options(self, config: PairsConfig) -> None:
        wanted = config.engine_options()
        stored = self._meta("options")
        if stored is None:
            with self.db:
                self.db.execute("BEGIN")
                self._put("schema_version", SCHEMA_VERSION)
                self._put("options", wanted)
            return
        if stored != wanted:
            diff = ", ".join(
                f"{k}: {stored.get(k)!r} there, {wanted.get(k)!r} now"
                for k in wanted
                if stored.get(k) != wanted.get(k)
            )
            raise StreamError(
                f"--state {self.path} was made with other options ({diff}); "
                "use the same options to continue it, or a new --state file"
            )

    def _put(self, key: str, value: Any) -> None:
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value)),
        )

    def load(self) -> dict[str, Any] | None:
        """The saved engine snapshot, or None for a new state file."""
        snapshot = self._meta("engine")
        if snapshot is None:
            return None
        snapshot["open"] = {}
        for label, start, end, count, latest in self.db.execute(
            'SELECT label, start, "end", count, latest FROM windows ORDER BY label, start'
        ):
            snapshot["open"].setdefault(label, []).append([start, end, count, latest])
        snapshot["table"] = {
            label: [n, last]
            for label, n, last in self.db.execute(
                "SELECT label, number_socks_seen, last_seen FROM pairs"
            )
        }
        return snapshot

    def save(
        self,
        snapshot: dict[str, Any],
        source: str | None = None,
        progress: SourceProgress | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Replace the state with `snapshot` (and a source's progress) in one transaction."""
        from lensflow.stream.engine import pair_seen

        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM windows")
            self.db.executemany(
                'INSERT INTO windows (label, start, "end", count, latest) VALUES (?, ?, ?, ?, ?)',
                [(label, *w) for label, wins in snapshot["open"].items() for w in wins],
            )
            self.db.execute("DELETE FROM pairs")
            self.db.executemany(
                "INSERT INTO pairs (label, number_socks_seen, pair_seen, last_seen) "
                "VALUES (?, ?, ?, ?)",
                [(label, n, pair_seen(n), last) for label, (n, last) in snapshot["table"].items()],
            )
            self._put(
                "engine", {"stream_time": snapshot["stream_time"], "stats": snapshot["stats"]}
            )
            for key, value in (extra or {}).items():
                self._put(key, value)
            if source is not None and progress is not None:
                self.db.execute(
                    "INSERT INTO sources (source, lines, bytes, sha256) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(source) DO UPDATE SET lines = excluded.lines, "
                    "bytes = excluded.bytes, sha256 = excluded.sha256",
                    (source, progress.lines, progress.bytes, progress.sha256),
                )

    def progress(self, source: str) -> SourceProgress:
        row = self.db.execute(
            "SELECT lines, bytes, sha256 FROM sources WHERE source = ?", (source,)
        ).fetchone()
        return SourceProgress(*row) if row else SourceProgress()

    def close(self) -> None:
        self.db.close()
