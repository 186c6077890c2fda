"""What a dataset source holds: per domain, the ordered image files to decode and their labels (nothing decoded).

``ganzoo data prepare`` (ganzoo.data.prepare) reads four kinds of source:

- ``folder``: a folder of images at any depth, in scan_images order, as load_folder decodes it;
- ``unpaired``: ``trainA/`` and ``trainB/`` of a folder, the domains "A" and "B" (load_unpaired's layout);
- ``stylegan-zip``: stylegan2-ada's dataset_tool.py output, a zip of images with ``dataset.json``, read in
  place through zipfile (never extracted): only regular members, names checked against path traversal;
- ``stylegan-folder``: the same layout as a folder (a folder holding ``dataset.json``).

stylegan2-ada's ``dataset.json`` holds ``{"labels": [[relative name, class], ...]}`` or ``{"labels": null}``;
its class indices are kept (int64, one per image), named "0".."K-1". A folder without it whose top-level
subfolders hold images is labelled by them, torchvision's ImageFolder convention (ganzoo.data.class_labels):
the sorted subfolder names are the classes, and an image in the root has none (-1). Every source lists its
images in one order, sorted by relative path parts (scan_images' order), so the same files always become the
same dataset. Files that
cannot be opened as images (a FIFO, a link in a zip) are bad files from the start, listed with those
the decoder will refuse.
"""

from __future__ import annotations

import json
import os
import threading
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from ..api import IMAGES, UNPAIRED
from ..errors import UserError
from ..fileio import kind_of, read_regular
from ..runtime.image_files import EXTENSIONS, scan_images

FOLDER, UNPAIRED_FOLDERS, STYLEGAN_ZIP, STYLEGAN_FOLDER = "folder", "unpaired", "stylegan-zip", "stylegan-folder"
SOURCE_KINDS = (FOLDER, UNPAIRED_FOLDERS, STYLEGAN_ZIP, STYLEGAN_FOLDER)
LABELS_FILE = "dataset.json"  # stylegan2-ada's labels, at the top of its zip or folder
IMAGES_DOMAIN = "images"  # the one domain of single-domain data
UNPAIRED_DOMAINS = ("A", "B")


@dataclass(frozen=True)
class Item:
    """One image file of a source: a file on disk (``path``) or a zip member (``member``)."""

    relative: str  # its name relative to the source (posix), as the manifest lists it
    shown: str  # what messages call it: an absolute path, or ZIP/member
    path: Path | None = None
    member: str | None = None


@dataclass
class Domain:
    """One domain's images: ``items`` in decoding order, ``labels`` aligned with them (or None)."""

    name: str
    where: str  # the folder or zip its images come from, for messages
    items: list[Item]
    unreadable: list[tuple[str, UserError]] = field(default_factory=list)  # (relative, error): bad before decoding
    labels: np.ndarray | None = None  # int64, one per item (class_labels.UNLABELLED: an image outside the classes)
    classes: list[str] | None = None  # the class names, index = label; None without labels
    label_origin: str | None = None  # class_labels.SUBFOLDERS or DATASET_JSON
    why_unlabelled: str = ""  # said when there are no labels: stylegan2-ada's dataset.json with "labels": null

    def set_labels(self, labels: np.ndarray, classes: list[str], origin: str) -> None:
        self.labels, self.classes, self.label_origin = labels, classes, origin

    def require_labels(self) -> None:
        """What a conditional run needs of it (class_labels.require_labels), checked before anything is decoded."""
        from .class_labels import UNLABELLED, require_labels

        unlabelled = ([] if self.labels is None else
                      [item.relative for item, label in zip(self.items, self.labels.tolist()) if label == UNLABELLED])
        require_labels(where=self.where, classes=self.classes, labels=self.labels, unlabelled=unlabelled,
                       origin=self.label_origin,
                       bad=[relative for relative, _ in self.unreadable], why_none=self.why_unlabelled)


