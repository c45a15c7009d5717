"""im2rec `.lst` files and MXNet RecordIO `.rec`/`.idx`: read, write, import, export.

RecordIO (dmlc-core), little-endian, every record 4-byte aligned:

    uint32 magic = 0xced7230a
    uint32 lrecord = cflag << 29 | length        (length < 2**29)
    length bytes of payload, then zero padding to a multiple of 4

cflag 0 is a whole record. A payload containing the magic number at a 4-aligned offset is cut
there into parts (the magic itself is dropped): cflag 1 = first part, 2 = middle, 3 = last; a
reader joins the parts with the magic in between. MXNet's image payload (`mx.recordio.pack`):

    IRHeader struct "IfQQ": uint32 flag, float32 label, uint64 id, uint64 id2   (24 bytes)
    if flag > 0: flag float32 labels follow (the header label is then 0)
    the encoded image bytes (JPEG/PNG, as stored)

`.idx` (MXIndexedRecordIO) is text: one `key\\toffset` line per record, offset of its magic.
`.lst` (im2rec) is text: `index\\tlabel[\\tlabel...]\\tpath`, labels printed as floats.
"""

from __future__ import annotations

import io
import os
import re
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from lensflow.data.dataset import UNSPLIT, Dataset, load_dataset
from lensflow.data.folder import SPLIT_ALIASES, Scan
from lensflow.data.validate import Item
from lensflow.errors import DataError
from lensflow.io import atomic_open, atomic_write_text
from lensflow.progress import track

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
IR_FORMAT = "<IfQQ"
IR_SIZE = struct.calcsize(IR_FORMAT)  # 24
_MAX_LEN = (1 << 29) - 1


# -- RecordIO framing -------------------------------------------------------------------------
def _pad(n: int) -> int:
    return (n + 3) & ~3


def encode_record(payload: bytes) -> bytes:
    """One payload as RecordIO bytes, split at aligned magic numbers exactly like dmlc-core."""
    if len(payload) > _MAX_LEN:
        raise DataError(f"a RecordIO record must be < 2**29 bytes, got {len(payload):,}")
    out = bytearray()
    start = 0
    for i in range(0, len(payload) & ~3, 4):
        if payload[i : i + 4] == _MAGIC_BYTES:
            out += _MAGIC_BYTES + struct.pack("<I", (1 if start == 0 else 2) << 29 | (i - start))
            out += payload[start:i]
            start = i + 4
    rest = len(payload) - start
    out += _MAGIC_BYTES + struct.pack("<I", (3 if start else 0) << 29 | rest)
    out += payload[start:]
    out += b"\0" * (_pad(len(payload)) - len(payload))
    return bytes(out)


def read_record(f: io.BufferedIOBase) -> bytes | None:
    """The next payload from a RecordIO stream (parts joined), or None at the end."""
    parts: list[bytes] = []
    while True:
        head = f.read(8)
        if not head:
            if parts:
                raise DataError("RecordIO file ends inside a multi-part record")
            return None
        if len(head) < 8:
            raise DataError("RecordIO file is truncated (incomplete record header)")
        magic, lrec = struct.unpack("<II", head)
        if magic != MAGIC:
            raise DataError(f"not a RecordIO record: magic 0x{magic:08x}, expected 0x{MAGIC:08x}")
        cflag, length = lrec >> 29, lrec & _MAX_LEN
        data = f.read(_pad(length))
        if len(data) < _pad(length):
            raise DataError("RecordIO file is truncated (record shorter than its header says)")
        parts.append(data[:length])
        if cflag in (0, 3):
            return _MAGIC_BYTES.join(parts)
        if cflag not in (1, 2):
            raise DataError(f"invalid RecordIO continuation flag {cflag}")


# -- IRHeader ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class IRRecord:
    label: float | tuple[float, ...]
    id: int
    id2: int
    image: bytes


