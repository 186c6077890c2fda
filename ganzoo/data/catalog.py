"""Named datasets ganzoo can fetch: the built-in catalog.tsv plus an optional user TSV.

The built-in catalog lists the official CycleGAN datasets with their size and
sha256, so a download is verified before it is used. ``$GANZOO_CATALOG`` names
an extra TSV with the same columns whose entries add to or replace built-in
ones by name: mirrors, private datasets, or a local server in tests.

Datasets live in ``ganzoo_home()/datasets/<name>``. A folder placed there by
hand counts as cached, so a failed download always comes with a way round it.
The zip is downloaded into a private folder under ``ganzoo_home()/downloads``
and deleted once extracted (or on failure): only the extracted dataset takes
disk space.
"""

from __future__ import annotations

import difflib
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from ..api import UNPAIRED
from ..errors import UserError
from .download import download, extract_zip
from .tsv_table import NAME, read_table, source_fields

CATALOG_FILE = "catalog.tsv"
COLUMNS = ("name", "url", "bytes", "sha256", "kind")
HEADER = "\t".join(COLUMNS)  # the first line of every catalog file
# Subfolders a complete dataset has, by kind; the first two must be non-empty for it to count as cached.
LAYOUT = {UNPAIRED: ("trainA", "trainB", "testA", "testB")}
REQUIRED = {UNPAIRED: ("trainA", "trainB")}
# Seconds to wait for a connection or for the next data; not a limit on the whole transfer.
TIMEOUT = 30


@dataclass(frozen=True)
class CatalogEntry:
    """One downloadable dataset. ``bytes`` / ``sha256`` are None where the catalog does not know them."""

    name: str
    url: str
    bytes: int | None
    sha256: str | None
    kind: str


class CatalogRow(NamedTuple):
    """One line of ``ganzoo data list``, already formatted."""

    name: str
    size: str
    cached: str
    path: str


