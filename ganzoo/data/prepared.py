"""Prepared datasets: images decoded once into raw uint8 shards that training memory-maps.

A folder of JPEGs is decoded at every start today; a prepared dataset is
decoded once (``ganzoo data prepare``, or automatically on first use) and then
read in place. The storage is raw pixels, chosen by measurement (docs/data.md):
no decoding in the training loop, random access by index, and the operating
system's page cache holds one copy however many processes of a machine read it,
so a training process's own memory does not grow with the dataset.

A prepared dataset is a folder:

    manifest.json        written last and atomically: without it the folder is not a dataset
    images-00000.u8 ...  uint8 (n, C, R, R) per shard; two-domain data has A-*.u8 and B-*.u8
    images-labels.i64    little-endian int64 per image, where the source has labels (-1: an image without a
                         class, a file in the root of a class-folder dataset)

Every file is listed in the manifest with its size, sha256 and modification
time. Opening checks each size (a truncated file is named) and re-hashes a
file whose time changed (an edited file is named); ``ganzoo data verify``
re-hashes everything. Files are mapped copy-on-write ('c'): nothing private is
allocated unless written, and a read-only mount works.

The manifest's "classes" names the classes (index = label) and "classes_from"
says where they came from (ganzoo.data.class_labels); each domain lists its
"unlabelled" images by relative path, so a conditional run can name them.
Version 1 (before class folders were read) kept dataset.json's labels but no
names and no classes from subfolders: it is still read (its classes "0".."K-1"),
and a conditional run on a version-1 copy without labels is told to prepare
it again.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    import torch

FORMAT = "ganzoo-prepared-dataset"
VERSION = 2  # 2: "classes", "classes_from" and per-domain "unlabelled"; labels from class subfolders
READABLE_VERSIONS = (1, 2)
MANIFEST = "manifest.json"
SHARD_BYTES = 256 << 20  # pixels per shard file: a resumed prepare loses at most one shard of work
IMAGES = "images"  # the one domain of single-domain data; two-domain data has "A" and "B"
_HASH_CHUNK = 8 << 20


def image_bytes(channels: int, resolution: int) -> int:
    return channels * resolution * resolution


def shard_capacity(channels: int, resolution: int) -> int:
    """Images per shard: SHARD_BYTES of pixels, at least one image."""
    return max(1, SHARD_BYTES // image_bytes(channels, resolution))


def shard_name(domain: str, index: int) -> str:
    return f"{domain}-{index:05d}.u8"


def labels_name(domain: str) -> str:
    return f"{domain}-labels.i64"


def is_prepared(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds a complete prepared dataset (its manifest names this format)."""
    path = Path(folder) / MANIFEST
    try:
        if not path.is_file():
            return False
        return json.loads(path.read_bytes()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def write_array_file(path: str | os.PathLike, array: np.ndarray) -> dict[str, Any]:
    """``array``'s bytes to ``path`` atomically (beside, fsync, rename); its manifest entry.

    A full disk or read-only folder is one UserError naming ``path``; the partial file is removed.
    """
    from ..fileio import atomic_write

    path = Path(path)
    data = np.ascontiguousarray(array)
    digest = hashlib.sha256()
    view = memoryview(data).cast("B")

    def write(f) -> None:
        for start in range(0, len(view), _HASH_CHUNK):
            chunk = view[start:start + _HASH_CHUNK]
            digest.update(chunk)
            f.write(chunk)

    atomic_write(path, write)
    info = path.stat()
    return {"file": path.name, "bytes": info.st_size, "sha256": digest.hexdigest(), "mtime_ns": info.st_mtime_ns}


def write_manifest(folder: str | os.PathLike, manifest: dict[str, Any]) -> None:
    """manifest.json, atomically: the step that makes ``folder`` a dataset."""
    from ..fileio import write_json

    write_json(Path(folder) / MANIFEST, manifest)


def new_manifest(*, name: str, source: str, source_kind: str, fingerprint: Any, resolution: int, channels: int,
                 max_image_pixels: int, domains: dict[str, Any], classes: list[str] | None = None,
                 classes_from: str | None = None) -> dict[str, Any]:
    from .. import __version__

    return {"format": FORMAT, "version": VERSION, "ganzoo_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "name": name, "source": source,
            "source_kind": source_kind, "fingerprint": fingerprint, "resolution": resolution,
            "channels": channels, "max_image_pixels": max_image_pixels, "classes": classes,
            "classes_from": classes_from, "domains": domains}


class PreparedImages:
    """One domain of a prepared dataset: uint8 (N, C, R, R) read lazily from memory-mapped shards.

    Rows are copied out only when gathered, so a process holds the batches it
    asks for and nothing more; the shards' pages belong to the page cache.
    """

    def __init__(self, folder: Path, domain: str, entry: dict[str, Any], channels: int, resolution: int):
        self.folder, self.domain = folder, domain
        self.channels, self.resolution = channels, resolution
        self.count = entry["count"]
        self.bad: list[list[str]] = entry.get("bad") or []
        self.unlabelled: list[str] = entry.get("unlabelled") or []  # relative paths of the images labelled -1
        self._shards = [_map(folder / shard["file"], np.uint8, (shard["count"], channels, resolution, resolution))
                        for shard in entry["shards"]]
        # Where each shard starts, by image index; shards may hold fewer images than shard_capacity
        # (bad files are left out of the shard their source items fell in).
        self._starts = np.cumsum([0] + [shard["count"] for shard in entry["shards"]])
        labels = entry.get("labels")
        self.labels = _map(folder / labels["file"], np.dtype("<i8"), (self.count,)) if labels else None

    def __len__(self) -> int:
        return self.count

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.count, self.channels, self.resolution, self.resolution)

    @property
    def nbytes(self) -> int:
        return self.count * image_bytes(self.channels, self.resolution)

    @property
    def dtype(self):
        """torch.uint8, as an image tensor's: code that checks a dataset's images reads it."""
        import torch

        return torch.uint8

    def gather(self, indices) -> "torch.Tensor":
        """Rows ``indices`` (int64, any order, repeats allowed) as a new uint8 tensor (n, C, R, R)."""
        import torch

        index = np.asarray(indices.cpu() if hasattr(indices, "cpu") else indices, dtype=np.int64).reshape(-1)
        if len(index) and (index.min() < 0 or index.max() >= self.count):
            raise IndexError(f"image index out of range 0..{self.count - 1} in {self.folder}")
        if len(self._shards) == 1:  # numpy's fancy indexing on a map: a copy of just these rows
            return torch.from_numpy(np.ascontiguousarray(self._shards[0][index]))
        out = np.empty((len(index), self.channels, self.resolution, self.resolution), dtype=np.uint8)
        shard_of = np.searchsorted(self._starts, index, side="right") - 1
        for shard in np.unique(shard_of):
            rows = np.nonzero(shard_of == shard)[0]
            out[rows] = self._shards[shard][index[rows] - self._starts[shard]]  # numpy: 100x torch's index_put
        return torch.from_numpy(out)

    def __getitem__(self, indices) -> "torch.Tensor":
        return self.gather(indices)

    def read_all(self) -> "torch.Tensor":
        """The whole domain in memory (for data small enough to live on an accelerator, and for evaluation)."""
        import torch

        out = torch.empty(self.shape, dtype=torch.uint8)
        for shard, start in zip(self._shards, self._starts):
            out[start:start + len(shard)] = torch.from_numpy(np.asarray(shard))
        return out

    def numpy(self) -> np.ndarray:
        return self.read_all().numpy()

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        array = self.numpy()
        return array if dtype is None else array.astype(dtype)