def pack_ir(label: float | tuple[float, ...], image: bytes, id: int = 0, id2: int = 0) -> bytes:
    if isinstance(label, tuple):
        extra = struct.pack(f"<{len(label)}f", *label)
        return struct.pack(IR_FORMAT, len(label), 0.0, id, id2) + extra + image
    return struct.pack(IR_FORMAT, 0, float(label), id, id2) + image


def unpack_ir(payload: bytes) -> IRRecord:
    if len(payload) < IR_SIZE:
        raise DataError(f"record of {len(payload)} bytes is too short for an IRHeader")
    flag, label, id_, id2 = struct.unpack_from(IR_FORMAT, payload)
    offset = IR_SIZE
    if flag > 0:
        if len(payload) < offset + 4 * flag:
            raise DataError(f"record declares {flag} labels but is too short")
        labels = struct.unpack_from(f"<{flag}f", payload, offset)
        offset += 4 * flag
        return IRRecord(tuple(labels), id_, id2, payload[offset:])
    return IRRecord(label, id_, id2, payload[offset:])


def iter_rec(path: Path) -> Iterator[tuple[int, IRRecord]]:
    """(position, record) for every record of a .rec file, in file order."""
    try:
        f = path.open("rb")
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from e
    with f:
        while True:
            pos = f.tell()
            payload = read_record(f)
            if payload is None:
                return
            yield pos, unpack_ir(payload)


def write_rec(rec_path: Path, records: Iterable[tuple[int, float, bytes]]) -> None:
    """Write (key, label, image bytes) as .rec + .idx (key also in the IRHeader id).

    Streams into a hidden temp file renamed on success: no half-written .rec on failure.
    """
    index = []
    with atomic_open(rec_path) as f:
        for key, label, image in records:
            index.append(f"{key}\t{f.tell()}\n")
            f.write(encode_record(pack_ir(float(label), image, id=key)))
    atomic_write_text(rec_path.with_suffix(".idx"), "".join(index))


def read_idx_file(path: Path) -> dict[int, int]:
    out = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            key, pos = line.split("\t")
            out[int(key)] = int(pos)
        except ValueError as e:
            raise DataError(f"{path}:{n}: expected 'key<TAB>offset', got {line!r}") from e
    return out


# -- .lst -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LstEntry:
    index: int
    labels: tuple[float, ...]
    path: str


def parse_lst(path: Path) -> tuple[list[LstEntry], list[dict[str, str]]]:
    entries, bad = [], []
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {path}: {e}") from e
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.rstrip("\n").split("\t")
        try:
            if len(parts) < 3:
                raise ValueError
            entries.append(LstEntry(int(parts[0]), tuple(float(x) for x in parts[1:-1]), parts[-1]))
        except ValueError:
            bad.append(
                {"path": f"{path.name}:line {n}", "reason": "expected index<TAB>label<TAB>path"}
            )
    return entries, bad


def format_lst(entries: list[LstEntry]) -> str:
    """im2rec's own formatting: `%d\\t` + `%f\\t` per label + `%s\\n`."""
    lines = []
    for e in entries:
        lines.append(f"{e.index}\t" + "".join(f"{lab:f}\t" for lab in e.labels) + f"{e.path}\n")
    return "".join(lines)


# -- import sources ---------------------------------------------------------------------------
def split_from_name(path: Path) -> str:
    """NAME_train.rec -> train, NAME_val.lst -> validation; anything else -> all."""
    m = re.search(r"[_-](train|training|val|valid|validation|test|testing)$", path.stem, re.I)
    return SPLIT_ALIASES[m.group(1).lower()] if m else UNSPLIT


def sibling_class_names(path: Path) -> tuple[str, ...] | None:
    """NAME_labels.txt beside NAME[_split].rec/.lst (written by export-lst/export-rec), if any."""
    base = re.sub(
        r"[_-](train|training|val|valid|validation|test|testing)$", "", path.stem, flags=re.I
    )
    labels = path.parent / f"{base}_labels.txt"
    if not labels.is_file():
        return None
    return tuple(line.strip() for line in labels.read_text().splitlines() if line.strip())