@dataclass
class Source:
    """A resolved source: its absolute path, its kind (SOURCE_KINDS) and its domains by name."""

    path: Path
    kind: str
    domains: dict[str, Domain]

    @property
    def name(self) -> str:
        """A short name for the prepared dataset: the folder's name, or the zip's without '.zip'."""
        return self.path.stem if self.kind == STYLEGAN_ZIP else self.path.name

    def decoder(self) -> "Decoder":
        """Opens items for decoding, from any number of threads at once; close it when done (or use ``with``)."""
        return Decoder(self.path if self.kind == STYLEGAN_ZIP else None)


def is_dataset_zip(path: Path) -> bool:
    """Whether ``path`` is a zip file (stylegan2-ada's dataset_tool output): by its name, and a regular file."""
    return path.suffix.lower() == ".zip" and path.is_file()


def detect_kind(source: str | os.PathLike) -> str:
    """IMAGES or UNPAIRED for a source given without saying: a catalog dataset, or a folder holding trainA/
    and trainB/, is two domains; anything else one."""
    from . import catalog_folder

    named = catalog_folder(source)
    if named is not None:
        return named[0].kind
    path = Path(source).expanduser()
    if path.is_dir() and (path / "trainA").is_dir() and (path / "trainB").is_dir():
        return UNPAIRED
    return IMAGES


def open_source(source: str | os.PathLike, kind: str) -> Source:
    """What ``source`` holds for data of ``kind`` (IMAGES or UNPAIRED); a UserError names what is wrong with it.

    ``source`` is a folder, a zip, or a catalog name (downloaded first when it is not cached, as training does).
    """
    from . import DEFAULT_DATASET, catalog_folder, unknown_dataset

    if kind not in (IMAGES, UNPAIRED):
        raise ValueError(f"kind must be {IMAGES!r} or {UNPAIRED!r}, got {kind!r}")
    if str(source) == DEFAULT_DATASET:
        raise UserError(f"the embedded {DEFAULT_DATASET} data ships inside ganzoo and is read from memory: "
                        "there is nothing to prepare")
    named = catalog_folder(source, download=kind == UNPAIRED)
    if named is not None and kind == IMAGES:
        raise UserError(f"'{source}' is a two-domain ({named[0].kind}) dataset; prepare it as such, or prepare "
                        f"one of its folders, e.g. {named[1] / 'trainA'}")
    path = (named[1] if named is not None else Path(source).expanduser()).resolve()
    if not path.exists():
        raise unknown_dataset(source)
    if kind == UNPAIRED:
        if not path.is_dir():
            raise UserError(f"unpaired dataset {path} is not a folder: an unpaired dataset is a folder holding "
                            "trainA/ and trainB/")
        return Source(path, UNPAIRED_FOLDERS, {d: _unpaired_domain(path, d) for d in UNPAIRED_DOMAINS})
    if path.is_dir():
        labelled = (path / LABELS_FILE).exists()
        domain = _folder_domain(path, path, IMAGES_DOMAIN)
        if labelled:  # dataset.json wins: dataset_tool's 00000/ folders are no classes
            _set_dataset_json_labels(domain, _read_labels(read_regular_labels(path / LABELS_FILE),
                                                          path / LABELS_FILE), path / LABELS_FILE)
        else:
            from .class_labels import SUBFOLDERS, folder_labels

            found = folder_labels(path, [item.relative for item in domain.items])
            if found is not None:
                domain.set_labels(found[1], found[0], SUBFOLDERS)
        return Source(path, STYLEGAN_FOLDER if labelled else FOLDER, {IMAGES_DOMAIN: domain})
    if is_dataset_zip(path):
        return Source(path, STYLEGAN_ZIP, {IMAGES_DOMAIN: _zip_domain(path)})
    raise UserError(f"{path} is {_what(path)}: a source to prepare is a folder of images, a folder holding "
                    "trainA/ and trainB/, or a stylegan2-ada dataset (a .zip, or a folder with dataset.json)")