@dataclass
class PreparedDataset:
    path: Path
    manifest: dict[str, Any]
    domains: dict[str, PreparedImages]

    @property
    def resolution(self) -> int:
        return self.manifest["resolution"]

    @property
    def channels(self) -> int:
        return self.manifest["channels"]

    @property
    def bad(self) -> list[list[str]]:
        """[relative path, message] of every source file left out, over all domains."""
        return [item for images in self.domains.values() for item in images.bad]

    @property
    def classes(self) -> tuple[str, ...] | None:
        """The class names (index = label), or None without labels."""
        return manifest_classes(self.manifest, self.domains.get(IMAGES))

    @property
    def classes_from(self) -> str | None:
        """Where the classes came from (class_labels.SUBFOLDERS or DATASET_JSON), None without labels."""
        from .class_labels import DATASET_JSON

        if self.manifest.get("version") == 1:
            return DATASET_JSON if self.manifest.get("source_kind", "").startswith("stylegan") else None
        return self.manifest.get("classes_from")


def manifest_classes(manifest: dict[str, Any], images: "PreparedImages | None") -> tuple[str, ...] | None:
    """A manifest's class names; a version-1 manifest named none, so its labels give "0".."K-1"."""
    from .class_labels import index_classes

    if manifest.get("version") != 1:
        classes = manifest.get("classes")
        return None if classes is None else tuple(classes)
    if images is None or images.labels is None:
        return None
    return tuple(index_classes(np.asarray(images.labels)))


