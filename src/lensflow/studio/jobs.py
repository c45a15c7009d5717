"""Training jobs: one at a time, each in its own process, surviving a Studio restart.

`JobWorker` (a thread inside the Studio server) takes the oldest queued job and runs
`python -m lensflow.studio.jobs DATA_DIR JOB_ID` as a child process; the child runs the same stage
functions the CLI uses, writing its progress into the database:

    images/ --lensflow data import--> dataset --split--> train (quick) --> export --> evaluate

A separate process keeps torch out of the server, lets the API answer while training runs, and
makes "Studio was stopped" detectable: on start, a job still marked `running` (its orphaned
child stopped, if a killed Studio left one) is queued again and re-runs from the start (every
stage overwrites its output, and quick training is minutes at most). Only once: a job that was
interrupted twice is failed with a reason, so a job that brings Studio down cannot loop forever.
Queued jobs simply run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lensflow.errors import LensflowError, StudioError
from lensflow.io import now_iso
from lensflow.studio.store import Conflict, Store

MODES = ("quick", "finetune", "scratch", "auto")
INTERRUPTED = (
    "interrupted: Studio stopped twice while this job was running; press Train to start again"
)
RESTARTED = "restarted: Studio stopped while this job was running"
MAX_RESTARTS = 1
MIN_IMAGES_PER_CATEGORY = 4  # at least 3 to learn from and 1 to check against
# Share of the progress bar per stage (training dominates).
STAGES = {"dataset": (0, 10), "train": (10, 80), "export": (80, 90), "evaluate": (90, 100)}


# -- the worker thread (inside the Studio process) ---------------------------------------------
class JobWorker:
    def __init__(self, store: Store, poll_seconds: float = 0.5) -> None:
        self.store = store
        self.poll_seconds = poll_seconds
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.child: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        recover_interrupted(self.store)
        self.thread = threading.Thread(target=self._loop, name="studio-jobs", daemon=True)
        self.thread.start()

    def stop(self, kill_child: bool = True) -> None:
        """Stop taking jobs; by default stop the running child too (re-queued on the next start)."""
        self.stopping.set()
        self.wake.set()
        child = self.child
        if kill_child and child is not None and child.poll() is None:
            child.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=10)
        if self.thread is not None:
            self.thread.join(timeout=15)

    def _loop(self) -> None:
        while not self.stopping.is_set():
            job_id = self.store.next_queued_job()
            if job_id is None:
                self.wake.wait(self.poll_seconds)
                self.wake.clear()
                continue
            self._run(job_id)

    def _run(self, job_id: str) -> None:
        job = self.store.get_job(job_id)
        job_dir = self.store.job_dir(job["model_id"], job_id)
        job_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "lensflow.studio.jobs", str(self.store.data_dir), job_id]
        with open(job_dir / "log.txt", "ab") as log:
            self.child = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
            self.store.update_job(job_id, pid=self.child.pid)
            code = self.child.wait()
        self.child = None
        if self.stopping.is_set():
            return  # left `running`: the next start queues it again
        job = self.store.get_job(job_id)
        if job["state"] in ("queued", "running"):  # the child died without saying why
            fail_job(self.store, job_id, f"training process exited with code {code}; see log.txt")


def recover_interrupted(store: Store) -> dict[str, str]:
    """Jobs a previous Studio left `running`: queued again once, then failed (orphaned children
    are stopped first). Returns {job id: "requeued" | "failed"}."""
    outcome = {}
    for job in store.jobs_in_state("running"):
        stop_orphan(job.get("pid"), job["id"])
        if job["restarts"] < MAX_RESTARTS:
            requeue_job(store, job)
            outcome[job["id"]] = "requeued"
        else:
            fail_job(store, job["id"], INTERRUPTED)
            outcome[job["id"]] = "failed"
    return outcome


def requeue_job(store: Store, job: dict[str, Any]) -> None:
    progress = {"stage": "queued", "percent": 0.0, "message": RESTARTED}
    store.update_job(job["id"], state="queued", pid=None, started=None, progress=progress,
                     restarts=job["restarts"] + 1)  # fmt: skip
    with contextlib.suppress(StudioError):  # the model may have been deleted meanwhile
        if store.get_model(job["model_id"])["job_id"] == job["id"]:
            store.set_state(job["model_id"], "queued")


def stop_orphan(pid: int | None, job_id: str) -> None:
    """Kill a child left running by a killed Studio, only if that pid still runs this job."""
    if not pid:
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return
    if b"lensflow.studio.jobs" in cmdline and job_id.encode() in cmdline:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)


def fail_job(store: Store, job_id: str, reason: str) -> None:
    job = store.get_job(job_id)
    store.update_job(job_id, state="failed", error=reason, finished=now_iso())
    with contextlib.suppress(StudioError):  # the model may have been deleted meanwhile
        model = store.get_model(job["model_id"])
        if model["job_id"] == job_id:
            store.set_state(job["model_id"], "error", error=reason)


def check_trainable(store: Store, model: dict[str, Any]) -> None:
    counts = store.counts(model["id"])
    ready = [c for c in model["categories"] if counts.get(c, 0) >= MIN_IMAGES_PER_CATEGORY]
    if len(ready) < 2:
        have = ", ".join(f"{c}: {counts.get(c, 0)}" for c in model["categories"]) or "none"
        raise Conflict(
            f"training needs at least 2 categories with {MIN_IMAGES_PER_CATEGORY}+ images each "
            f"(have {have}); upload more photos first"
        )


# -- the child process -------------------------------------------------------------------------
class Reporter:
    """Writes a job's progress (stage, percent, ETA, seconds per stage) into the database.

    At most 4 updates a second within a stage; a new stage is always written, and its start is
    logged to the job's log.txt with the time the previous stage took.
    """

    def __init__(self, store: Store, job_id: str) -> None:
        self.store, self.job_id = store, job_id
        self.started = time.monotonic()
        self.last = 0.0
        self.stage: str | None = None
        self.stage_started = self.started
        self.seconds: dict[str, float] = {}

    def __call__(self, stage: str, fraction: float, message: str = "", **extra: Any) -> None:
        now = time.monotonic()
        if stage != self.stage:
            if self.stage is not None:
                self.seconds[self.stage] = round(now - self.stage_started, 1)
                print(f"{self.stage}: {self.seconds[self.stage]} s", flush=True)
            self.stage, self.stage_started = stage, now
        elif now - self.last < 0.25 and fraction < 1.0:
            return
        self.last = now
        lo, hi = STAGES[stage]
        percent = lo + (hi - lo) * min(max(fraction, 0.0), 1.0)
        elapsed = now - self.started
        eta = elapsed * (100 - percent) / percent if percent > 1 else None
        progress = {
            "stage": stage,
            "percent": round(percent, 1),
            "elapsed_s": round(elapsed, 1),
            "eta_s": round(eta, 1) if eta is not None else None,
            "message": message,
            "stage_seconds": dict(self.seconds),
            **extra,
        }
        self.store.update_job(self.job_id, progress=progress)

    def finish(self) -> None:
        self("evaluate", 1.0, "done")
        self.seconds[str(self.stage)] = round(time.monotonic() - self.stage_started, 1)
        print(f"{self.stage}: {self.seconds[str(self.stage)]} s", flush=True)
        self.store.update_job(
            self.job_id,
            progress={**self.store.get_job(self.job_id)["progress"], "stage_seconds": self.seconds},
        )


def run_job(store: Store, job_id: str) -> None:
    """Run one job to the end; every failure ends as `failed` with a reason, never silently."""
    job = store.get_job(job_id)
    model_id = job["model_id"]
    store.update_job(job_id, state="running", started=now_iso(), pid=os.getpid())
    store.set_state(model_id, "training")
    report = Reporter(store, job_id)
    try:
        metrics = run_pipeline(store, job, report)
    except LensflowError as e:
        fail_job(store, job_id, e.message)
        return
    except Exception as e:  # a bug or an environment problem: still a clear failed state
        fail_job(store, job_id, f"{type(e).__name__}: {e}")
        raise
    report.finish()
    store.update_job(job_id, state="done", metrics=metrics, finished=now_iso())
    store.set_state(model_id, "ready")


def run_pipeline(store: Store, job: dict[str, Any], report: Callable[..., None]) -> dict[str, Any]:
    from lensflow.data import ImportConfig, import_dataset
    from lensflow.data.split import SplitConfig, split_dataset

    job_dir = store.job_dir(job["model_id"], job["id"])
    images = store.model_dir(job["model_id"]) / "images"
    report("dataset", 0.0, "checking images")
    dataset = job_dir / "dataset"
    import_dataset(
        ImportConfig(src=images, out=dataset, workers=1, min_per_class=1, overwrite=True),
        quiet=True,
    )
    split_dataset(SplitConfig(dataset, train=0.75, val=0.25, test=0.0, seed=0))
    report("dataset", 1.0, "dataset ready")

    run = job_dir / "run"
    train_stage(dataset, run, job["mode"], job["time_budget"], report)

    from lensflow.export.exporter import ExportConfig, export_run

    report("export", 0.0, "exporting to ONNX")
    bundle = job_dir / "bundle"
    export_run(ExportConfig(run=run, out=bundle, overwrite=True), quiet=True)

    from lensflow.evaluate.evaluator import EvaluateConfig, evaluate

    report("evaluate", 0.0, "evaluating on held-out photos")
    result = evaluate(
        EvaluateConfig(
            source=bundle,
            data=dataset,
            split="validation",
            out=job_dir / "report",
            tsne_max_points=200,
            projector_max_points=200,
            overwrite=True,
        ),
        quiet=True,
    )
    return result.summary


def train_stage(
    dataset: Path, run: Path, mode: str, time_budget: float | None, report: Callable[..., None]
) -> None:
    """`lensflow train` on the job's dataset, reporting progress from the run being written."""
    from lensflow.train.checkpoint import partial_dir
    from lensflow.train.config import TrainConfig
    from lensflow.train.run import train

    kwargs: dict[str, Any] = {"dataset": dataset, "out": run, "mode": mode, "quiet": True}
    if time_budget:
        kwargs["time_budget"] = float(time_budget)
    config = TrainConfig(**kwargs)
    report("train", 0.0, f"training ({mode})")
    done = threading.Event()
    watcher = threading.Thread(
        target=_watch_training,
        args=(partial_dir(run) / "metrics.csv", config, report, done),
        daemon=True,
    )
    watcher.start()
    try:
        train(config, overwrite=True)
    finally:
        done.set()
        watcher.join(timeout=5)
    report("train", 1.0, "trained")


def _watch_training(
    metrics: Path, config: Any, report: Callable[..., None], done: threading.Event
) -> None:
    """Epochs written so far (metrics.csv of the partial run) against the epoch/time budget."""
    started = time.monotonic()
    while not done.wait(1.0):
        epochs_done = 0
        with contextlib.suppress(OSError):
            epochs_done = max(0, len(metrics.read_text().splitlines()) - 1)
        by_epochs = epochs_done / max(config.epochs, 1)
        by_time = (time.monotonic() - started) / config.time_budget
        # Quick mode writes no epochs while it fits: creep towards 95% so the bar shows life.
        fraction = min(max(by_epochs, by_time, 0.0), 0.95)
        message = f"epoch {epochs_done}" if epochs_done else "extracting features and fitting"
        report("train", fraction, message, epoch=epochs_done)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m lensflow.studio.jobs DATA_DIR JOB_ID", file=sys.stderr)
        return 2
    store = Store(Path(args[0]))
    # SIGTERM (Studio stopping) -> KeyboardInterrupt-like exit; the next start marks it failed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    run_job(store, args[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
