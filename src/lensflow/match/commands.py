"""`lensflow match`: pair look-alike photos (socks) with no training, by embedding similarity."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from lensflow.match import DEFAULT_MIN_SIMILARITY


def match(
    photos: Path = typer.Argument(..., help="A folder of photos (sub-folders are searched too)."),
    bundle: Path | None = typer.Option(
        None, "--bundle", "-b", help="Embed with this bundle's backbone (default: pretrained)."
    ),
    model: str = typer.Option(
        "efficientnet_lite0", "--model", help="Pretrained backbone used without --bundle."
    ),
    min_similarity: float = typer.Option(
        DEFAULT_MIN_SIMILARITY,
        "--min-similarity",
        help="Cosine similarity a pair needs; photos without such a partner are singletons.",
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Output directory (default: PHOTOS-pairs beside the folder)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out."),
    threads: int | None = typer.Option(None, "--threads", help="onnxruntime threads."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
) -> None:
    """Pair look-alike photos without training: best one-to-one matching on cosine similarity.

    Writes pairs.json ({"pairs": \\[\\[a, b, similarity], ...], "singletons": \\[...]}, paths relative to PHOTOS), contact_sheet.png and config.yaml into --out.

    Example: lensflow match drawer-photos/ --out drawer-pairs

    Example: lensflow match drawer-photos/ --bundle bundle/ --min-similarity 0.5 --json
    """
    from lensflow.match.matcher import MatchConfig, match_photos
    from lensflow.progress import console

    config = MatchConfig(
        photos=photos,
        out=out,
        bundle=bundle,
        model=model,
        min_similarity=min_similarity,
        threads=threads,
        overwrite=overwrite,
    )
    result = match_photos(config, quiet=quiet or as_json)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    elif not quiet:
        for a, b, sim in result["pairs"]:
            console.print(f"{sim:.3f}  {a}  <->  {b}")
        for name in result["singletons"]:
            console.print(f"[yellow]no partner[/]  {name}")
        console.print(
            f"{len(result['pairs'])} pairs, {len(result['singletons'])} singletons -> "
            f"{result['out']}/pairs.json, contact_sheet.png"
        )


def register(app: typer.Typer) -> None:
    """Add `lensflow match`."""
    app.command("match")(match)