def _map(path: Path, dtype, shape: tuple[int, ...]) -> np.ndarray:
    if shape[0] == 0:
        return np.empty(shape, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="c", shape=shape)


def read_manifest(folder: Path) -> dict[str, Any]:
    """manifest.json, checked for the shape this reader understands; UserError naming it otherwise."""
    from ..fileio import read_regular

    path = folder / MANIFEST
    if not path.exists():
        raise UserError(f"{folder} is not a prepared dataset: it has no {MANIFEST} (an unfinished prepare leaves "
                        "none; run `ganzoo data prepare` again to finish it)")
    try:
        manifest = json.loads(read_regular(path))
    except ValueError as error:
        raise UserError(f"{path} is not valid JSON ({error}): prepare the dataset again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UserError(f"{path} is not a ganzoo prepared dataset manifest (no \"format\": \"{FORMAT}\")")
    if manifest.get("version") not in READABLE_VERSIONS:
        raise UserError(f"{path} has format version {manifest.get('version')!r}; this ganzoo reads versions "
                        f"{', '.join(map(str, READABLE_VERSIONS))}: prepare the dataset again with this version")
    problem = _shape_problem(manifest)
    if problem:
        raise UserError(f"{path} is damaged: {problem}; prepare the dataset again")
    return manifest


def _shape_problem(manifest: dict[str, Any]) -> str | None:
    """What is wrong with a manifest's structure (never trusted: file names must stay inside the folder)."""
    for key in ("resolution", "channels"):
        if not _positive_int(manifest.get(key)):
            return f"{key} is {manifest.get(key)!r}, not a positive integer"
    if manifest["channels"] not in (1, 3):
        return f"channels is {manifest['channels']}, not 1 or 3"
    domains = manifest.get("domains")
    if not isinstance(domains, dict) or not domains:
        return "it lists no domains"
    classes = manifest.get("classes")
    if classes is not None and not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
        return f"classes is {repr(classes)[:120]}, not a list of class names"
    if manifest["version"] > 1 and classes is None and any(isinstance(e, dict) and e.get("labels")
                                                           for e in domains.values()):
        return "it has labels but no class names (\"classes\")"
    size = image_bytes(manifest["channels"], manifest["resolution"])
    for domain, entry in domains.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("shards"), list):
            return f"domain {domain!r} has no shard list"
        files = [*entry["shards"], *([entry["labels"]] if entry.get("labels") else [])]
        for item in files:
            if not (isinstance(item, dict) and _plain_name(item.get("file")) and _count(item.get("bytes"))
                    and isinstance(item.get("sha256"), str)):
                return f"domain {domain!r} lists a file entry it cannot use: {repr(item)[:120]}"
        for shard in entry["shards"]:
            if not _count(shard.get("count")) or shard["count"] * size != shard["bytes"]:
                return f"shard {shard['file']} holds {shard.get('count')!r} images but {shard['bytes']} bytes"
        if not _count(entry.get("count")) or entry["count"] != sum(s["count"] for s in entry["shards"]):
            return f"domain {domain!r} counts {entry.get('count')!r} images, its shards another number"
        if entry.get("labels") and entry["labels"]["bytes"] != 8 * entry["count"]:
            return f"domain {domain!r}: {entry['labels']['file']} does not hold one int64 label per image"
        unlabelled = entry.get("unlabelled") or []
        if not (isinstance(unlabelled, list) and all(isinstance(u, str) for u in unlabelled)):
            return f"domain {domain!r}: unlabelled is {repr(unlabelled)[:120]}, not a list of relative paths"
    return None


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _plain_name(name) -> bool:
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\0" not in name


