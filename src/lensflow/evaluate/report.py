"""report.html: one self-contained page (every image base64-embedded, inline CSS, no scripts)
with the summary, per-class metrics, all pictures, the worst mistakes, the run's config and the
dataset card. It opens from disk, by mail or in an artifact store without the folder beside it.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lensflow.data import Dataset, Record
from lensflow.io import atomic_write_text

CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:24px}
h1{margin:0 0 4px;font-size:26px} h2{margin:32px 0 10px;font-size:19px;border-bottom:1px solid #d9dde5;padding-bottom:4px}
.muted{color:#5b6475} .cards{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}
.card{background:#fff;border:1px solid #d9dde5;border-radius:8px;padding:10px 16px;min-width:120px}
.card b{display:block;font-size:22px} table{border-collapse:collapse;background:#fff;margin:6px 0}
th,td{border:1px solid #d9dde5;padding:4px 10px;text-align:right} th{background:#eef0f4}
td.t,th:first-child{text-align:left} figure{margin:12px 0;background:#fff;border:1px solid #d9dde5;
border-radius:8px;padding:10px;display:inline-block;max-width:100%} figure img{max-width:100%;height:auto}
figcaption{font-weight:600;margin-bottom:6px} pre{background:#fff;border:1px solid #d9dde5;padding:10px;
overflow:auto;max-height:420px;font-size:12px} td img{width:72px;height:72px;object-fit:cover;display:block}
.bad{color:#b3261e} code{background:#eef0f4;padding:1px 4px;border-radius:3px}
"""


def data_uri_png(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _thumb_uri(pixels: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return data_uri_png(buf.getvalue())


def _e(value: Any) -> str:
    return html.escape(str(value))


def _table(header: list[str], rows: list[list[Any]], raw: bool = False) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td{_align(c)}>{c if raw else _e(c)}</td>" for c in row) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _align(cell: Any) -> str:
    """Numbers right-aligned (digits line up), text left-aligned."""
    try:
        float(str(cell))
    except ValueError:
        return ' class="t"'
    return ""


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _summary_cards(s: dict[str, Any]) -> str:
    acc_lo, acc_hi = s["accuracy_ci95"]
    f1_lo, f1_hi = s["macro_f1_ci95"]
    cards = [
        ("accuracy", _pct(s["accuracy"])),
        ("accuracy, 95% interval (Wilson)", f"{100 * acc_lo:.1f}–{100 * acc_hi:.1f}%"),
        (f"top-{s['top_k']} accuracy", _pct(s["top_k_accuracy"])),
        ("macro F1", f"{s['macro_avg']['f1']:.3f}"),
        ("macro F1, 95% interval (bootstrap)", f"{f1_lo:.3f}–{f1_hi:.3f}"),
        ("log loss", f"{s['loss']:.3f}"),
        ("ECE", f"{s['ece']:.3f}"),
        ("images", str(s["n"])),
    ]
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card"><span class="muted">{_e(k)}</span><b>{_e(v)}</b></div>'
            for k, v in cards
        )
        + "</div>"
    )


