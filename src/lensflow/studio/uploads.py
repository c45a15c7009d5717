"""Images into a Studio model: single files, zips of class folders, URL lists.

Every file goes through the dataset importer's validator (`lensflow.data.validate.process_item`):
the same full decode, RGB conversion and size limits as `lensflow data import`. Upload names are
only shown in messages; stored files are named by Studio (`images/<category>/<content hash>.<ext>`), so
a name like `../../etc/passwd` can never become a path. Zip entries that are absolute or climb
out with `..` are rejected before anything is read.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from lensflow.data.folder import SPLIT_ALIASES
from lensflow.data.validate import Item, is_image_name, process_item
from lensflow.errors import StudioError
from lensflow.studio.store import Conflict, Store


def _any_case(word: str) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in word)


# The naming rule as one regular expression, published as the schema pattern of the API and
# used by the server, so both agree by construction: 1-64 ASCII letters, digits, '_', '.', '+',
# '-'; a letter or digit first; no '.' or '_' last (so the name is its own folder name); not a
# split name (any case). `(?![\s\S])` ends the string in every regex dialect (Python's `$`
# also matches before a final newline).
_RESERVED = "|".join(_any_case(w) for w in sorted(SPLIT_ALIASES))
CATEGORY_PATTERN = (
    rf"^(?!(?:{_RESERVED})(?![\s\S]))"
    r"[A-Za-z0-9](?:[A-Za-z0-9_.+-]{0,62}[A-Za-z0-9+-])?(?![\s\S])"
)
CATEGORY_RE = re.compile(CATEGORY_PATTERN)


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int = 20_000_000  # one image
    max_files: int = 1000  # files (or zip entries, or URLs) per request
    max_request_bytes: int = 500_000_000  # a whole upload request (Content-Length)
    max_zip_bytes: int = 1_000_000_000  # uncompressed total of a zip (zip bombs)
    max_images_per_model: int = 20_000
    public_urls_only: bool = False  # URL uploads: refuse internal hosts (set when exposed)


@dataclass
class UploadResult:
    accepted: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def reject(self, name: str, reason: str) -> None:
        self.rejected.append({"name": name, "reason": reason})

    def to_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "rejected": self.rejected,
            "counts": {"accepted": len(self.accepted), "rejected": len(self.rejected)},
        }


def check_category_name(name: Any) -> str:
    if isinstance(name, str) and name.lower() in SPLIT_ALIASES:
        raise StudioError(
            f"category name {name!r} is reserved (it names a dataset split); choose another"
        )
    if not isinstance(name, str) or not CATEGORY_RE.search(name):
        raise StudioError(
            f"category name {name!r} is not allowed: use 1-64 ASCII letters, digits, '-', '_', "
            "'.' or '+', starting with a letter or digit and not ending in '.' or '_' "
            "(e.g. 't-shirt')"
        )
    return name


def check_categories(names: list[str]) -> list[str]:
    out = [check_category_name(n) for n in names]
    lowered = [n.lower() for n in out]
    if len(set(lowered)) != len(lowered):
        raise Conflict(f"categories repeat (case-insensitively): {out}")
    return out


class Uploader:
    """Validates and stores images for one model; collects accepted/rejected entries."""

    def __init__(self, store: Store, model: dict[str, Any], limits: Limits) -> None:
        self.store, self.model, self.limits = store, model, limits
        self.result = UploadResult()
        self.count = sum(store.counts(model["id"]).values())
        self.seen = 0  # files considered in this request

    def _category(self, name: str, category: str | None) -> str | None:
        if category is None:
            self.result.reject(name, "no category: pass ?category=NAME or put it in a class folder")
            return None
        if category not in self.model["categories"]:
            known = ", ".join(self.model["categories"]) or "none yet"
            self.result.reject(name, f"unknown category {category!r} (known: {known})")
            return None
        return category

    def _budget(self, name: str) -> bool:
        self.seen += 1
        if self.seen > self.limits.max_files:
            self.result.reject(name, f"more than {self.limits.max_files} files in one upload")
            return False
        if self.count >= self.limits.max_images_per_model:
            self.result.reject(name, f"model already has {self.limits.max_images_per_model} images")
            return False
        return True

    def add_bytes(self, name: str, data: bytes, category: str | None) -> None:
        """Validate one image with the dataset importer and store it under a Studio name."""
        if not self._budget(name):
            return
        cat = self._category(name, category)
        if cat is None:
            return
        if len(data) > self.limits.max_file_bytes:
            self.result.reject(
                name, f"too large: {len(data):,} bytes > {self.limits.max_file_bytes:,}"
            )
            return
        model_dir = self.store.model_dir(self.model["id"])
        # Named by content: the same photos always make the same dataset, split and model.
        stem = f"images/{cat}/{hashlib.sha256(data).hexdigest()[:24]}"
        res = process_item(Item(name, cat, "all", data), model_dir, stem)
        if not res["ok"]:
            self.result.reject(name, res["reason"])
            return
        dup = self.store.find_image_by_hash(self.model["id"], res["sha256"])
        if dup is not None:
            if dup["path"] != res["path"]:  # same bytes in the same category share the file
                (model_dir / res["path"]).unlink(missing_ok=True)
            self.result.reject(
                name, f"duplicate of image {dup['id']} ({dup['source']}) in {dup['category']!r}"
            )
            return
        image_id = self.store.add_image(
            self.model["id"], cat, res["path"], res["sha256"], res["width"], res["height"], name
        )
        self.count += 1
        self.result.accepted.append(
            {"name": name, "image_id": image_id, "category": cat, "note": res["note"]}
        )

    def add_file(self, name: str, stream: IO[bytes], category: str | None) -> None:
        """An uploaded file: a zip of class folders or one image (read at most the limit + 1)."""
        head = stream.read(4)
        stream.seek(0)
        if head == b"PK\x03\x04" or name.lower().endswith(".zip"):
            self.add_zip(name, stream, category)
            return
        data = stream.read(self.limits.max_file_bytes + 1)
        self.add_bytes(name, data, category)

    def add_zip(self, name: str, stream: IO[bytes], category: str | None) -> None:
        try:
            zf = zipfile.ZipFile(stream)
        except (zipfile.BadZipFile, OSError) as e:
            self.result.reject(name, f"not a readable zip file: {e}")
            return
        total = 0
        with zf:
            for info in zf.infolist():
                if info.is_dir():
                    continue
                entry = f"{name}:{info.filename}"
                reason = unsafe_entry(info.filename)
                if reason:
                    self.result.reject(entry, reason)
                    continue
                parts = PurePosixPath(info.filename).parts
                if any(p.startswith(".") or p == "__MACOSX" for p in parts):
                    continue  # Finder/OS metadata, not photos
                if not is_image_name(parts[-1]):
                    self.result.reject(entry, "not an image file name (jpg, png, ...)")
                    continue
                if info.file_size > self.limits.max_file_bytes:
                    self.result.reject(
                        entry,
                        f"too large: {info.file_size:,} bytes > {self.limits.max_file_bytes:,}",
                    )
                    continue
                total += info.file_size
                if total > self.limits.max_zip_bytes:
                    self.result.reject(
                        entry, f"zip expands beyond {self.limits.max_zip_bytes:,} bytes"
                    )
                    break
                folder = parts[-2] if len(parts) > 1 else category
                try:
                    data = zf.read(info)
                except (zipfile.BadZipFile, OSError, RuntimeError) as e:
                    self.result.reject(entry, f"cannot extract: {e}")
                    continue
                self.add_bytes(entry, data, folder)

    def add_urls(self, urls: list[Any], category: str | None) -> None:
        """Fetch with the `lensflow download` machinery, then validate each body like an upload."""
        from lensflow.data.download import DownloadConfig, UrlItem, download

        cat = self._category("urls", category)
        if cat is None:
            return
        good = [u for u in urls if isinstance(u, str)]
        for u in urls:
            if not isinstance(u, str):
                self.result.reject(str(u)[:80], "not a URL string")
        good = good[: self.limits.max_files]
        tmp = Path(tempfile.mkdtemp(prefix=".urls-", dir=self.store.model_dir(self.model["id"])))
        try:
            config = DownloadConfig(
                None,
                tmp,
                workers=8,
                timeout=10,
                retries=1,
                max_bytes=self.limits.max_file_bytes,
                public_only=self.limits.public_urls_only,
            )
            result = download([UrlItem(u, cat) for u in good], config, quiet=True)
            for item in result.items:
                if item.status == "downloaded" and item.path:
                    self.add_bytes(item.url, (tmp / item.path).read_bytes(), cat)
                else:
                    code = f" {item.code}" if item.code else ""
                    self.result.reject(item.url, f"{item.status}{code}: {item.reason}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def unsafe_entry(filename: str) -> str | None:
    """Why a zip entry name is unsafe to extract (absolute, drive, '..', backslashes), or None."""
    if filename.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", filename):
        return "unsafe path in zip (absolute): rejected"
    if "\\" in filename:
        return "unsafe path in zip (backslash): rejected"
    if ".." in PurePosixPath(filename).parts:
        return "unsafe path in zip ('..' climbs out of the folder): rejected"
    return None
