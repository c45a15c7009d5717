"""The bad-file zoo: every broken file is skipped with its reason, every odd one converted right."""

from __future__ import annotations

import io
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lensflow.data import ImportConfig, import_dataset, load_dataset
from lensflow.errors import DataError


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height, with a token IDAT: a decompression-bomb header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def make_zoo(folder: Path, real_jpeg: bytes) -> dict[str, str]:
    """Write the zoo into `folder`; return {file name: expected outcome}."""
    gradient = np.tile(np.arange(40, dtype=np.uint8)[None, :] * 6, (20, 1))  # 20 high, 40 wide
    rgb = np.stack([gradient, 255 - gradient, np.full_like(gradient, 77)], axis=-1)
    files = {
        "truncated.jpg": real_jpeg[: len(real_jpeg) // 2],
        "empty.jpg": b"",
        "text.jpg": b"this is not an image, just text with a .jpg name\n" * 5,
        "bomb.png": _png_header_only(50_000, 50_000),
        "cmyk.jpg": _save(Image.new("CMYK", (30, 20), (0, 255, 255, 0)), "JPEG", quality=95),
        "gray16.png": _save(Image.fromarray(gradient.astype(np.uint16) * 257), "PNG"),
        "grey.jpg": _save(Image.fromarray(gradient, "L"), "JPEG", quality=95),
        "webp.webp": _save(Image.fromarray(rgb), "WEBP", lossless=True),
    }
    palette = Image.new("P", (16, 16), 1)
    palette.putpalette([0, 0, 0, 200, 10, 10] + [0, 0, 0] * 254)
    palette.paste(0, (0, 0, 8, 16))  # left half index 0 = transparent
    files["palette.png"] = _save(palette, "PNG", transparency=0)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 40x20, displayed rotated 90 degrees clockwise: 20x40
    files["rotated.jpg"] = _save(Image.fromarray(rgb), "JPEG", quality=95, exif=exif.tobytes())
    frames = [Image.new("RGB", (12, 12), c) for c in ((0, 0, 255), (0, 255, 0), (255, 0, 0))]
    files["animated.gif"] = _save(frames[0], "GIF", save_all=True, append_images=frames[1:])
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return {
        name: ("skip" if name in {"truncated.jpg", "empty.jpg", "text.jpg", "bomb.png"} else "ok")
        for name in files
    }


@pytest.fixture(scope="module")
def zoo_dataset(tmp_path_factory, sample_folder):
    root = tmp_path_factory.mktemp("zoo")
    src = root / "src"
    shutil.copytree(sample_folder, src)
    hat = src / "train" / "hat"
    expected = make_zoo(hat, next(hat.iterdir()).read_bytes())
    before = {p: p.read_bytes() for p in src.rglob("*") if p.is_file()}
    import_dataset(ImportConfig(src=src, out=root / "ds", workers=2), quiet=True)
    after = {p: p.read_bytes() for p in src.rglob("*") if p.is_file()}
    assert before == after, "import must never modify SRC"
    return load_dataset(root / "ds"), expected


def test_bad_files_are_skipped_with_reasons(zoo_dataset):
    ds, expected = zoo_dataset
    report = ds.report
    reasons = {s["path"]: s["reason"] for s in report["skipped"]}
    assert set(reasons) == {f"train/hat/{n}" for n, e in expected.items() if e == "skip"}
    assert "empty file" in reasons["train/hat/empty.jpg"]
    assert "not an image" in reasons["train/hat/text.jpg"]
    assert "truncated" in reasons["train/hat/truncated.jpg"]
    assert "decompression bomb" in reasons["train/hat/bomb.png"]
    assert len(ds.split("train")) == 60 + 7  # the 7 odd-but-valid files were kept
    assert len(ds.split("validation")) == 20


def _stored(ds, name: str) -> np.ndarray:
    """Pixels stored for SRC file train/hat/<name> (found via the report's conversion notes)."""
    hats = [r for r in ds.split("train") if r.label == "hat"]
    # the scan is sorted by name, so the zoo files keep their sorted order among the hats
    names = sorted(p for p in [*_zoo_names(), *_hat_sources(ds)])
    kept = [n for n in names if n not in {"truncated.jpg", "empty.jpg", "text.jpg", "bomb.png"}]
    rec = hats[kept.index(name)]
    with Image.open(rec.path) as img:
        assert img.mode == "RGB", f"{name} stored as {img.mode}"
        return np.asarray(img)


def _zoo_names() -> list[str]:
    return [
        "truncated.jpg", "empty.jpg", "text.jpg", "bomb.png", "cmyk.jpg", "gray16.png",
        "grey.jpg", "webp.webp", "palette.png", "rotated.jpg", "animated.gif",
    ]  # fmt: skip


def _hat_sources(ds) -> list[str]:
    src = Path(ds.card["source"]) / "train" / "hat"
    return [p.name for p in src.iterdir() if p.name not in _zoo_names()]


def test_odd_files_are_converted_correctly(zoo_dataset):
    ds, _ = zoo_dataset
    notes = {c["path"].rsplit("/", 1)[1]: c["note"] for c in ds.report["converted"]}
    assert set(notes) == {
        "cmyk.jpg", "gray16.png", "grey.jpg", "webp.webp", "palette.png", "rotated.jpg", "animated.gif",
    }  # fmt: skip
    cmyk = _stored(ds, "cmyk.jpg").astype(int)  # CMYK (0,255,255,0) is red
    assert cmyk.shape == (20, 30, 3) and cmyk[..., 0].mean() > 200 and cmyk[..., 1:].mean() < 60
    g16 = _stored(ds, "gray16.png")
    gradient = np.tile(np.arange(40, dtype=np.uint8)[None, :] * 6, (20, 1))
    np.testing.assert_array_equal(g16[..., 0], gradient)  # 16-bit scaled down, not clipped
    assert (g16[..., 0] == g16[..., 2]).all()
    pal = _stored(ds, "palette.png")
    assert (pal[:, :8] == 255).all()  # transparent half composited on white
    assert tuple(pal[0, 12]) == (200, 10, 10)
    rot = _stored(ds, "rotated.jpg")
    assert rot.shape == (40, 20, 3)  # EXIF orientation 6 applied: portrait now
    assert "EXIF orientation 6" in notes["rotated.jpg"]
    gif = _stored(ds, "animated.gif")
    assert tuple(gif[0, 0]) == (0, 0, 255) and "first of 3 frames kept" in notes["animated.gif"]
    webp = _stored(ds, "webp.webp")
    assert webp.shape == (20, 40, 3) and tuple(webp[0, 1]) == (6, 249, 77)
    grey = _stored(ds, "grey.jpg")
    assert grey.shape == (20, 40, 3) and (grey[..., 0] == grey[..., 1]).all()


def test_nothing_usable_fails_clearly(tmp_path):
    src = tmp_path / "src" / "cats"
    src.mkdir(parents=True)
    (src / "a.jpg").write_bytes(b"")
    (src / "b.png").write_text("nope")
    with pytest.raises(DataError, match=r"nothing usable.*all 2 files were skipped"):
        import_dataset(
            ImportConfig(src=tmp_path / "src", out=tmp_path / "ds", workers=1), quiet=True
        )
    assert not (tmp_path / "ds").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["src"]  # no temp directory left behind
    with pytest.raises(DataError, match="no images found"):
        import_dataset(ImportConfig(src=tmp_path / "src" / "cats", out=tmp_path / "x"), quiet=True)


def test_size_limit_is_checked_from_the_header(tmp_path):
    from lensflow.data.validate import MAX_PIXELS, Item, process_item

    # 12,000 x 10,000 = 120 MP: under PIL's own bomb limit, over ours; refused without decoding
    res = process_item(Item("big.png", "x", "all", _png_header_only(12_000, 10_000)), tmp_path, "a")
    assert not res["ok"] and "12000x10000" in res["reason"] and f"{MAX_PIXELS:,}" in res["reason"]
    assert list(tmp_path.iterdir()) == []