def _what(path: Path) -> str:
    try:
        return "a file that is not a .zip" if path.is_file() else kind_of(path.stat().st_mode)
    except OSError as error:
        return f"unreadable ({error.strerror or error})"


def _folder_domain(root: Path, folder: Path, name: str) -> Domain:
    """The images under ``folder`` in scan_images order; names relative to ``root``."""
    scan = scan_images(folder)
    if not scan.files and not scan.not_regular:
        if name == IMAGES_DOMAIN:
            raise UserError(f"no images in folder {folder} (looked for {', '.join(EXTENSIONS)}, any case, "
                            "in subfolders too)")
        raise UserError(f"domain {name} is empty: no images in {folder}")
    items = [Item(file.path.relative_to(root).as_posix(), str(file.path), path=file.path) for file in scan.files]
    unreadable = [(path.relative_to(root).as_posix(), error) for path, error in scan.not_regular]
    return Domain(name, str(folder), items, unreadable)


def _unpaired_domain(root: Path, domain: str) -> Domain:
    """``root/trainX`` as domain X, with load_unpaired_folder's messages for a missing or empty folder."""
    folder = root / f"train{domain}"
    if not folder.is_dir():
        raise UserError(f"unpaired dataset {root} has no folder train{domain}/ (expected {folder}); "
                        "an unpaired dataset holds trainA/ and trainB/ (testA/ and testB/ optional)")
    return _folder_domain(root, folder, domain)


def _zip_domain(path: Path) -> Domain:
    """The image members of a stylegan2-ada zip (regular ones; others are bad files), and its labels."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = _image_members(path, archive)
            labels, has_labels_file = None, LABELS_FILE in archive.NameToInfo
            if has_labels_file:
                labels = _read_labels(archive.read(LABELS_FILE), f"{path}/{LABELS_FILE}")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, NotImplementedError, RuntimeError) as error:
        raise UserError(f"{path} is not a valid zip archive ({error})") from None
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror or error}") from None
    items, unreadable = [], []
    for info in members:
        shown = f"{path}/{info.filename}"
        if _member_is_regular(info):
            items.append(Item(info.filename, shown, member=info.filename))
        else:
            unreadable.append((info.filename, UserError(f"cannot read image {shown}: it is a symbolic link or "
                                                        "special file in the zip, not a regular file (left unopened)")))
    if not items and not unreadable:
        raise UserError(f"no images in zip {path} (looked for {', '.join(EXTENSIONS)}, any case)")
    domain = Domain(IMAGES_DOMAIN, str(path), items, unreadable)
    if has_labels_file:
        _set_dataset_json_labels(domain, labels, f"{path}/{LABELS_FILE}")
    return domain


def _image_members(path: Path, archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """Image members in scan_images order (hidden names and macOS droppings left out); the last of a repeated
    name, as zipfile reads it. A name that points outside the archive (absolute, '..') refuses the zip."""
    from .download import member_escapes

    chosen: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        if member_escapes(info.filename):
            raise UserError(f"{path} is unsafe: member {info.filename!r} points outside the archive")
        parts = PurePosixPath(info.filename).parts
        if info.is_dir() or not parts or any(p.startswith(".") or p == "__MACOSX" for p in parts):
            continue
        if os.path.splitext(parts[-1])[1].lower() in EXTENSIONS:
            chosen[info.filename] = info
    return sorted(chosen.values(), key=lambda info: PurePosixPath(info.filename).parts)


def _member_is_regular(info: zipfile.ZipInfo) -> bool:
    import stat

    from .download import member_mode

    return member_mode(info) in (0, stat.S_IFREG)


def read_regular_labels(path: Path) -> bytes:
    """dataset.json's bytes: a regular file only (fileio.read_regular), any other failure one line naming it."""
    try:
        return read_regular(path)
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror or error}") from None