def ganzoo_home() -> Path:
    """Where ganzoo keeps downloads: $GANZOO_HOME, else $XDG_CACHE_HOME/ganzoo, else ~/.cache/ganzoo."""
    if os.environ.get("GANZOO_HOME"):
        return Path(os.environ["GANZOO_HOME"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "ganzoo"
    return Path.home() / ".cache" / "ganzoo"


def dataset_dir(name: str) -> Path:
    return ganzoo_home() / "datasets" / name


def catalog() -> dict[str, CatalogEntry]:
    """Every known dataset by name, sorted: the built-in list, then $GANZOO_CATALOG's entries over it."""
    return read_table(__package__, CATALOG_FILE, "GANZOO_CATALOG", COLUMNS, "dataset", _entry)


def _entry(fields: list[str], where: str) -> CatalogEntry:
    """One data line checked field by field; the error names the line and the bad value."""
    name, url, size, sha256, kind = fields
    if not NAME.fullmatch(name):
        raise UserError(f"{where}: bad name {name!r} (letters, digits, '.', '_', '-'; it becomes a folder name)")
    url, known_bytes, known_sha256 = source_fields(where, url, size, sha256)
    if kind not in LAYOUT:
        raise UserError(f"{where}: bad kind {kind!r} (known: {', '.join(LAYOUT)})")
    return CatalogEntry(name=name, url=url, bytes=known_bytes, sha256=known_sha256, kind=kind)


def get_entry(name: str) -> CatalogEntry:
    """The catalog entry called ``name``; an unknown name suggests the closest ones and lists them all."""
    entries = catalog()
    if name in entries:
        return entries[name]
    close = difflib.get_close_matches(name, entries, n=3)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise UserError(f"unknown dataset {name!r}{hint} (known: {', '.join(entries)}; "
                    f"add your own with a TSV file named by $GANZOO_CATALOG)")


def is_cached(entry: CatalogEntry) -> bool:
    """The dataset's folder holds every required subfolder, non-empty; how it got there does not matter."""
    folder = dataset_dir(entry.name)
    return all(_has_files(folder / sub) for sub in REQUIRED[entry.kind])


def _has_files(folder: Path) -> bool:
    try:
        return folder.is_dir() and any(not p.name.startswith(".") for p in folder.iterdir())
    except OSError:
        return False


def manual_hint(entry: CatalogEntry) -> str:
    """Where to put the dataset by hand: said with every failed download."""
    first, *rest = LAYOUT[entry.kind]
    return (f"Download {entry.url} yourself and extract it so that {dataset_dir(entry.name) / first} exists "
            f"(and {', '.join(rest)}), or pass the extracted folder's path to --data.")


def ensure_dataset(name: str, *, progress: bool = True, force: bool = False) -> Path:
    """The dataset's folder, downloaded, verified and extracted first unless it is already cached.

    ``force`` downloads again even when cached; the old copy stays in place
    until the new one is complete. Any failure is one UserError that says what
    went wrong and where to put the dataset by hand, and leaves no partial
    file or folder in the cache. Without a size or sha256 in the catalog the
    download cannot be verified: a warning shows what arrived, to pin it with.
    """
    entry = get_entry(name)
    target = dataset_dir(entry.name)
    if is_cached(entry) and not force:
        return target
    if target.is_dir() and any(target.iterdir()) and not force:
        raise UserError(f"{target} exists but is not a complete {entry.kind} dataset (it needs non-empty "
                        f"{' and '.join(REQUIRED[entry.kind])} folders); fix or delete it, or download it again "
                        f"with: ganzoo data download {entry.name} --force")
    downloads = ganzoo_home() / "downloads"
    try:
        downloads.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=downloads, prefix=f".{entry.name}-"))
    except OSError as error:
        raise UserError(f"cannot create a download folder in {downloads}: {error}. {manual_hint(entry)}") from None
    try:
        if progress:
            print(f"downloading {entry.name} from {entry.url}", file=sys.stderr)
        got = download(entry.url, work / f"{entry.name}.zip", expected_bytes=entry.bytes, sha256=entry.sha256,
                       progress=progress, timeout=TIMEOUT)
        if entry.bytes is None or entry.sha256 is None:
            print(_unverified(entry, got.bytes, got.sha256), file=sys.stderr)
        extract_zip(got.path, target, entry.name, required=REQUIRED[entry.kind], replace=force)
    except UserError as error:
        if is_cached(entry) and not force:  # another process finished the same dataset first
            return target
        reason = str(error)
        raise UserError(f"{reason}{'' if reason.endswith(('.', '?', '!')) else '.'} {manual_hint(entry)}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
        _remove_if_empty(downloads)
        _remove_if_empty(target.parent)
    return target


def _unverified(entry: CatalogEntry, size: int, sha256: str) -> str:
    """Trust on first use: say that nothing was checked and show what arrived, as a catalog line to pin it."""
    missing = " or ".join(what for what, value in (("size", entry.bytes), ("sha256", entry.sha256)) if value is None)
    return (f"warning: {entry.name} could not be verified (the catalog has no {missing} for it); "
            f"got {size} bytes, sha256 {sha256}. If you trust this copy, pin it with a $GANZOO_CATALOG "
            f"file holding these two lines:\n{HEADER}\n"
            f"{entry.name}\t{entry.url}\t{size}\t{sha256}\t{entry.kind}")


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def human_size(n: int | None) -> str:
    """Decimal units as download pages show them: 116867962 -> '117 MB', 1476754427 -> '1.5 GB'."""
    if n is None:
        return "?"
    value, unit = float(n), "B"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 999.5 or unit == "TB":
            break
        value /= 1000
    return f"{value:.0f} {unit}" if value >= 9.95 or unit == "B" else f"{value:.1f} {unit}"


def catalog_rows() -> list[CatalogRow]:
    """For ``ganzoo data list``: name, size, whether it is cached ("yes"/"no"), and its folder."""
    return [CatalogRow(entry.name, human_size(entry.bytes), "yes" if is_cached(entry) else "no",
                       str(dataset_dir(entry.name)))
            for entry in catalog().values()]
