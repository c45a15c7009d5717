"""`lensflow data info`: what is in a dataset, as a JSON contract and as a readable summary.

The JSON form is read by other tools; it always has at least
`{"classes", "total", "splits": {split: {class: n}}, "skipped": [{"path", "reason"}],
"duplicates": [[path, ...]]}` with paths relative to the imported SRC.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lensflow.data.dataset import Dataset


def dataset_info(ds: Dataset) -> dict[str, Any]:
    report = ds.report
    widths = np.array([r.width for r in ds.records], dtype=np.int64)
    heights = np.array([r.height for r in ds.records], dtype=np.int64)
    packed = sorted(p.parent.name for p in (ds.path / "packed").glob("*/index.json"))
    return {
        "path": str(ds.path),
        "source": ds.card.get("source"),
        "format": ds.card.get("format"),
        "hash": ds.hash,
        "classes": ds.classes,
        "total": len(ds.records),
        "splits": ds.counts(),
        "skipped": report.get("skipped", []),
        "duplicates": report.get("duplicates", []),
        "leaks": report.get("leaks", []),
        "warnings": report.get("warnings", []),
        "converted": len(report.get("converted", [])),
        "image_size": _size_stats(widths, heights),
        "packed": packed,
    }


def _size_stats(widths: np.ndarray, heights: np.ndarray) -> dict[str, Any]:
    if not len(widths):
        return {}
    return {
        "width": {
            "min": int(widths.min()),
            "median": int(np.median(widths)),
            "max": int(widths.max()),
        },
        "height": {
            "min": int(heights.min()),
            "median": int(np.median(heights)),
            "max": int(heights.max()),
        },
    }


def summary_text(info: dict[str, Any], max_listed: int = 10) -> str:
    """The human version of `dataset_info`: a table of counts, then problems."""
    splits = list(info["splits"])
    lines = [
        f"{info['path']}: {info['total']} images, {len(info['classes'])} classes"
        f" ({info['format']} from {info['source']})"
    ]
    width = max([len(c) for c in info["classes"]] + [5])
    lines.append(f"  {'class':<{width}}  " + "  ".join(f"{s:>10}" for s in splits))
    for c in info["classes"]:
        cells = "  ".join(f"{info['splits'][s].get(c, 0):>10}" for s in splits)
        lines.append(f"  {c:<{width}}  {cells}")
    totals = "  ".join(f"{sum(info['splits'][s].values()):>10}" for s in splits)
    lines.append(f"  {'total':<{width}}  {totals}")
    size = info.get("image_size") or {}
    if size:
        w, h = size["width"], size["height"]
        lines.append(
            f"image size: width {w['min']}..{w['max']} (median {w['median']}), "
            f"height {h['min']}..{h['max']} (median {h['median']})"
        )
    skipped = info["skipped"]
    lines.append(f"skipped: {len(skipped)} file(s)")
    lines += [f"  {s['path']}: {s['reason']}" for s in skipped[:max_listed]]
    if len(skipped) > max_listed:
        lines.append(f"  ... and {len(skipped) - max_listed} more (see report.json)")
    if info.get("converted"):
        lines.append(f"converted to RGB/upright: {info['converted']} file(s)")
    dups = info["duplicates"]
    lines.append(f"duplicates: {len(dups)} group(s)")
    lines += [f"  {' = '.join(g)}" for g in dups[:max_listed]]
    for leak in info.get("leaks", [])[:max_listed]:
        lines.append(f"  LEAK across {'/'.join(leak['splits'])}: {' = '.join(leak['paths'])}")
    lines += [f"warning: {w}" for w in info.get("warnings", [])]
    if info.get("packed"):
        lines.append(f"packed: {', '.join(info['packed'])}")
    return "\n".join(lines)
