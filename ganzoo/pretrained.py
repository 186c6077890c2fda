"""Published checkpoints ganzoo can fetch and import: ganzoo/data/pretrained.tsv plus an optional user TSV.

Shaped like the dataset catalog (ganzoo.data.catalog) and downloading through
the same code (ganzoo.data.download: size and sha256 checked before the file
gets its name, nothing half-written left behind). ``$GANZOO_PRETRAINED`` names
an extra TSV with the same columns whose entries add to or replace built-in
ones by name: a mirror, a pinned sha256, or a local server in tests.

Files live in ``ganzoo_home()/pretrained/<name>/<file>``; a file placed there
by hand counts as cached, so offline (``GANZOO_OFFLINE=1``, or no network) the
error says which file to put where. Importing goes through one function,
``import_checkpoint``, that calls ``ganzoo.importing.import_run`` where it exists.
"""

from __future__ import annotations

import difflib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .data.catalog import TIMEOUT, ganzoo_home, human_size
from .data.tsv_table import NAME, UNKNOWN, read_table, source_fields
from .errors import UserError

CATALOG_FILE = "pretrained.tsv"
COLUMNS = ("name", "arch", "url", "bytes", "sha256", "licence", "files")
OPTIONAL = ("classes",)  # a conditional checkpoint's class names, comma-separated ('-': none); added later
HEADER = "\t".join(COLUMNS)  # enough for an unconditional checkpoint (and every file written before classes)
FULL_HEADER = "\t".join(COLUMNS + OPTIONAL)
ENV_EXTRA = "GANZOO_PRETRAINED"
ENV_OFFLINE = "GANZOO_OFFLINE"


@dataclass(frozen=True)
class Pretrained:
    """One published checkpoint: the architecture that imports it, where it comes from, and what to check."""

    name: str
    arch: str
    url: str
    bytes: int | None
    sha256: str | None
    licence: str
    file: str  # the name it is cached under (the importer recognises the source format by it)
    classes: tuple[str, ...] | None = None  # a conditional network's class names by label; its run records them


def pretrained_dir() -> Path:
    return ganzoo_home() / "pretrained"


def cached_path(entry: Pretrained) -> Path:
    return pretrained_dir() / entry.name / entry.file


def catalog() -> dict[str, Pretrained]:
    """Every known checkpoint by name, sorted: the built-in list, then $GANZOO_PRETRAINED's entries over it."""
    return read_table("ganzoo.data", CATALOG_FILE, ENV_EXTRA, COLUMNS, "checkpoint", _entry, OPTIONAL)


def _entry(fields: list[str], where: str) -> Pretrained:
    name, arch, url, size, sha256, licence, file, classes = fields
    for key, value in (("name", name), ("arch", arch), ("files", file)):
        if not NAME.fullmatch(value):
            raise UserError(f"{where}: bad {key} {value!r} (letters, digits, '.', '_', '-')")
    url, known_bytes, known_sha256 = source_fields(where, url, size, sha256)
    if not licence:
        raise UserError(f"{where}: the licence is empty (name it, or '-' if unknown)")
    return Pretrained(name, arch, url, known_bytes, known_sha256, licence, file, _classes(classes, where))


def _classes(field: str, where: str) -> tuple[str, ...] | None:
    """The classes column: names by label, comma-separated, or '-' (none: an unconditional checkpoint)."""
    if field in ("", UNKNOWN):
        return None
    names = tuple(name.strip() for name in field.split(","))
    if not all(names) or len(set(names)) != len(names):
        raise UserError(f"{where}: bad classes {field!r} (distinct, non-empty class names separated by commas, in "
                        "label order, or '-' for none)")
    return names


def get_entry(name: str) -> Pretrained:
    """The entry called ``name``; an unknown name suggests the closest ones and lists them all."""
    entries = catalog()
    if name in entries:
        return entries[name]
    close = difflib.get_close_matches(name, entries, n=3)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise UserError(f"unknown pretrained checkpoint {name!r}{hint} (known: {', '.join(entries)}; add your own "
                    f"with a TSV file named by ${ENV_EXTRA})")


