"""CLI: `lensflow export` (run -> bundle) and `lensflow predict` (bundle + images -> labels).

Heavy modules (torch, onnxruntime) are imported inside the command functions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from lensflow.errors import ExportError, LensflowError

if TYPE_CHECKING:
    from lensflow.export.exporter import ExportConfig

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


@dataclass(frozen=True)
class PredictConfig:
    bundle: Path
    images: tuple[Path, ...]
    top_k: int = 5
    threads: int | None = None  # onnxruntime intra-op threads; default: all cores
    batch_size: int = 4


def expand_images(paths: list[Path]) -> list[Path]:
    """Files as given; directories expanded to the image files under them (sorted)."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise LensflowError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {p}")
            out.extend(found)
        elif p.exists():
            out.append(p)
        else:
            raise LensflowError(f"image not found: {p}")
    return out


def export_cmd(
    run: Path = typer.Argument(..., help="Training run directory (from `lensflow train`)."),
    out: Path = typer.Option(..., "--out", "-o", help="Bundle directory to create."),
    int8: bool = typer.Option(
        False,
        "--int8",
        help="Static int8 quantisation (QDQ, per-channel), calibrated on real images.",
    ),
    calibration: Path | None = typer.Option(
        None,
        "--calibration",
        help="Dataset whose images calibrate int8 and check parity (default: the run's dataset).",
    ),
    calibration_images: int = typer.Option(256, help="Training images used for int8 calibration."),
    parity_images: int = typer.Option(16, help="Real images on which ONNX must match torch."),
    archive: bool = typer.Option(False, "--archive", help="Also write OUT.tar.gz (one file)."),
    triton: Path | None = typer.Option(
        None,
        "--triton",
        help="Also write the bundle into this Triton model repository (REPO/NAME/1/model.onnx).",
    ),
    triton_name: str | None = typer.Option(
        None, "--triton-name", help="Model name in the Triton repository (default: OUT's name)."
    ),
    unknown_rate: float = typer.Option(
        0.05,
        "--unknown-rate",
        help="Open-set operating point: the share of held-out images of your own classes that "
        "the bundle may call unknown (validation images; e.g. 0.02 rejects fewer, 0.1 more).",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing bundle."),
    json_out: bool = typer.Option(False, "--json", help="Print the bundle card as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Export a training run to a bundle: model.onnx, labels, preprocessing and a JSON card.

    The ONNX model is checked against torch on real images (max |logits difference| <= 1e-4);
    the export fails and writes nothing otherwise. The bundle also gets an open-set score
    (openset.npz): statistics of the training images' features, so images that look like none
    of the classes are predicted as unknown; --unknown-rate sets how many held-out images of
    your own classes it may reject.

    Example: lensflow export runs/clothing --out bundles/clothing --int8 --archive
    Example: lensflow export runs/clothing --out bundles/clothing --triton model-repo
    Example: lensflow export runs/clothing --out bundles/clothing --unknown-rate 0.02
    """
    from lensflow.bundle import read_bundle
    from lensflow.export.exporter import ExportConfig, archive_path

    config = ExportConfig(
        run=run,
        out=out,
        int8=int8,
        calibration=calibration,
        calibration_images=calibration_images,
        parity_images=parity_images,
        archive=archive,
        overwrite=overwrite,
        unknown_rate=unknown_rate,
    )
    path, model_dir = export_bundle(config, triton, triton_name, quiet)
    bundle = read_bundle(path)
    extra = {"triton_model": str(model_dir)} if model_dir is not None else {}
    if json_out:
        typer.echo(json.dumps({"bundle": str(path), **extra, **bundle.card}))
        return
    parity = bundle.card["parity"]["fp32_vs_torch"]
    size_mb = bundle.model_path.stat().st_size / 1e6
    typer.echo(
        f"bundle {path}: {bundle.card.get('model')} {bundle.card['precision']}, "
        f"{len(bundle.classes)} classes, model.onnx {size_mb:.1f} MB, parity max |diff| "
        f"{parity['max_abs_diff_logits']:.2g} on {parity['images']} images"
    )
    if "int8_vs_fp32" in bundle.card["parity"]:
        agree = bundle.card["parity"]["int8_vs_fp32"]["top1_agreement"]
        typer.echo(f"int8 top-1 agreement with fp32 on the parity images: {agree:.0%}")
    if "open_set" in bundle.card:
        osc = bundle.card["open_set"]
        if osc.get("threshold") is None:
            typer.echo(f"open-set score: {osc['method']}; {osc.get('calibration_note', '')}")
        else:
            typer.echo(
                f"open-set score: {osc['method']}, threshold {osc['threshold']:.4g} rejects "
                f"{osc['calibration_rejected']:.1%} of {osc['calibration_images']} held-out "
                f"images ({osc['calibration_source']})"
            )
    if archive:
        typer.echo(f"archive {archive_path(path)}")
    if triton is not None:
        typer.echo(
            f"Triton model {extra['triton_model']} (tritonserver --model-repository {triton})"
        )


def export_bundle(
    config: ExportConfig,
    triton: Path | None = None,
    triton_name: str | None = None,
    quiet: bool = False,
) -> tuple[Path, Path | None]:
    """Export as configured, and into a Triton repository when `triton` is given.

    Returns (bundle path, Triton model directory or None). Shared by `lensflow export` and
    `lensflow.api.Run.export`.
    """
    from lensflow.export.exporter import export_run

    if triton is not None:  # fail before the slow export, not after it
        from lensflow.export.triton import check_target

        check_target(triton, triton_name or config.out.name, config.overwrite)
    path = export_run(config, quiet=quiet)
    if triton is None:
        return path, None
    from lensflow.export.triton import write_triton_repository

    model_dir = write_triton_repository(path, triton, name=triton_name, overwrite=config.overwrite)
    return path, Path(model_dir)


def predict_cmd(
    bundle: Path = typer.Argument(
        ..., help="Bundle directory or .tar.gz (from `lensflow export`)."
    ),
    images: list[Path] = typer.Argument(
        ...,
        help="Image files or folders of images; with --out also file lists (.txt) or datasets.",
    ),
    top_k: int = typer.Option(3, "--top-k", "-k", help="How many labels to show per image."),
    threads: int | None = typer.Option(
        None, help="onnxruntime threads (default: all cores; per actor with --engine ray: 1)."
    ),
    batch_size: int = typer.Option(4, help="Images per model call (small chunks stay in cache)."),
    json_out: bool = typer.Option(False, "--json", help="One JSON object per image (JSON lines)."),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Write one row per image to this .csv or .parquet file (resumable: a rerun "
        "skips the images already in it); unreadable files become rows with an error.",
    ),
    engine: str = typer.Option(
        "local", help="With --out: 'local' (this process) or 'ray' (Ray Data actor pool)."
    ),
    address: str | None = typer.Option(
        None, help="Ray cluster: auto or ray://HOST:PORT (default: start a local Ray)."
    ),
    actors: int | None = typer.Option(
        None, help="Ray actors, one model each (default: the cluster's CPUs)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar (with --out)."),
) -> None:
    """Classify images with a bundle: a table, JSON lines with --json, or a file with --out.

    Bundles with an open-set score mark images that look like none of their classes:
    "unknown (nearest: hat 61 %)" in the table, "unknown": true and "ood_score" in JSON.

    Example: lensflow predict bundles/clothing photo1.jpg photos/ --top-k 3 --json
    Example: lensflow predict bundles/clothing photos/ --out predictions.csv
    Example: lensflow predict bundles/clothing photos/ --out p.parquet --engine ray --address auto
    """
    from lensflow.predictor import Predictor
    from lensflow.preprocess import to_pil

    if top_k < 1:
        raise LensflowError(f"--top-k must be >= 1, got {top_k}")
    if out is not None:
        from lensflow.batch import BatchConfig, batch_predict

        batch = BatchConfig(
            bundle, tuple(images), out, engine, top_k, threads, address=address, actors=actors
        )
        summary = batch_predict(batch, quiet=quiet or json_out)
        if json_out:
            typer.echo(json.dumps(summary.to_dict()))
        else:
            typer.echo(
                f"{summary.out}: {summary.rows} rows ({summary.predicted} predicted, "
                f"{summary.errors} errors, {summary.skipped} already done) "
                f"at {summary.images_per_s:.1f} img/s"
            )
        return
    if engine != "local" or address is not None or actors is not None:
        raise LensflowError("--engine, --address and --actors need --out FILE")
    config = PredictConfig(bundle, tuple(images), top_k, threads, batch_size)
    paths = expand_images(list(config.images))
    predictor = Predictor.from_bundle(config.bundle, threads=config.threads, batch_size=batch_size)
    # Decode each image once up front so one bad file is reported by name, not as a failed batch.
    good: list[Path] = []
    decoded = []
    errors: list[tuple[Path, str]] = []
    for p in paths:
        try:
            decoded.append(to_pil(p))
            good.append(p)
        except LensflowError as e:
            errors.append((p, e.message))
    preds = predictor.predict(decoded, top_k=config.top_k) if decoded else []
    if json_out:
        for p, pred in zip(good, preds, strict=True):
            typer.echo(json.dumps({"image": str(p), **pred.to_dict()}))
        for p, msg in errors:
            typer.echo(json.dumps({"image": str(p), "error": msg}))
    else:
        if preds:
            _print_table(good, preds)
        for _, msg in errors:
            typer.echo(f"error: {msg}", err=True)
    if errors:
        raise LensflowError(f"{len(errors)} of {len(paths)} images could not be read")


def _print_table(paths: list[Path], preds: list) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table()
    table.add_column("image", overflow="fold")  # paths wrap rather than being cut off
    for name in ("label", "probability", "top-k"):
        table.add_column(name, no_wrap=name != "top-k")
    for p, pred in zip(paths, preds, strict=True):
        top = ", ".join(f"{lab} {prob:.0%}" for lab, prob in pred.top_k[1:])
        label = pred.label
        if pred.unknown:  # the open-set score: none of the bundle's classes
            label = f"unknown (nearest: {pred.label} {pred.probability * 100:.0f} %)"
        table.add_row(str(p), label, f"{pred.probability:.1%}", top)
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Add `export` and `predict` to `app`."""
    app.command("export")(export_cmd)
    app.command("predict")(predict_cmd)


__all__ = ["ExportError", "PredictConfig", "expand_images", "export_bundle", "register"]
