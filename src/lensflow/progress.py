"""The one progress display: rich bars with count, rate and ETA on stderr; silent with quiet=True."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")

# Progress and status go to stderr so that `--json` output on stdout stays machine-readable.
console = Console(stderr=True)


def make_progress(quiet: bool = False) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("[cyan]{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=quiet,
        transient=False,
    )


def track(
    items: Iterable[T],
    description: str,
    total: int | None = None,
    unit: str = "img",
    quiet: bool = False,
) -> Iterator[T]:
    """Iterate with a progress bar showing items/s and ETA."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with make_progress(quiet) as progress:
        task = progress.add_task(description, total=total, rate="")
        for item in items:
            yield item
            t = progress.tasks[task]
            speed = t.speed or 0.0
            progress.update(task, advance=1, rate=f"{speed:,.1f} {unit}/s")
