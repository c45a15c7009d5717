"""HTML for Jupyter: what `_repr_html_` of a dataset, run, evaluation or prediction shows.

Pure functions from lensflow objects to self-contained HTML fragments: images are inlined as
`data:` URIs (a notebook saved with its outputs keeps its pictures), styles are inline (the
notebook's CSS is not ours). Optional fields written by other stages (an accuracy interval
`*_ci95`, a prediction's `unknown` / `ood_score`) are shown when present, so older artifacts
still display.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

    from lensflow.data.dataset import Dataset

THUMB = 96  # thumbnail side in pixels: big enough to recognise, small enough to inline
BOX = "font-family:sans-serif;font-size:13px;line-height:1.4"
CELL = "padding:2px 8px;text-align:left"
NUM = "padding:2px 8px;text-align:right"


def _e(value: Any) -> str:
    return html.escape(str(value))


def _pct(x: float) -> str:
    return f"{100 * float(x):.1f}%"


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def thumbnail_uri(image: Image.Image, size: int = THUMB) -> str:
    """A JPEG thumbnail (longer side `size`) of a decoded image as a data: URI."""
    thumb = image.convert("RGB")
    thumb.thumbnail((size, size))
    buf = io.BytesIO()
    thumb.save(buf, format="JPEG", quality=80)
    return data_uri(buf.getvalue(), "image/jpeg")


def file_thumbnail_uri(path: Path, size: int = THUMB) -> str:
    from lensflow.preprocess import to_pil

    return thumbnail_uri(to_pil(path), size)


def png_uri(path: Path) -> str:
    return data_uri(Path(path).read_bytes(), "image/png")


def _img(uri: str, alt: str, size: int = THUMB) -> str:
    return (
        f'<img src="{uri}" alt="{_e(alt)}" title="{_e(alt)}" '
        f'style="max-width:{size}px;max-height:{size}px;margin:2px">'
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A table of escaped cells; numbers right-aligned."""
    head = "".join(f'<th style="{CELL}">{_e(h)}</th>' for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td style="{NUM if isinstance(c, int | float) else CELL}">{_e(c)}</td>' for c in row
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _facts(pairs: Sequence[tuple[str, str]]) -> str:
    """`name: value` pairs on one line (the summary above a table)."""
    return " · ".join(f"<b>{_e(k)}</b> {_e(v)}" for k, v in pairs)


def _interval(values: Mapping[str, Any], key: str) -> str:
    """' (95 % CI a–b)' when `values` has `<key>_ci95` as a [low, high] pair, else ''."""
    ci = values.get(f"{key}_ci95")
    if isinstance(ci, Sequence) and len(ci) == 2:
        return f" (95 % CI {_pct(ci[0])}–{_pct(ci[1])})"
    return ""


def link_href(path: Path) -> str:
    """A link Jupyter can open: relative to the working directory (the notebook's) when the
    file is under it (Jupyter serves those), else a file:// URI."""
    path, cwd = Path(path).resolve(), Path.cwd().resolve()
    return path.relative_to(cwd).as_posix() if path.is_relative_to(cwd) else path.as_uri()


# -- dataset -------------------------------------------------------------------------------------
def dataset_html(ds: Dataset, thumbnails: int = 8) -> str:
    """Class counts per split and one thumbnail per class (up to `thumbnails`)."""
    counts = ds.counts()
    splits = list(counts)
    rows = [
        [c, *(counts[s].get(c, 0) for s in splits), sum(counts[s].get(c, 0) for s in splits)]
        for c in ds.classes
    ]
    rows.append(["total", *(sum(counts[s].values()) for s in splits), len(ds)])
    first: dict[str, Path] = {}
    for r in ds.records:
        first.setdefault(r.label, r.path)
    thumbs = "".join(
        _img(file_thumbnail_uri(first[c]), c) for c in ds.classes[:thumbnails] if c in first
    )
    skipped = len(ds.report.get("skipped", []))
    facts = [
        ("dataset", ds.path.name),
        ("images", str(len(ds))),
        ("classes", str(len(ds.classes))),
        ("skipped", str(skipped)),
        ("hash", ds.hash),
    ]
    return (
        f'<div style="{BOX}"><div>{_facts(facts)}</div>'
        f'<div class="thumbnails">{thumbs}</div>'
        f"{_table(['class', *splits, 'total'], rows)}</div>"
    )


# -- run -----------------------------------------------------------------------------------------
def run_html(path: Path, card: Mapping[str, Any]) -> str:
    """Mode, model, best validation accuracy (with its interval when recorded) and the curves."""
    best = card.get("best") or {}
    accuracy = best.get("val_accuracy")
    facts = [
        ("run", Path(path).name),
        ("mode", str(card.get("mode"))),
        ("model", str(card.get("model"))),
        ("classes", str(len(card.get("classes") or []))),
    ]
    if accuracy is not None:
        facts.append(
            (
                "validation accuracy",
                f"{_pct(accuracy)}{_interval(best, 'val_accuracy')} "
                f"(epoch {best.get('epoch')}, {card.get('val_images', '?')} images)",
            )
        )
    if card.get("seconds") is not None:
        facts.append(("trained in", f"{float(card['seconds']):.0f} s"))
    curves = Path(path) / "curves.png"
    picture = (
        f'<div><img src="{png_uri(curves)}" alt="training curves" style="max-width:640px"></div>'
        if curves.is_file()
        else ""
    )
    return f'<div style="{BOX}"><div>{_facts(facts)}</div>{picture}</div>'


# -- evaluation ----------------------------------------------------------------------------------
def evaluation_html(out: Path, summary: Mapping[str, Any]) -> str:
    """The summary line, the per-class table, the confusion matrix and a link to report.html."""
    facts = [
        ("evaluated", f"{Path(summary['source']['path']).name} on {summary['split']}"),
        ("images", str(summary["n"])),
        ("accuracy", _pct(summary["accuracy"]) + _interval(summary, "accuracy")),
        (f"top-{summary['top_k']}", _pct(summary["top_k_accuracy"])),
        ("macro F1", f"{summary['macro_avg']['f1']:.3f}"),
        ("loss", f"{summary['loss']:.3f}"),
        ("ECE", f"{summary['ece']:.3f}"),
    ]
    rows = [
        [name, round(m["precision"], 3), round(m["recall"], 3), round(m["f1"], 3), m["support"]]
        for name, m in summary["per_class"].items()
    ]
    table = _table(["class", "precision", "recall", "F1", "support"], rows)
    cm = Path(out) / "confusion_matrix.png"
    picture = (
        f'<div><img src="{png_uri(cm)}" alt="confusion matrix" style="max-width:560px"></div>'
        if cm.is_file()
        else ""
    )
    report = Path(out) / "report.html"
    link = f'<div><a href="{_e(link_href(report))}" target="_blank">report.html</a></div>'
    return f'<div style="{BOX}"><div>{_facts(facts)}</div>{table}{picture}{link}</div>'


# -- predictions ---------------------------------------------------------------------------------
def _bars(top_k: Sequence[tuple[str, float]]) -> str:
    """One horizontal bar per label of the top-k, width = probability."""
    rows = []
    for label, p in top_k:
        width = max(0.0, min(100.0, 100 * float(p)))
        rows.append(
            f'<tr class="topk"><td style="{CELL}">{_e(label)}</td>'
            f'<td style="padding:2px 8px;width:160px"><div class="bar" data-probability="{p:.6f}" '
            f'style="background:#4c78a8;height:10px;width:{width:.1f}%"></div></td>'
            f'<td style="{NUM}">{_pct(p)}</td></tr>'
        )
    return f"<table>{''.join(rows)}</table>"


def _verdict(pred: Any) -> str:
    """The label, or "unknown" (with the closest label) when the open-set score says so."""
    text = f"<b>{_e(pred.label)}</b> {_pct(pred.probability)}"
    if getattr(pred, "unknown", False):
        text = f'<b class="unknown" style="color:#b3261e">unknown</b> (closest: {text})'
    score = getattr(pred, "ood_score", None)
    if score is not None:
        text += f' <span class="ood-score">open-set score {float(score):.3f}</span>'
    return text


def prediction_html(pred: Any) -> str:
    """Thumbnail (when the prediction carries one), label or "unknown", top-k bars."""
    thumb = getattr(pred, "thumbnail", None)
    picture = f'<td style="vertical-align:top">{_img(thumb, pred.label)}</td>' if thumb else ""
    return (
        f'<table style="{BOX}"><tr>{picture}<td style="vertical-align:top">'
        f'<div class="verdict">{_verdict(pred)}</div>{_bars(pred.top_k)}</td></tr></table>'
    )


def predictions_html(preds: Sequence[Any]) -> str:
    """One row per prediction: thumbnail, label or "unknown", top-k bars."""
    rows = []
    for i, pred in enumerate(preds):
        thumb = getattr(pred, "thumbnail", None)
        source = getattr(pred, "source", None) or ""
        picture = _img(thumb, pred.label) if thumb else ""
        rows.append(
            f'<tr class="prediction"><td style="{NUM}">{i}</td>'
            f'<td style="{CELL}">{picture}<div>{_e(source)}</div></td>'
            f'<td style="{CELL}"><div class="verdict">{_verdict(pred)}</div></td>'
            f'<td style="{CELL}">{_bars(pred.top_k)}</td></tr>'
        )
    return f'<table style="{BOX}"><tbody>{"".join(rows)}</tbody></table>'
