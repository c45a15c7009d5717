"""`lensflow evaluate`: metrics, pictures, embeddings and report.html for a run or a bundle.

Thin: parse options, build the EvaluateConfig, call `evaluate`, print a table (stderr) or the
JSON summary (stdout).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer


def summary_table(summary: dict[str, Any]) -> Any:
    """A rich table: one row per class, then the averages (summary_line says the rest)."""
    from rich.table import Table

    from lensflow.evaluate.intervals import interval_text

    table = Table(
        caption=f"accuracy {100 * summary['accuracy']:.1f}% "
        f"({interval_text(summary['accuracy_ci95'])}); macro F1 {summary['macro_avg']['f1']:.3f} "
        f"({interval_text(summary['macro_f1_ci95'], percent=False)})"
    )
    for col in ("class", "precision", "recall", "F1", "support"):
        table.add_column(col, justify="left" if col == "class" else "right")
    rows = list(summary["per_class"].items())
    rows += [("macro avg", summary["macro_avg"]), ("weighted avg", summary["weighted_avg"])]
    for i, (name, m) in enumerate(rows):
        table.add_row(
            name,
            f"{m['precision']:.3f}",
            f"{m['recall']:.3f}",
            f"{m['f1']:.3f}",
            str(m["support"]),
            end_section=i == len(summary["per_class"]) - 1,
        )
    return table


def summary_line(summary: dict[str, Any]) -> str:
    from lensflow.evaluate.intervals import interval_text

    return (
        f"{Path(summary['source']['path']).name} on {Path(summary['dataset']['path']).name}"
        f"/{summary['split']} ({summary['n']} images): accuracy {100 * summary['accuracy']:.1f}% "
        f"({interval_text(summary['accuracy_ci95'])}), "
        f"top-{summary['top_k']} {100 * summary['top_k_accuracy']:.1f}%, "
        f"macro F1 {summary['macro_avg']['f1']:.3f} "
        f"({interval_text(summary['macro_f1_ci95'], percent=False)}), loss {summary['loss']:.3f}, "
        f"ECE {summary['ece']:.3f}"
    )


def evaluate_command(
    source: Path = typer.Argument(..., help="A training run or an exported bundle directory."),
    data: Path | None = typer.Option(
        None, "--data", "-d", help="Dataset to evaluate on (default: the one it was trained on)."
    ),
    split: str | None = typer.Option(
        None, "--split", "-s", help="test|validation|train|all (default: test, else validation)."
    ),
    top_k: int = typer.Option(5, "--top-k", "-k", help="k of the top-k accuracy."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Output folder (default: SOURCE-eval-SPLIT beside SOURCE)."
    ),
    batch_size: int = typer.Option(32, "--batch-size", help="Images per forward pass."),
    top_losses: int = typer.Option(16, "--top-losses", help="Images in the top-losses gallery."),
    tsne_max: int = typer.Option(2000, "--tsne-max", help="At most this many points in t-SNE."),
    projector_max: int = typer.Option(
        5000, "--projector-max", help="At most this many rows in the projector export."
    ),
    threads: int | None = typer.Option(None, "--threads", help="onnxruntime threads (bundles)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or table."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics.json summary."),
    compare_with: Path | None = typer.Option(
        None,
        "--compare",
        help="A second run or bundle to run on the same images: both accuracies, the images "
        "where they disagree, McNemar's exact p (also in OUT/compare.json). "
        "E.g. lensflow evaluate run-a --compare run-b",
    ),
    ood: Path | None = typer.Option(
        None,
        "--ood",
        help="Folder of images that are none of the classes (walls, other objects): adds the "
        "open-set section (AUROC, FPR@95TPR, rejection at the operating point, histogram).",
    ),
) -> None:
    """Evaluate a run or a bundle: metrics, confusion matrix, calibration, top losses,
    embeddings (PCA, t-SNE, TensorBoard projector) and one self-contained report.html.

    Example: lensflow evaluate run/ --split validation --out run-eval

    Example: lensflow evaluate bundle/ --data other-ds --json

    Example: lensflow evaluate run-a --compare run-b   (is B really better than A?)

    Example: lensflow evaluate bundle/ --ood photos-of-other-things/
    """
    from lensflow.evaluate.evaluator import EvaluateConfig, evaluate
    from lensflow.progress import console

    config = EvaluateConfig(
        source=source,
        data=data,
        split=split,
        top_k=top_k,
        out=out,
        batch_size=batch_size,
        n_top_losses=top_losses,
        tsne_max_points=tsne_max,
        projector_max_points=projector_max,
        threads=threads,
        overwrite=overwrite,
        ood=ood,
    )
    result = evaluate(config, quiet=quiet or as_json)
    comparison = _compare(result, compare_with, config, quiet or as_json)
    if as_json:
        extra = {"compare": comparison} if comparison else {}
        typer.echo(json.dumps({**result.summary, **extra}, indent=2, default=str))
        return
    if not quiet:
        console.print(summary_table(result.summary))
        console.print(summary_line(result.summary), soft_wrap=True)
        confused = result.summary["most_confused"][:3]
        if confused:
            pairs = ", ".join(f"{p['true']}→{p['predicted']} ({p['count']})" for p in confused)
            console.print(f"most confused: {pairs}")
        console.print(f"report: {result.report}")
    if comparison:
        from lensflow.evaluate.compare import comparison_lines

        typer.echo("\n".join(comparison_lines(comparison)))


def _compare(result: Any, other: Path | None, config: Any, quiet: bool) -> dict[str, Any] | None:
    if other is None:
        return None
    from lensflow.evaluate.compare import compare
    from lensflow.io import atomic_write_json

    comparison = compare(result, other, config, quiet)
    atomic_write_json(result.out / "compare.json", comparison)
    return comparison


def register(app: typer.Typer) -> None:
    """Add this stage's commands to `app`."""
    app.command("evaluate")(evaluate_command)
