"""`lensflow data ...`: import, info, split, pack, export-lst, export-rec.

Thin: parse options, build the command's config, call one function of the data stage.
Progress and summaries go to stderr; `--json` prints one JSON document on stdout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from lensflow.errors import DataError
from lensflow.progress import console


def _emit_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))


def parse_class_names(value: str | None) -> tuple[str, ...] | None:
    """`--class-names`: "a,b,c" or a text file with one name per line."""
    if not value:
        return None
    path = Path(value)
    if path.is_file():
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    else:
        names = [n.strip() for n in value.split(",")]
    if not names or any(not n for n in names):
        raise DataError(f"--class-names {value!r}: give comma-separated names or a file of lines")
    if len(set(names)) != len(names):
        raise DataError(f"--class-names has repeated names: {value!r}")
    return tuple(names)


def import_command(
    src: Path = typer.Argument(
        ..., help="A folder of class folders, or an IDX/CSV/.lst/.rec file."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="The dataset directory to create."),
    format: str = typer.Option("auto", "--format", "-f", help="auto|folder|idx|csv|lst|rec"),
    labels: Path | None = typer.Option(None, "--labels", help="IDX labels file (--format idx)."),
    class_names: str | None = typer.Option(
        None, "--class-names", help="Names for integer labels: 'a,b,c' or a file, one per line."
    ),
    root: Path | None = typer.Option(None, "--root", help=".lst image root (default: its folder)."),
    min_per_class: int = typer.Option(10, "--min-per-class", help="Warn below this many images."),
    workers: int = typer.Option(0, "--workers", "-j", help="Decode processes (0 = all cores)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
    as_json: bool = typer.Option(False, "--json", help="Print `data info --json` of the result."),
) -> None:
    """Import images into a validated, self-contained dataset directory.

    Every image is fully decoded: broken, empty, non-image and absurdly large files are skipped
    and listed in report.json; CMYK, palette, 16-bit and grayscale images become RGB; EXIF
    rotation is applied. Pre-split folders (train/, validation/ or val/, test/) keep their split.

    Example: lensflow data import photos/ --out ds

    Example: lensflow data import t10k-images-idx3-ubyte.gz --format idx --labels t10k-labels-idx1-ubyte.gz --out mnist
    """
    from lensflow.data.dataset import load_dataset
    from lensflow.data.importer import ImportConfig, import_dataset
    from lensflow.data.info import dataset_info, summary_text

    config = ImportConfig(
        src=src,
        out=out,
        format=format,
        labels=labels,
        class_names=parse_class_names(class_names),
        root=root,
        min_per_class=min_per_class,
        workers=workers,
        overwrite=overwrite,
    )
    result = import_dataset(config, quiet=quiet or as_json)
    info = dataset_info(load_dataset(result.path))
    if as_json:
        _emit_json(info)
    elif not quiet:
        console.print(summary_text(info), markup=False, highlight=False)
        console.print(
            f"imported {result.total} images into {result.path}, skipped {result.skipped} file(s)",
            markup=False,
        )


def info_command(
    dataset: Path = typer.Argument(..., help="A dataset directory."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output on stdout."),
) -> None:
    """Counts per class and split, skipped files, duplicates, leaks and image sizes.

    Example: lensflow data info ds --json
    """
    from lensflow.data.dataset import load_dataset
    from lensflow.data.info import dataset_info, summary_text

    info = dataset_info(load_dataset(dataset))
    if as_json:
        _emit_json(info)
    else:
        typer.echo(summary_text(info))


def pack_command(
    dataset: Path = typer.Argument(..., help="A dataset directory."),
    size: int = typer.Option(224, "--size", help="Side of the stored square images."),
    resize: int | None = typer.Option(
        None, "--resize", help="Shorter side before the crop (default size/0.875: 224 -> 256)."
    ),
    center_crop: bool = typer.Option(
        True, "--center-crop/--no-center-crop", help="Center crop, or squash to size x size."
    ),
    crop: str | None = typer.Option(
        None, "--crop", help="center | none (squash) | pad (letterbox); overrides --center-crop."
    ),
    interpolation: str = typer.Option("bicubic", "--interpolation", help="bicubic|bilinear|..."),
    workers: int = typer.Option(0, "--workers", "-j", help="Decode processes (0 = all cores)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print the pack's index as JSON."),
) -> None:
    """Decode once, resize and crop, store uint8 arrays for fast training reads.

    Example: lensflow data pack ds --size 224 --resize 256 --center-crop
    """
    import time

    from lensflow.data.pack import PackedReader, pack_dataset

    start = time.perf_counter()
    out = pack_dataset(
        dataset, size, resize, crop or center_crop, workers, interpolation, quiet=quiet or as_json
    )
    seconds = time.perf_counter() - start
    reader = PackedReader(out)
    summary = {"path": str(out), **reader.index, "seconds": round(seconds, 2)}
    if as_json:
        _emit_json(summary)
    elif not quiet:
        console.print(
            f"packed {len(reader)} images {reader.size}x{reader.size} into {out} "
            f"in {seconds:.1f} s ({len(reader) / max(seconds, 1e-9):,.0f} img/s)",
            markup=False,
        )


def split_command(
    dataset: Path = typer.Argument(..., help="A dataset directory."),
    train: float = typer.Option(0.8, "--train", help="Fraction for training."),
    val: float = typer.Option(0.1, "--val", help="Fraction for validation."),
    test: float = typer.Option(0.1, "--test", help="Fraction for the final test."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same split."),
    resplit: bool = typer.Option(
        False, "--resplit", help="Also reassign images that already have a split."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the new counts as JSON."),
) -> None:
    """Assign train/validation/test: stratified per class, seeded, duplicates kept together.

    Only unsplit images are assigned unless --resplit: pre-split folders keep their split.

    Example: lensflow data split ds --train 0.8 --val 0.1 --test 0.1 --seed 0
    """
    from lensflow.data.split import SplitConfig, split_dataset

    result = split_dataset(SplitConfig(dataset, train, val, test, seed, resplit))
    if as_json:
        _emit_json(
            {
                "assigned": result.assigned,
                "kept": result.kept,
                "splits": result.counts,
                "hash": result.hash,
            }
        )
        return
    totals = ", ".join(f"{s} {sum(c.values())}" for s, c in result.counts.items())
    if result.assigned == 0:
        console.print(
            f"{dataset} is already split ({totals}): kept as is; pass --resplit to split it again",
            markup=False,
        )
        return
    console.print(f"split {result.assigned} images ({totals}); hash {result.hash}", markup=False)


def _export(kind: str, dataset: Path, out: Path | None, name: str | None, as_json: bool) -> None:
    from lensflow.data.recordio import export_lst, export_rec

    out_dir = out or dataset / "export"
    if kind == "lst":
        files = export_lst(dataset, out_dir, name)
    else:
        files = export_rec(dataset, out_dir, name, quiet=as_json)
    if as_json:
        _emit_json({"files": [str(f) for f in files]})
    else:
        for f in files:
            typer.echo(str(f))


def export_lst_command(
    dataset: Path = typer.Argument(..., help="A dataset directory."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Folder (default DATASET/export)."),
    name: str | None = typer.Option(None, "--name", help="File prefix (default: dataset name)."),
    as_json: bool = typer.Option(False, "--json", help="Print the written files as JSON."),
) -> None:
    """Write im2rec-compatible NAME_train.lst / NAME_val.lst / NAME_test.lst.

    Paths are relative to DATASET, so `python im2rec.py NAME_train DATASET` packs them.

    Example: lensflow data export-lst ds --out lists --name clothing
    """
    _export("lst", dataset, out, name, as_json)


def export_rec_command(
    dataset: Path = typer.Argument(..., help="A dataset directory."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Folder (default DATASET/export)."),
    name: str | None = typer.Option(None, "--name", help="File prefix (default: dataset name)."),
    as_json: bool = typer.Option(False, "--json", help="Print the written files as JSON."),
) -> None:
    """Write MXNet RecordIO NAME_train.rec + .idx per split (readable by MXIndexedRecordIO).

    Example: lensflow data export-rec ds --out rec --name clothing
    """
    _export("rec", dataset, out, name, as_json)


def register(app: typer.Typer) -> None:
    """Add the data commands to the `lensflow data` sub-app."""
    app.command("import")(import_command)
    app.command("info")(info_command)
    app.command("split")(split_command)
    app.command("pack")(pack_command)
    app.command("export-lst")(export_lst_command)
    app.command("export-rec")(export_rec_command)
