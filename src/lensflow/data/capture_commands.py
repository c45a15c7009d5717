"""`lensflow capture`: save distinct frames of a camera/video/stream into OUT/<label>/."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def capture_command(
    source: str = typer.Option(
        ...,
        "--source",
        "-s",
        help="Camera index (0), video file, image folder or rtsp:// / http:// URL.",
    ),
    label: str = typer.Option(..., "--label", "-l", help="Class name: frames go to OUT/<label>/."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Folder of class folders (data import input)."
    ),
    count: int = typer.Option(30, "--count", "-n", help="How many frames to save."),
    interval: float = typer.Option(
        0.5, "--interval", help="Seconds between saved frames, at least (video: its own timeline)."
    ),
    min_change: float = typer.Option(
        2.0,
        "--min-change",
        help="Skip frames differing from the last saved one by less than this (percent, 0 = keep all).",
    ),
    view: str | None = typer.Option(
        None, "--view", help="Preview what is captured at http://HOST:PORT/ (e.g. 127.0.0.1:8090)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
) -> None:
    """Capture distinct photos of one class from a camera, video or stream.

    Near-identical consecutive frames are skipped (--min-change), so 30 photos are 30 different
    views. Run it once per class, then import the folder.

    Example: lensflow capture --source 0 --label hat --out photos --count 30 && lensflow data import photos --out ds
    """
    from lensflow.config import save_config
    from lensflow.data.capture import CaptureConfig, capture
    from lensflow.errors import CollectError, LiveError
    from lensflow.live.sources import source_kind
    from lensflow.live.view import FrameHub, ViewServer, parse_host_port
    from lensflow.progress import console, make_progress

    config = CaptureConfig(
        source=source, label=label, out=out, count=count, interval=interval,
        min_change=min_change, view=view,
    )  # fmt: skip
    try:
        source_kind(source)  # a missing source fails before any progress bar or server
    except LiveError as e:
        raise CollectError(e.message) from e
    hub = server = None
    if view:
        hub = FrameHub()
        server = ViewServer(hub, *parse_host_port(view), title=f"capture {label}")
        if not quiet:
            console.print(f"preview: [bold]{server.url}[/]")
    progress = make_progress(quiet or as_json)
    try:
        with progress:
            task = progress.add_task(f"capturing {label}", total=count, rate="")

            def on_saved(result) -> None:
                progress.update(
                    task, completed=result.saved,
                    rate=f"{result.frames_read} read, {result.skipped_similar} similar skipped",
                )  # fmt: skip

            def on_event(message: str) -> None:
                if not quiet:
                    console.print(f"[yellow]{message}")

            result = capture(config, on_saved=on_saved, on_event=on_event, hub=hub)
            on_saved(result)  # final counts, including frames skipped after the last save
    finally:
        if server is not None:
            server.close()
    # Hidden, so `lensflow data import OUT` does not count it as a stray file.
    save_config(config, Path(out) / f".capture-{label}.yaml")
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
    elif not quiet:
        short = (
            f" ({count - result.saved} short: {result.stopped_by})" if result.saved < count else ""
        )
        console.print(
            f"saved {result.saved} frames of '{label}' to {Path(out) / label}{short}; "
            f"{result.frames_read} read, {result.skipped_similar} near-duplicates and "
            f"{result.skipped_interval} within --interval skipped"
        )


def register(app: typer.Typer) -> None:
    """Add `lensflow capture` to the app."""
    app.command("capture")(capture_command)