def listed_files(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Every file entry of a manifest: the shards of each domain, then its labels."""
    out = []
    for entry in manifest["domains"].values():
        out += entry["shards"]
        if entry.get("labels"):
            out.append(entry["labels"])
    return out


def check_file(folder: Path, item: dict[str, Any], rehash: bool = False) -> None:
    """UserError naming the file if it is missing, of another size, or (when its time changed, or ``rehash``)
    its sha256 differs from the manifest's."""
    import stat

    from ..fileio import not_regular_message, sha256_of

    path = folder / item["file"]
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise UserError(not_regular_message(path, info.st_mode))
    except FileNotFoundError:
        raise UserError(f"{path} is missing from the prepared dataset {folder}: prepare it again") from None
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror or error}") from None
    if info.st_size != item["bytes"]:
        cut = "truncated" if info.st_size < item["bytes"] else "longer than prepared"
        raise UserError(f"{path} is {cut}: {info.st_size:,} bytes, {MANIFEST} says {item['bytes']:,}; the prepared "
                        f"dataset {folder} is damaged: prepare it again")
    if (rehash or info.st_mtime_ns != item.get("mtime_ns")) and sha256_of(path) != item["sha256"]:
        raise UserError(f"{path} changed since it was prepared: its sha256 is not the one {MANIFEST} records; the "
                        f"prepared dataset {folder} is damaged: prepare it again")


def open_prepared(folder: str | os.PathLike, verify: bool = True) -> PreparedDataset:
    """The prepared dataset in ``folder``; with ``verify``, each file checked (check_file) before use."""
    folder = Path(folder).expanduser().resolve()
    manifest = read_manifest(folder)
    if verify:
        for item in listed_files(manifest):
            check_file(folder, item)
    domains = {d: PreparedImages(folder, d, entry, manifest["channels"], manifest["resolution"])
               for d, entry in manifest["domains"].items()}
    return PreparedDataset(folder, manifest, domains)


def verify_all(folder: str | os.PathLike) -> int:
    """Re-hash every file of the dataset in ``folder``; the number checked, or UserError naming the first bad one."""
    folder = Path(folder).expanduser().resolve()
    manifest = read_manifest(folder)
    files = listed_files(manifest)
    for item in files:
        check_file(folder, item, rehash=True)
    return len(files)


def write_synthetic(folder: str | os.PathLike, count: int, channels: int, resolution: int, seed: int = 0,
                    domains: tuple[str, ...] = (IMAGES,), labels: int = 0) -> Path:
    """A prepared dataset of ``count`` random images per domain, written shard by shard (for benchmarks, tests).

    Smooth random blobs rather than white noise, so a network has something to learn; ``labels`` > 0 adds
    that many classes, drawn at random. Memory stays at one shard however large ``count`` is.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    capacity = shard_capacity(channels, resolution)
    entries, names = {}, None
    for domain in domains:
        shards = []
        for index, start in enumerate(range(0, count, capacity)):
            n = min(capacity, count - start)
            shards.append({**write_array_file(folder / shard_name(domain, index),
                                              _blobs(rng, n, channels, resolution)), "count": n})
        entry = {"count": count, "shards": shards, "labels": None, "bad": []}
        if labels:
            drawn = rng.integers(0, labels, count, dtype=np.int64).astype("<i8")
            entry["labels"] = write_array_file(folder / labels_name(domain), drawn)
            names = [str(i) for i in range(labels)]
        entries[domain] = entry
    write_manifest(folder, new_manifest(name=folder.name, source=f"synthetic:seed={seed}", source_kind="synthetic",
                                        fingerprint={"files": count, "sha256": hashlib.sha256(
                                            f"synthetic {count} {channels} {resolution} {seed}".encode()).hexdigest()},
                                        resolution=resolution, channels=channels, max_image_pixels=0,
                                        domains=entries, classes=names, classes_from="synthetic" if names else None))
    return folder


def _blobs(rng: np.random.Generator, n: int, channels: int, resolution: int) -> np.ndarray:
    """n images of low-frequency noise (a coarse random grid, upsampled by repetition), uint8 (n, C, R, R)."""
    coarse = max(1, resolution // 8)
    grid = rng.integers(0, 256, (n, channels, coarse, coarse), dtype=np.uint8)
    reps = -(-resolution // coarse)
    return np.ascontiguousarray(grid.repeat(reps, axis=2).repeat(reps, axis=3)[:, :, :resolution, :resolution])
