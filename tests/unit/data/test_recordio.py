"""RecordIO and .lst: a golden hand-built record, multi-part records, round trips byte-identical."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest

from lensflow.data import ImportConfig, import_dataset, load_dataset
from lensflow.data.recordio import (
    MAGIC,
    encode_record,
    iter_rec,
    pack_ir,
    parse_lst,
    read_idx_file,
    read_record,
    split_from_name,
    unpack_ir,
    write_rec,
)
from lensflow.errors import DataError


def test_golden_record_layout(tmp_path):
    image = b"\xff\xd8\xff\xe0JFIF-not-really-an-image!"  # 29 bytes: exercises the 4-byte padding
    payload = struct.pack("IfQQ", 0, 3.0, 7, 0) + image  # MXNet's IRHeader, native 'IfQQ'
    by_hand = (
        struct.pack("<I", 0xCED7230A)
        + struct.pack("<I", (0 << 29) | len(payload))  # cflag 0 in the upper 3 bits
        + payload
        + b"\0" * (-len(payload) % 4)
    )
    assert len(by_hand) % 4 == 0 and len(payload) == 24 + 29
    assert encode_record(pack_ir(3.0, image, id=7)) == by_hand
    write_rec(tmp_path / "one.rec", [(7, 3.0, image)])
    assert (tmp_path / "one.rec").read_bytes() == by_hand
    assert read_idx_file(tmp_path / "one.idx") == {7: 0}
    [(pos, rec)] = list(iter_rec(tmp_path / "one.rec"))
    assert pos == 0 and rec.label == 3.0 and rec.id == 7 and rec.id2 == 0 and rec.image == image


def test_magic_inside_payload_is_split_like_dmlc():
    magic = struct.pack("<I", MAGIC)
    payload = b"abcd" + magic + b"efgh" + magic + b"xy"
    encoded = encode_record(payload)
    # parts: "abcd" (cflag 1), "efgh" (cflag 2), "xy" (cflag 3) + 2 bytes of padding
    expected = (
        magic + struct.pack("<I", 1 << 29 | 4) + b"abcd"
        + magic + struct.pack("<I", 2 << 29 | 4) + b"efgh"
        + magic + struct.pack("<I", 3 << 29 | 2) + b"xy\0\0"
    )  # fmt: skip
    assert encoded == expected
    f = io.BytesIO(encoded + encode_record(b"next"))
    assert read_record(f) == payload and read_record(f) == b"next" and read_record(f) is None


def test_multi_label_header_and_bad_input():
    rec = unpack_ir(pack_ir((1.0, 2.5), b"img", id=3))
    assert rec.label == (1.0, 2.5) and rec.image == b"img" and rec.id == 3
    with pytest.raises(DataError, match="magic 0x"):
        read_record(io.BytesIO(b"\0" * 8))
    with pytest.raises(DataError, match="truncated"):
        read_record(io.BytesIO(encode_record(b"12345678")[:-4]))
    assert split_from_name(Path("x_val.rec")) == "validation"
    assert (
        split_from_name(Path("x-train.lst")) == "train" and split_from_name(Path("x.rec")) == "all"
    )


def test_rec_round_trip_is_byte_identical(tiny_dataset, tmp_path):
    from lensflow.data.recordio import export_rec

    files = export_rec(tiny_dataset, tmp_path / "rec", name="clothing")
    names = sorted(f.name for f in files)
    assert names == [
        "clothing_labels.txt",
        "clothing_train.idx",
        "clothing_train.rec",
        "clothing_val.idx",
        "clothing_val.rec",
    ]
    ds = load_dataset(tiny_dataset)
    train = ds.split("train")
    records = list(iter_rec(tmp_path / "rec" / "clothing_train.rec"))
    assert len(records) == len(train)
    index = read_idx_file(tmp_path / "rec" / "clothing_train.idx")
    for (pos, rec), original in zip(records, train, strict=True):
        assert rec.image == original.path.read_bytes()
        assert ds.classes[int(rec.label)] == original.label and index[rec.id] == pos
    # import the .rec back: class names come from clothing_labels.txt, split from the name
    import_dataset(
        ImportConfig(src=tmp_path / "rec" / "clothing_train.rec", out=tmp_path / "back"), quiet=True
    )
    back = load_dataset(tmp_path / "back")
    assert back.card["format"] == "rec" and back.classes == ds.classes
    assert [r.path.read_bytes() for r in back.split("train")] == [
        r.path.read_bytes() for r in train
    ]
    assert [r.label for r in back.split("train")] == [r.label for r in train]


def test_lst_round_trip(tiny_dataset, tmp_path):
    from lensflow.data.recordio import export_lst

    export_lst(tiny_dataset, tmp_path, name="c")
    entries, bad = parse_lst(tmp_path / "c_val.lst")
    assert bad == [] and len(entries) == 20
    first = (tmp_path / "c_val.lst").read_text().splitlines()[0].split("\t")
    assert len(first) == 3 and first[1].endswith(".000000")  # im2rec prints labels with %f
    import_dataset(
        ImportConfig(
            src=tmp_path / "c_val.lst", out=tmp_path / "back", root=tiny_dataset, min_per_class=0
        ),
        quiet=True,
    )
    back, ds = load_dataset(tmp_path / "back"), load_dataset(tiny_dataset)
    assert back.counts() == {"validation": ds.counts()["validation"]}
    assert [r.path.read_bytes() for r in back.records] == [
        r.path.read_bytes() for r in ds.split("validation")
    ]