def _class_name(value: float, class_names: tuple[str, ...] | None, width: int) -> str:
    index = int(value)
    if index != value or index < 0:
        raise ValueError(f"label {value} is not a class index")
    if class_names is not None:
        if index >= len(class_names):
            raise ValueError(f"label {index} has no name in --class-names")
        return class_names[index]
    return f"{index:0{width}d}"


def scan_lst(path: Path, root: Path | None, class_names: tuple[str, ...] | None) -> Scan:
    entries, bad = parse_lst(path)
    scan = Scan(skipped=bad)
    class_names = class_names or sibling_class_names(path)
    root = root or path.parent
    split = split_from_name(path)
    width = len(str(int(max((e.labels[0] for e in entries if e.labels), default=0))))
    for e in entries:
        ref = e.path
        try:
            label = _class_name(e.labels[0], class_names, width)
        except ValueError as err:
            scan.skipped.append({"path": ref, "reason": str(err)})
            continue
        file = root / e.path
        if not file.is_file():
            scan.skipped.append({"path": ref, "reason": f"file not found under {root}"})
            continue
        scan.items.append(Item(ref, label, split, file))
    return scan


def scan_rec(path: Path, class_names: tuple[str, ...] | None) -> Scan:
    records = list(iter_rec(path))
    scan = Scan()
    class_names = class_names or sibling_class_names(path)
    split = split_from_name(path)
    labels = [r.label[0] if isinstance(r.label, tuple) else r.label for _, r in records]
    width = len(str(int(max(labels, default=0))))
    for (_, rec), value in zip(records, labels, strict=True):
        ref = f"{path.name}#{rec.id}"
        try:
            label = _class_name(value, class_names, width)
        except ValueError as err:
            scan.skipped.append({"path": ref, "reason": str(err)})
            continue
        scan.items.append(Item(ref, label, split, rec.image))
    return scan


# -- export -----------------------------------------------------------------------------------
_SPLIT_SUFFIX = {"train": "_train", "validation": "_val", "test": "_test", UNSPLIT: ""}


def _by_split(ds: Dataset) -> dict[str, list[tuple[int, int, Path]]]:
    """split -> (row index, class index, absolute path), in manifest order."""
    class_index = {c: i for i, c in enumerate(ds.classes)}
    out: dict[str, list[tuple[int, int, Path]]] = {}
    for i, r in enumerate(ds.records):
        out.setdefault(r.split, []).append((i, class_index[r.label], r.path))
    return out


def export_lst(
    dataset: str | os.PathLike[str], out_dir: Path, name: str | None = None
) -> list[Path]:
    """NAME_train.lst / NAME_val.lst / NAME_test.lst (NAME.lst when unsplit), paths relative to
    DATASET, so `im2rec.py NAME_train DATASET` packs them; plus NAME_labels.txt."""
    ds = load_dataset(dataset)
    name = name or ds.path.name
    written = []
    for split, rows in _by_split(ds).items():
        entries = [LstEntry(i, (float(c),), p.relative_to(ds.path).as_posix()) for i, c, p in rows]
        target = out_dir / f"{name}{_SPLIT_SUFFIX[split]}.lst"
        written.append(atomic_write_text(target, format_lst(entries)))
    written.append(atomic_write_text(out_dir / f"{name}_labels.txt", "\n".join(ds.classes) + "\n"))
    return written


def export_rec(
    dataset: str | os.PathLike[str], out_dir: Path, name: str | None = None, quiet: bool = True
) -> list[Path]:
    """NAME_train.rec/.idx etc.: stored image bytes as-is, label = class index, key = row index."""
    ds = load_dataset(dataset)
    name = name or ds.path.name
    written = []
    for split, rows in _by_split(ds).items():
        target = out_dir / f"{name}{_SPLIT_SUFFIX[split]}.rec"
        shown = track(rows, f"writing {target.name}", total=len(rows), quiet=quiet)
        write_rec(target, ((i, float(c), p.read_bytes()) for i, c, p in shown))
        written += [target, target.with_suffix(".idx")]
    written.append(atomic_write_text(out_dir / f"{name}_labels.txt", "\n".join(ds.classes) + "\n"))
    return written
