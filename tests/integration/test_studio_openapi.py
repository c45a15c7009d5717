"""Studio's OpenAPI document tells the truth: schemathesis (`run --checks all`, every phase:
examples, coverage, fuzzing, stateful) against a real Studio on a free loopback port finds nothing.

Bounded and repeatable: a fixed seed, one worker, 15 examples per operation (about 700 requests).
Skipped: the Server-Sent Events route, whose answer is a stream that ends only when training
does, so a client that waits for the whole body (as schemathesis does) cannot check it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from lensflow.serve.background import BackgroundServer
from lensflow.studio.app import StudioConfig, create_app

pytestmark = pytest.mark.slow
DEAD_PROXY = "http://127.0.0.1:9"  # the discard port: nothing listens, nothing is fetched


def test_schemathesis_finds_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Generated URL uploads must not leave the machine: Studio's fetcher (httpx) goes through a
    # proxy that refuses every connection; requests to Studio itself stay direct.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, DEAD_PROXY)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    # No training worker: queued jobs stay queued, so the run only costs HTTP requests.
    app = create_app(StudioConfig(data_dir=tmp_path / "studio", start_worker=False))
    with BackgroundServer(app) as url:
        done = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "run", f"{url}/openapi.json",
             "--checks", "all", "--max-examples", "15", "--seed", "1", "--workers", "1",
             "--exclude-path-regex", "/events$", "--generation-database", "none",
             "--request-timeout", "30", "--no-color"],
            cwd=tmp_path, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    report = done.stdout + done.stderr
    assert done.returncode == 0, report[-6000:]
    assert "16 selected / 17 total" in report  # everything but the event stream
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert f"✅  {phase}" in report, report[-6000:]
    generated, passed = map(int, re.search(r"(\d+) generated, (\d+) passed", report).groups())
    assert generated == passed >= 16 * 15
