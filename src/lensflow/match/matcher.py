"""`lensflow match`: pair look-alike photos without training.

Every photo is embedded by a bundle's backbone (`Predictor.embed`; by default the cached ImageNet
EfficientNet-Lite0 feature bundle), the features are L2-normalised, and the maximum-weight
one-to-one matching on cosine similarity pairs them (see `pairing.py`). Measured on the SockSort
sample (6 designs x 3 photos): same-sock cosine 0.69 on average, different socks 0.46; the
weakest same-sock pair is 0.49, hence the default threshold DEFAULT_MIN_SIMILARITY = 0.45.

Output directory (written atomically): pairs.json, contact_sheet.png, config.yaml.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lensflow.config import save_config
from lensflow.errors import LensflowError, MatchError
from lensflow.io import atomic_dir, atomic_write_json
from lensflow.match import DEFAULT_MIN_SIMILARITY
from lensflow.match.pairing import best_pairs, cosine_matrix
from lensflow.match.sheet import THUMB, contact_sheet
from lensflow.progress import console, track


@dataclass(frozen=True)
class MatchConfig:
    photos: Path  # a folder of photos (searched recursively)
    out: Path | None = None  # default: <photos>-pairs beside the folder
    bundle: Path | None = None  # a bundle whose backbone embeds; None = pretrained backbone
    model: str = "efficientnet_lite0"  # the pretrained backbone used without --bundle
    min_similarity: float = DEFAULT_MIN_SIMILARITY  # cosine; weaker best matches -> singletons
    batch_size: int = 16  # photos decoded and embedded at a time (bounds memory)
    threads: int | None = None  # onnxruntime threads
    overwrite: bool = False

    def __post_init__(self) -> None:
        if not -1.0 <= self.min_similarity <= 1.0:
            raise MatchError(
                f"--min-similarity is a cosine similarity in -1..1, got {self.min_similarity!r} "
                f"(default {DEFAULT_MIN_SIMILARITY})"
            )
        if self.batch_size < 1:
            raise MatchError(f"batch size must be >= 1, got {self.batch_size}")

    @property
    def out_dir(self) -> Path:
        if self.out is not None:
            return Path(self.out)
        folder = Path(self.photos).resolve()
        return folder.with_name(folder.name + "-pairs")


def find_photos(folder: Path) -> list[Path]:
    """Image files under `folder` (recursively, hidden ones skipped), in name order."""
    from lensflow.data.validate import is_image_name

    folder = Path(folder)
    if not folder.is_dir():
        raise MatchError(f"{folder} is not a folder of photos")
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and is_image_name(p.name)
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _predictor(config: MatchConfig, quiet: bool = False) -> Any:
    from lensflow.predictor import Predictor

    if config.bundle is not None:
        return Predictor.from_bundle(config.bundle, threads=config.threads)
    from lensflow.export import backbone_bundle

    if not quiet:
        console.print(
            f"embedding with the pretrained {config.model} backbone (cached after first use)"
        )
    return Predictor.from_bundle(backbone_bundle(config.model), threads=config.threads)


def embed_photos(
    predictor: Any, paths: list[Path], batch_size: int, quiet: bool = False
) -> tuple[np.ndarray, list[Image.Image], list[Path], list[dict[str, str]]]:
    """Decode and embed in batches; keep only thumbnails. Returns (features, thumbs, used, skipped)."""
    from lensflow.preprocess import to_pil

    features: list[np.ndarray] = []
    thumbs: list[Image.Image] = []
    used: list[Path] = []
    skipped: list[dict[str, str]] = []
    batch: list[Image.Image] = []

    def flush() -> None:
        if batch:
            features.append(predictor.embed(batch))
            batch.clear()

    for path in track(paths, "embedding photos", quiet=quiet):
        try:
            img = to_pil(path).convert("RGB")
        except (LensflowError, OSError) as e:
            skipped.append({"path": str(path), "reason": str(e)})
            continue
        thumb = img.copy()
        thumb.thumbnail((THUMB, THUMB))
        thumbs.append(thumb)
        used.append(path)
        batch.append(img)
        if len(batch) >= batch_size:
            flush()
    flush()
    dim = features[0].shape[1] if features else 0
    return (np.concatenate(features) if features else np.zeros((0, dim))), thumbs, used, skipped


def match_photos(config: MatchConfig, quiet: bool = False) -> dict[str, Any]:
    """Embed, pair and write the output directory; returns pairs.json's content plus a summary."""
    folder = Path(config.photos)
    paths = find_photos(folder)
    if len(paths) < 2:
        raise MatchError(
            f"{folder} has {len(paths)} photo(s); pairing needs at least 2 "
            "(.jpg, .png, .webp, ... files, searched in sub-folders too)"
        )
    out = config.out_dir
    if out.exists() and not config.overwrite:
        raise MatchError(f"{out} already exists; choose another --out or pass --overwrite")
    predictor = _predictor(config, quiet)
    features, thumbs, used, skipped = embed_photos(predictor, paths, config.batch_size, quiet)
    for s in skipped:  # shown even with --quiet: the user should know a file was left out
        console.print(f"[yellow]skipped[/] {s['path']}: {s['reason']}")
    if len(used) < 2:
        raise MatchError(f"only {len(used)} of the {len(paths)} photos in {folder} could be read")
    similarity = cosine_matrix(features)
    pairing = best_pairs(similarity, config.min_similarity)
    names = [p.relative_to(folder).as_posix() for p in used]
    result = {
        "pairs": [[names[a], names[b], round(sim, 4)] for a, b, sim in pairing.pairs],
        "singletons": [names[i] for i in pairing.singletons],
    }
    sheet = contact_sheet(thumbs, names, pairing.pairs, pairing.singletons, config.min_similarity)
    with atomic_dir(out, overwrite=config.overwrite) as tmp:
        atomic_write_json(tmp / "pairs.json", result)
        sheet.save(tmp / "contact_sheet.png", optimize=True)
        save_config(dataclasses.replace(config, out=out), tmp / "config.yaml")
    return {
        **result,
        "out": str(out),
        "contact_sheet": str(out / "contact_sheet.png"),
        "photos": len(used),
        "skipped": skipped,
        "bundle": str(predictor.path),
    }
