"""Core helpers shared by every stage: atomic writes, cards, config keys, preprocessing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from lensflow.config import reject_unknown
from lensflow.errors import ConfigError, LensflowError
from lensflow.io import (
    atomic_dir,
    atomic_open,
    atomic_path,
    atomic_write_json,
    read_card,
    write_card,
)
from lensflow.preprocess import Preprocess, to_pil


def test_atomic_dir_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "half.txt").write_text("x")
        raise RuntimeError("interrupted")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_renames_on_success(tmp_path):
    with atomic_dir(tmp_path / "out") as tmp:
        atomic_write_json(tmp / "a.json", {"a": 1})
    assert json.loads((tmp_path / "out" / "a.json").read_text()) == {"a": 1}
    with pytest.raises(LensflowError, match="already exists"), atomic_dir(tmp_path / "out"):
        pass


def test_card_kind_is_checked(tmp_path):
    write_card(tmp_path, "lensflow-run", model="x")
    assert read_card(tmp_path, "lensflow-run")["model"] == "x"
    with pytest.raises(LensflowError, match="expected a 'lensflow-bundle'"):
        read_card(tmp_path, "lensflow-bundle")
    with pytest.raises(LensflowError, match=r"no card\.json"):
        read_card(tmp_path.parent, "lensflow-dataset")


def test_reject_unknown_suggests_closest():
    with pytest.raises(ConfigError, match="did you mean 'learning_rate'"):
        reject_unknown(["learning_rat"], ["learning_rate", "epochs"])
    reject_unknown(["epochs"], ["learning_rate", "epochs"])


def test_preprocess_center_crop_and_scale():
    pp = Preprocess(input_size=4, resize=8, mean=(127.5,) * 3, std=(127.5,) * 3)
    img = Image.new("RGB", (16, 8), (255, 0, 127))
    x = pp(img)
    assert x.shape == (3, 4, 4) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0, 0], [1.0, -1.0, (127 - 127.5) / 127.5], atol=1e-6)
    assert Preprocess.from_dict(pp.to_dict()) == pp
    with pytest.raises(ConfigError):
        Preprocess.from_dict({**pp.to_dict(), "sise": 3})


def test_preprocess_pad_letterboxes_the_whole_photo():
    """crop="pad": the longer side fills the square, centred; the rest is the mean colour (0)."""
    pp = Preprocess(input_size=8, resize=8, crop="pad", mean=(127.5,) * 3, std=(127.5,) * 3)
    img = Image.new("RGB", (16, 8), (255, 0, 255))  # 2:1 landscape -> 8 x 4 band in the middle
    arr = pp.to_uint8(img)
    assert arr.shape == (8, 8, 3)
    assert (arr[2:6] == (255, 0, 255)).all()  # the whole photo, undistorted
    assert (arr[:2] == 128).all() and (arr[6:] == 128).all()  # mean-coloured bars
    x = pp(img)
    assert np.abs(x[:, 0]).max() < 0.01  # padding normalises to ~0
    tall = pp.to_uint8(Image.new("RGB", (4, 8), (0, 255, 0)))
    assert (tall[:, 2:6] == (0, 255, 0)).all() and (tall[:, :2] == 128).all()
    grey = Preprocess(input_size=8, resize=8, crop="pad", mean=(127.5,), std=(127.5,), channels=1)
    assert grey.to_uint8(img).shape == (8, 8, 1)
    with pytest.raises(ConfigError, match="crop must be one of center, none, pad"):
        Preprocess(crop="letterbox")


def test_to_pil_rejects_garbage_with_reason():
    with pytest.raises(LensflowError, match="cannot decode"):
        to_pil(b"not an image")


def test_to_pil_applies_exif_orientation_without_touching_the_callers_image(tmp_path):
    import io

    rgb = np.zeros((20, 40, 3), np.uint8)
    rgb[:, :20] = 255  # left half white: after a 90-degree clockwise turn, the top is white
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=95, exif=exif.tobytes())
    (tmp_path / "r.jpg").write_bytes(buf.getvalue())
    for source in (buf.getvalue(), tmp_path / "r.jpg"):
        arr = np.asarray(to_pil(source))
        assert arr.shape == (40, 20, 3) and arr[:20].mean() > 200 and arr[20:].mean() < 50
    caller = Image.open(io.BytesIO(buf.getvalue()))
    upright = to_pil(caller)
    assert upright is not caller and upright.size == (20, 40) and caller.size == (40, 20)
    plain = Image.fromarray(rgb)
    pp = Preprocess(input_size=16, resize=16)
    before = np.asarray(plain).copy()
    pp.to_uint8(plain)
    assert np.array_equal(np.asarray(plain), before)  # preprocessing never edits its input


def test_atomic_outputs_follow_umask(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        path = atomic_write_json(tmp_path / "x.json", {})
        with atomic_dir(tmp_path / "d") as tmp:
            pass
        assert tmp.name != "d"
        assert path.stat().st_mode & 0o777 == 0o644
        assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
    finally:
        os.umask(old)


def test_streamed_and_path_writers_are_atomic_and_follow_umask(tmp_path):
    import os

    old = os.umask(0o027)
    try:
        with atomic_open(tmp_path / "a.rec") as f:
            f.write(b"part one, ")
            assert not (tmp_path / "a.rec").exists()  # nobody sees a half-written file
            f.write(b"part two")
        with atomic_path(tmp_path / "v.avi") as tmp:
            assert tmp.suffix == ".avi" and tmp.parent == tmp_path  # same folder: rename is atomic
            tmp.write_bytes(b"frames")
        with pytest.raises(RuntimeError), atomic_open(tmp_path / "b.rec") as f:
            f.write(b"half")
            raise RuntimeError("interrupted")
    finally:
        os.umask(old)
    assert (tmp_path / "a.rec").read_bytes() == b"part one, part two"
    assert (tmp_path / "v.avi").read_bytes() == b"frames"
    assert {p.stat().st_mode & 0o777 for p in tmp_path.iterdir()} == {0o640}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.rec", "v.avi"]  # no temp left


def test_resize_crop_matches_resize_then_crop_on_a_real_photo(sample_folder):
    photo = sorted((sample_folder / "train" / "hat").glob("*.jpg"))[0]
    img = Image.open(photo).convert("RGB")
    pp = Preprocess(input_size=224, resize=256)
    w, h = img.size
    s = 256 / min(w, h)
    full = img.resize((max(256, round(w * s)), max(256, round(h * s))), Image.Resampling.BICUBIC)
    left, top = (full.size[0] - 224) // 2, (full.size[1] - 224) // 2
    expected = np.asarray(full.crop((left, top, left + 224, top + 224)), np.int16)
    got = np.asarray(pp.resize_crop(img), np.int16)
    assert got.shape == expected.shape
    assert np.abs(got - expected).mean() < 0.5  # same geometry; only filter edge effects differ