def _read_labels(data: bytes, where) -> dict[str, int] | None:
    """dataset.json's labels as {relative name: class}, or None where it says ``"labels": null``."""
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise UserError(f"{where} is not valid JSON ({error})") from None
    if not isinstance(document, dict) or "labels" not in document:
        raise UserError(f"{where} has no \"labels\" key: stylegan2-ada's dataset.json holds "
                        "{\"labels\": [[name, class], ...]} or {\"labels\": null}")
    raw = document["labels"]
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise UserError(f"{where}: \"labels\" is {type(raw).__name__}, not a list of [name, class] pairs or null")
    labels: dict[str, int] = {}
    for entry in raw:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
            raise UserError(f"{where}: label entry {json.dumps(entry)[:80]} is not a [name, class] pair")
        value = entry[1]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise UserError(f"{where}: the label of {entry[0]} is {json.dumps(value)[:80]}; only class indices "
                            "(integers from 0) are supported, not vectors or other values")
        labels[entry[0].replace("\\", "/")] = value
    return labels


def _set_dataset_json_labels(domain: Domain, labels: dict[str, int] | None, where) -> None:
    """dataset.json's labels on ``domain``, classes "0".."K-1"; with ``"labels": null``, a word on why none."""
    from .class_labels import DATASET_JSON, index_classes

    if labels is None:
        domain.why_unlabelled = f" (its {LABELS_FILE} says \"labels\": null)"
        return
    aligned = _aligned_labels(labels, domain, where)
    domain.set_labels(aligned, index_classes(aligned), DATASET_JSON)


def _aligned_labels(labels: dict[str, int], domain: Domain, where) -> np.ndarray:
    """One label per item, in item order. An image dataset.json does not label, and a label for a name that is
    not an image of the source, are refused, naming the first and how many more."""
    missing = [item.relative for item in domain.items if item.relative not in labels]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise UserError(f"{where} has no label for {missing[0]}{more}: with labels, every image needs one "
                        "(add them, or set \"labels\": null)")
    known = {item.relative for item in domain.items}.union(relative for relative, _ in domain.unreadable)
    strays = sorted((name for name in labels if name not in known), key=lambda name: PurePosixPath(name).parts)
    if strays:
        more = f" and {len(strays) - 1} more" if len(strays) > 1 else ""
        raise UserError(f"{where} labels {strays[0]}{more}, not {'images' if more else 'an image'} of "
                        f"{domain.where}: every name in {LABELS_FILE} must be one of its images (a file that was "
                        "removed or renamed, or a name that is no image: remove its entry, or restore the file)")
    return np.array([labels[item.relative] for item in domain.items], dtype=np.int64)


class Decoder:
    """Decodes items with folder.decode_image; a zip is opened once per thread (zipfile handles are not shared)."""

    def __init__(self, archive: Path | None):
        self._archive = archive
        self._local = threading.local()
        self._opened: list[zipfile.ZipFile] = []
        self._lock = threading.Lock()

    def decode(self, item: Item, resolution: int, channels: int, max_pixels: int) -> np.ndarray | UserError:
        """uint8 (channels, resolution, resolution), or the UserError naming the file (returned, not raised, so
        a thread pool's other files still finish)."""
        from .folder import decode_image

        try:
            if item.member is None:
                return decode_image(item.path, resolution, channels, max_pixels)
            with self._zip().open(item.member) as member:
                return decode_image(member, resolution, channels, max_pixels, name=item.shown)
        except UserError as error:
            return error
        except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError, OSError) as error:
            return UserError(f"cannot read image {item.shown}: {error}")

    def _zip(self) -> zipfile.ZipFile:
        archive = getattr(self._local, "zip", None)
        if archive is None:
            archive = zipfile.ZipFile(self._archive)
            with self._lock:
                self._opened.append(archive)
            self._local.zip = archive
        return archive

    def close(self) -> None:
        with self._lock:
            for archive in self._opened:
                archive.close()
            self._opened.clear()

    def __enter__(self) -> "Decoder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

