"""`lensflow download`: fetch a list of image URLs into OUT/<label>/ for `lensflow data import`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from lensflow.progress import console


def download_command(
    url_list: Path = typer.Argument(
        ..., metavar="LIST", help="A text file of URLs (one per line) or a CSV url,label."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to fill: OUT/<label>/<image>."),
    label: str | None = typer.Option(
        None, "--label", "-l", help="Label of a plain URL list (and of CSV rows without one)."
    ),
    workers: int = typer.Option(8, "--workers", "-j", help="Concurrent downloads."),
    timeout: float = typer.Option(10.0, "--timeout", help="Seconds per request, whole body."),
    retries: int = typer.Option(2, "--retries", help="Extra attempts after a timeout or a 5xx."),
    max_bytes: int = typer.Option(
        20_000_000, "--max-bytes", help="Refuse bodies larger than this (too_large)."
    ),
    report: Path | None = typer.Option(
        None, "--report", help="Write the JSON report {items, counts, by_label} here."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
    as_json: bool = typer.Option(False, "--json", help="Print the JSON report on stdout."),
) -> None:
    """Download images from a URL list, checked and de-duplicated, resumable.

    Every body is fully decoded: HTML pages, truncated files, oversized bodies, HTTP errors and timeouts are reported per URL and never stop the run. Retries (with back-off) on timeouts and 5xx only.

    Re-running skips URLs already downloaded (`exists`); identical bytes are kept once (`duplicate`). The folder feeds straight into `lensflow data import`.

    Example: lensflow download hats.txt --label hat --out photos && lensflow data import photos --out ds

    Example: lensflow download urls.csv --out photos --workers 16 --report download.json
    """
    from lensflow.config import save_config
    from lensflow.data.download import DownloadConfig, download_list
    from lensflow.io import atomic_write_json

    config = DownloadConfig(
        list_file=url_list,
        out=out,
        label=label,
        workers=workers,
        timeout=timeout,
        retries=retries,
        max_bytes=max_bytes,
    )
    result = download_list(config, quiet=quiet or as_json)
    # Hidden, so `lensflow data import OUT` does not count it as a stray file.
    save_config(config, out / ".download.yaml")
    doc = result.report()
    if report is not None:
        atomic_write_json(report, doc)
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
    elif not quiet:
        _print_summary(doc)


def _print_summary(doc: dict) -> None:
    from rich.table import Table

    from lensflow.data.download import STATUSES

    used = [s for s in STATUSES if doc["counts"][s]]
    table = Table(title="download", title_justify="left")
    table.add_column("label")
    for status in used:
        table.add_column(status, justify="right")
    for label, counts in doc["by_label"].items():
        table.add_row(label, *(str(counts[s]) for s in used))
    console.print(table)
    failed = [i for i in doc["items"] if i["status"] not in ("downloaded", "exists")]
    for item in failed[:20]:
        console.print(
            f"  {item['status']:<10} {item['url']}  {item.get('reason', '')}", markup=False
        )
    if len(failed) > 20:
        console.print(f"  ... and {len(failed) - 20} more (see --report)", markup=False)


def register(app: typer.Typer) -> None:
    """Add `lensflow download` to `app`."""
    app.command("download")(download_command)
