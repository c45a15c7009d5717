"""IDX (MNIST, Fashion-MNIST) and CSV sources on real data."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
from PIL import Image

from lensflow.data import ImportConfig, import_dataset, load_dataset
from lensflow.data.idx import read_idx
from lensflow.errors import DataError

FASHION = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


@pytest.fixture(scope="module")
def mnist(shared_datasets, tmp_path_factory):
    src = shared_datasets / "mnist-t10k"
    out = tmp_path_factory.mktemp("mnist") / "ds"
    import_dataset(
        ImportConfig(
            src=src / "t10k-images-idx3-ubyte.gz",
            out=out,
            labels=src / "t10k-labels-idx1-ubyte.gz",
            workers=2,
        ),
        quiet=True,
    )
    return (
        load_dataset(out),
        read_idx(src / "t10k-images-idx3-ubyte.gz"),
        read_idx(src / "t10k-labels-idx1-ubyte.gz"),
    )


def test_mnist_import_pixels_equal_idx_bytes(mnist):
    ds, images, labels = mnist
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert len(ds.records) == 10000 and ds.classes == [str(d) for d in range(10)]
    assert ds.card["format"] == "idx" and ds.split_names == ["all"]
    rng = np.random.default_rng(0)
    for i in [0, 9999, *rng.integers(0, 10000, 50).tolist()]:
        rec = ds.records[i]
        with Image.open(rec.path) as img:
            assert img.mode == "L"
            np.testing.assert_array_equal(np.asarray(img), images[i])
        assert rec.label == str(labels[i])
    counts = np.bincount(labels, minlength=10)
    assert ds.counts()["all"] == {str(d): int(counts[d]) for d in range(10)}


def test_fashion_mnist_labels_parse(shared_datasets):
    src = shared_datasets / "fashion-mnist-labels"
    train = read_idx(src / "train-labels-idx1-ubyte.gz")
    test = read_idx(src / "t10k-labels-idx1-ubyte.gz")
    assert train.shape == (60000,) and test.shape == (10000,)
    assert np.bincount(train).tolist() == [6000] * 10 and np.bincount(test).tolist() == [1000] * 10


def _idx(dims: tuple[int, ...], data: bytes, type_code: int = 0x08) -> bytes:
    return bytes([0, 0, type_code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + data


def test_idx_class_names_raw_files_and_errors(tmp_path):
    images = np.arange(3 * 4 * 4, dtype=np.uint8).reshape(3, 4, 4)
    (tmp_path / "img-idx3-ubyte").write_bytes(_idx((3, 4, 4), images.tobytes()))  # raw, not gzip
    (tmp_path / "lab-idx1-ubyte.gz").write_bytes(gzip.compress(_idx((3,), bytes([9, 0, 9]))))
    names = tmp_path / "names.txt"
    names.write_text("\n".join(FASHION))
    from lensflow.data.commands import parse_class_names

    import_dataset(
        ImportConfig(
            src=tmp_path / "img-idx3-ubyte",
            out=tmp_path / "ds",
            labels=tmp_path / "lab-idx1-ubyte.gz",
            class_names=parse_class_names(str(names)),
            min_per_class=0,
        ),
        quiet=True,
    )
    ds = load_dataset(tmp_path / "ds")
    assert [r.label for r in ds.records] == ["Ankle boot", "T-shirt/top", "Ankle boot"]
    assert (
        ds.records[0].path.parent.name == "Ankle_boot"
    )  # a safe folder name for "T-shirt/top" too
    np.testing.assert_array_equal(np.asarray(Image.open(ds.records[1].path)), images[1])

    (tmp_path / "short-idx1-ubyte").write_bytes(_idx((2,), bytes([1, 2])))
    with pytest.raises(DataError, match=r"has 3 images but .* has 2 labels"):
        import_dataset(
            ImportConfig(
                src=tmp_path / "img-idx3-ubyte",
                out=tmp_path / "x",
                labels=tmp_path / "short-idx1-ubyte",
            ),
            quiet=True,
        )
    (tmp_path / "bad-idx1-ubyte").write_bytes(b"\x08\x03\x00\x00" + b"\0" * 8)
    with pytest.raises(DataError, match="bad magic number"):
        read_idx(tmp_path / "bad-idx1-ubyte")
    (tmp_path / "trunc-idx1-ubyte").write_bytes(_idx((5,), bytes([1, 2])))
    with pytest.raises(DataError, match="header says 5 values"):
        read_idx(tmp_path / "trunc-idx1-ubyte")
    with pytest.raises(DataError, match="needs --labels"):
        import_dataset(
            ImportConfig(src=tmp_path / "img-idx3-ubyte", out=tmp_path / "y"), quiet=True
        )
    with pytest.raises(DataError, match="only 2 names"):
        import_dataset(
            ImportConfig(
                src=tmp_path / "img-idx3-ubyte",
                out=tmp_path / "z",
                labels=tmp_path / "lab-idx1-ubyte.gz",
                class_names=("a", "b"),
            ),
            quiet=True,
        )


def test_pixel_csv_with_header_and_bad_rows(tmp_path):
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (4, 16), dtype=np.uint8)
    lines = ["label," + ",".join(f"pixel{i + 1}" for i in range(16))]
    lines += [f"{k % 2}," + ",".join(map(str, row)) for k, row in enumerate(pixels)]
    lines.append("1," + ",".join(["300"] * 16))  # out of range
    lines.append("0,1,2")  # too short
    lines.append("1," + ",".join(["x"] * 16))  # not numbers
    (tmp_path / "train.csv").write_text("\n".join(lines) + "\n")
    import_dataset(
        ImportConfig(
            src=tmp_path / "train.csv", out=tmp_path / "ds", class_names=("tee", "trouser")
        ),
        quiet=True,
    )
    ds = load_dataset(tmp_path / "ds")
    assert ds.card["format"] == "csv" and ds.classes == ["tee", "trouser"]
    assert [r.label for r in ds.records] == ["tee", "trouser", "tee", "trouser"]
    for rec, row in zip(ds.records, pixels, strict=True):
        np.testing.assert_array_equal(np.asarray(Image.open(rec.path)), row.reshape(4, 4))
    reasons = {s["path"]: s["reason"] for s in ds.report["skipped"]}
    assert reasons == {
        "train.csv:row 6": "pixel values must be integers 0..255",
        "train.csv:row 7": "3 columns, expected 17",
        "train.csv:row 8": "non-numeric pixel value",
    }


def test_path_csv_with_split_column(tmp_path, sample_folder):
    photos = (
        sorted((sample_folder / "train" / "hat").iterdir())[:3]
        + sorted((sample_folder / "train" / "shoes").iterdir())[:3]
    )
    rows = ["path,label,split"]
    for k, p in enumerate(photos):
        (tmp_path / p.name).write_bytes(p.read_bytes())
        rows.append(f"{p.name},{p.parent.name},{'train' if k % 3 else 'val'}")
    rows.append("missing.jpg,hat,train")
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    import_dataset(ImportConfig(src=tmp_path / "list.csv", out=tmp_path / "ds"), quiet=True)
    ds = load_dataset(tmp_path / "ds")
    assert ds.counts() == {"train": {"hat": 2, "shoes": 2}, "validation": {"hat": 1, "shoes": 1}}
    assert ds.report["skipped"] == [{"path": "missing.jpg", "reason": "file not found"}]
    assert ds.records[0].path.read_bytes() == photos[0].read_bytes()