def is_cached(entry: Pretrained) -> bool:
    """The file is in the cache (with the catalog's size, where it knows one); how it got there does not matter."""
    path = cached_path(entry)
    try:
        return path.is_file() and (entry.bytes is None or path.stat().st_size == entry.bytes)
    except OSError:
        return False


def manual_hint(entry: Pretrained) -> str:
    return f"Download {entry.url} yourself and put it at {cached_path(entry)}, then run this again."


def offline() -> bool:
    return os.environ.get(ENV_OFFLINE, "").strip().lower() not in ("", "0", "false", "no", "off")


def fetch(name: str, *, progress: bool = True) -> Path:
    """The cached file of ``name``, downloaded and verified first unless it is already there.

    Any failure is one UserError saying what went wrong and which file to put
    where by hand; nothing partial stays in the cache.
    """
    from .data.download import download

    entry = get_entry(name)
    target = cached_path(entry)
    if is_cached(entry):
        return target
    if offline():
        raise UserError(f"{entry.name} is not in the cache and {ENV_OFFLINE} is set. {manual_hint(entry)}")
    if target.exists():
        raise UserError(f"{target} exists but is not {entry.bytes} bytes as the catalog says; delete it or "
                        f"replace it with the published file. {manual_hint(entry)}")
    try:
        if progress:
            print(f"downloading {entry.name} from {entry.url}", file=sys.stderr)
        got = download(entry.url, target, expected_bytes=entry.bytes, sha256=entry.sha256, progress=progress,
                       timeout=TIMEOUT)
    except UserError as error:
        _remove_empty(target.parent)
        reason = str(error)
        raise UserError(f"{reason}{'' if reason.endswith(('.', '?', '!')) else '.'} {manual_hint(entry)}") from None
    if entry.bytes is None or entry.sha256 is None:
        print(_unverified(entry, got.bytes, got.sha256), file=sys.stderr)
    return target


def _unverified(entry: Pretrained, size: int, sha256: str) -> str:
    """Trust on first use: nothing was checked; what arrived, as a catalog line to pin it with."""
    classes = ",".join(entry.classes) if entry.classes else UNKNOWN
    return (f"warning: {entry.name} could not be verified (its publisher gives no size and sha256); got {size} "
            f"bytes, sha256 {sha256}. To pin this copy, put these two lines in a file named by ${ENV_EXTRA}:\n"
            f"{FULL_HEADER}\n{entry.name}\t{entry.arch}\t{entry.url}\t{size}\t{sha256}\t{entry.licence}\t{entry.file}"
            f"\t{classes}")


def _remove_empty(folder: Path) -> None:
    for path in (folder, folder.parent):
        try:
            path.rmdir()
        except OSError:
            return


def import_checkpoint(arch: str, files: list[Path], out: Path, classes: tuple[str, ...] | None = None,
                      classes_from: str = "the catalog") -> Path | None:
    """The run directory ``ganzoo import`` makes from ``files``; None where that command is not there yet.

    The one place `pretrained get` imports: ganzoo.importing.import_run (the
    same code as `ganzoo import`), so a catalog checkpoint and a file of one's
    own become run directories alike. ``classes``: the entry's class names, which
    the run's config.json records (``ganzoo sample --class NAME`` reads them).
    """
    try:
        from .importing import import_run
    except ImportError:
        return None
    return import_run(arch, files, out, classes=classes, classes_from=classes_from)


def import_command(entry: Pretrained, out: Path) -> str:
    import shlex

    names = f" --classes {shlex.quote(','.join(entry.classes))}" if entry.classes else ""
    return f"ganzoo import {cached_path(entry)} --arch {entry.arch} --out {out}{names}"


def rows() -> list[tuple[str, str, str, str, str]]:
    """For ``ganzoo pretrained list``: name, architecture, size, licence, cached ("yes"/"no")."""
    return [(e.name, e.arch, human_size(e.bytes), e.licence, "yes" if is_cached(e) else "no")
            for e in catalog().values()]