def _metrics_tables(s: dict[str, Any]) -> str:
    rows = [
        [c, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", m["support"]]
        for c, m in s["per_class"].items()
    ]
    for name in ("macro_avg", "weighted_avg"):
        a = s[name]
        rows.append(
            [
                name.replace("_", " "),
                f"{a['precision']:.3f}",
                f"{a['recall']:.3f}",
                f"{a['f1']:.3f}",
                a["support"],
            ]
        )
    per_class = _table(["class", "precision", "recall", "F1", "support"], rows)
    confused = s["most_confused"]
    pairs = (
        _table(
            ["true", "predicted as", "images"],
            [[p["true"], p["predicted"], p["count"]] for p in confused],
        )
        if confused
        else "<p>No confusions: every image was classified correctly.</p>"
    )
    return f"<h2>Per-class metrics</h2>{per_class}<h2>Most confused pairs</h2>{pairs}"


def _open_set(o: dict[str, Any] | None) -> str:
    """The `--ood` section: how well the open-set score separates the classes from DIR."""
    if not o:
        return ""
    acc = o["accuracy_accepted"]
    rows = [
        ["AUROC (in-distribution vs --ood)", f"{o['auroc']:.3f}"],
        ["OOD accepted at 95 % in-distribution accepted (FPR@95TPR)", _pct(o["fpr_at_95_tpr"])],
        ["in-distribution rejected at the operating point", _pct(o["in_distribution_rejected"])],
        ["--ood images rejected at the operating point", _pct(o["ood_rejected"])],
        ["accuracy: all / accepted images", f"{_pct(o['accuracy_all'])} / "
         + (_pct(acc) if acc is not None else "none accepted")],
    ]  # fmt: skip
    return (
        f"<h2>Open-set rejection</h2><p>{o['method']} score, threshold {o['threshold']:.4g}; "
        f"{o['in_distribution_images']} images of the split vs {o['ood_images']} images of "
        f"<code>{_e(o['ood'])}</code>.</p>" + _table(["", "value"], rows)
    )


def _pictures(pictures: dict[str, Path]) -> str:
    figs = [
        f"<figure><figcaption>{_e(title)}</figcaption>"
        f'<img alt="{_e(title)}" src="{data_uri_png(path.read_bytes())}"></figure>'
        for title, path in pictures.items()
    ]
    return "<h2>Pictures</h2>" + "\n".join(figs)


def _mistakes(
    s: dict[str, Any], records: list[Record], y_true: np.ndarray, inference: Any, n: int
) -> str:
    from lensflow.evaluate.metrics import top_losses
    from lensflow.evaluate.plots import photo_thumbnail

    classes = s["classes"]
    worst = top_losses(y_true, inference.proba, n)
    if not worst:
        return "<h2>Worst mistakes</h2><p>None: every image was classified correctly.</p>"
    rows = [
        [
            f'<img alt="{_e(records[w["index"]].id)}" src="{_thumb_uri(photo_thumbnail(records[w["index"]].path, 96))}">',
            _e(classes[w["true"]]),
            f'<span class="bad">{_e(classes[w["predicted"]])}</span>',
            f"{w['probability']:.3f}",
            f"{w['true_probability']:.3f}",
            f"{w['loss']:.2f}",
            f"<code>{_e(records[w['index']].path.name)}</code>",
        ]
        for w in worst
    ]
    header = ["image", "true", "predicted", "p(predicted)", "p(true)", "loss", "file"]
    return "<h2>Worst mistakes</h2>" + _table(header, rows, raw=True)


def _json_block(title: str, obj: Any) -> str:
    text = json.dumps(obj, indent=2, default=str, sort_keys=False)
    return f"<h2>{_e(title)}</h2><pre>{_e(text)}</pre>"


def render_report(
    summary: dict[str, Any],
    pictures: dict[str, Path],
    source: Any,
    dataset: Dataset,
    config: Any,
    records: list[Record],
    y_true: np.ndarray,
    inference: Any,
) -> str:
    from lensflow.config import config_to_dict

    src = summary["source"]
    title = (
        f"lensflow evaluation: {Path(src['path']).name} on {dataset.path.name}/{summary['split']}"
    )
    projector = Path(summary["out"]) / "projector"
    parts = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="muted">{_e(src["kind"])} <code>{_e(src["path"])}</code> · model '
        f"{_e(source.card.get('model', '?'))} · dataset <code>{_e(dataset.path)}</code> · split "
        f"{_e(summary['split'])} · {len(source.classes)} classes</p>",
        _summary_cards(summary),
        _metrics_tables(summary),
        _open_set(summary.get("open_set")),
        _pictures(pictures),
        _mistakes(summary, records, y_true, inference, config.n_top_losses),
        "<h2>Embedding projector</h2><p>Browse the features interactively: "
        f"<code>tensorboard --logdir {_e(projector)}</code> (Projector tab).</p>",
        _json_block("Training config", source.config or {"note": "not recorded"}),
        _json_block(f"Model card ({src['kind']})", source.card),
        _json_block("Dataset card", dataset.card),
        _json_block("Evaluation config", config_to_dict(config)),
    ]
    body = "\n".join(parts)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1"><link rel="icon" href="data:,">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body><main>{body}</main></body></html>\n"
    )


def write_report(path: Path, *args: Any) -> Path:
    return atomic_write_text(path, render_report(*args))
