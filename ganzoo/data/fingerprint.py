"""A fingerprint of a dataset, recorded in config.json, so that a resume notices changed data.

Per domain: how many image files and a sha256 of their relative paths, sizes
and modification times, and of stylegan2-ada's dataset.json where a folder has
one (stat only: nothing is opened or decoded). The embedded
data ships inside the package and gets a constant fingerprint. A resume whose
data no longer matches is refused unless ``--allow-data-change`` says to go on
(the new fingerprint is then recorded); a config.json written before
fingerprints existed resumes without the check.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from ..api import UNPAIRED, DataSpec
from ..errors import UserError
from .prepared import is_prepared

KEY = "data_fingerprint"  # its key in config.json
LABELS_FILE = "dataset.json"  # stylegan2-ada's labels file (ganzoo.data.sources), part of a folder's data


def fingerprint_data(source: str | os.PathLike | None, spec: DataSpec) -> dict[str, Any]:
    """{"files": N, "sha256": ...} for single-domain data; {"A": {...}, "B": {...}} for two domains.

    Resolves ``source`` as load_data does (a two-domain catalog dataset is
    downloaded first when missing, as load_data would). A folder that does not
    exist counts as empty: load_data then says what is wrong with it.
    """
    from . import EMBEDDED_SOURCE, source_folder

    root = source_folder(source, download=spec.kind == UNPAIRED)
    if root is not None and is_prepared(root):
        return _prepared(root)
    if spec.kind == UNPAIRED:
        from .unpaired import DOMAINS

        if root is None:
            return {d: _constant(f"{EMBEDDED_SOURCE}:{d}", 1000) for d in DOMAINS}  # 1,000 per class
        return {d: _folder(root / f"train{d}") for d in DOMAINS}
    if root is None:
        from .embedded import COUNT

        return _constant(EMBEDDED_SOURCE, COUNT)
    from .sources import is_dataset_zip

    if is_dataset_zip(root):
        return _zip(root)
    return _folder(root)


def _prepared(folder: Path) -> dict[str, Any]:
    """A prepared dataset named directly: per domain, its image count and a hash of its files' sha256s (from
    the manifest; the reader checks the files against them). One domain gives the flat form."""
    from .prepared import read_manifest

    manifest = read_manifest(folder)
    out = {}
    for domain, entry in manifest["domains"].items():
        digest = hashlib.sha256()
        for item in [*entry["shards"], *([entry["labels"]] if entry.get("labels") else [])]:
            digest.update(f"{item['file']}\0{item['sha256']}\n".encode())
        out[domain] = {"files": entry["count"], "sha256": digest.hexdigest()}
    return next(iter(out.values())) if len(out) == 1 else out


def _constant(name: str, count: int) -> dict[str, Any]:
    return {"files": count, "sha256": hashlib.sha256(name.encode()).hexdigest()}


def _folder(folder: Path) -> dict[str, Any]:
    """Count and hash of the regular image files under ``folder`` (what load_folder would decode)."""
    from ..runtime.image_files import scan_images

    digest = hashlib.sha256()
    if not folder.is_dir():
        return {"files": 0, "sha256": digest.hexdigest()}
    files = scan_images(folder).files
    for file in files:
        # The name's bytes as the filesystem holds them: a name that is not UTF-8 (Linux names are bytes)
        # is as good a name as any, and a valid one hashes as it always did.
        digest.update(os.fsencode(file.relative.as_posix()) + f"\0{file.size}\0{file.mtime_ns}\n".encode())
    labels = folder / LABELS_FILE
    if labels.is_file():  # stylegan2-ada's labels: new labels are other data (and another prepared copy)
        info = labels.stat()
        digest.update(f"{LABELS_FILE}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return {"files": len(files), "sha256": digest.hexdigest()}


def _zip(archive: Path) -> dict[str, Any]:
    """A zip of images (stylegan2-ada's dataset): its name, size and modification time, as one file.

    Stat only, like a folder's: listing the members would read the archive's directory, and any change to a
    member changes the zip's size or time anyway.
    """
    info = archive.stat()
    digest = hashlib.sha256(os.fsencode(archive.name) + f"\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return {"files": 1, "sha256": digest.hexdigest()}


def checked_fingerprint(recorded: Any, current: dict[str, Any], allow_change: bool, where: str,
                        data: str = "") -> dict[str, Any]:
    """The fingerprint to record on resume: ``current``, once it matches ``recorded`` (or change is allowed).

    ``recorded`` None (a run from before fingerprints) is not checked. A
    mismatch is one UserError saying, per domain, the file counts then and now.
    """
    if recorded is None or recorded == current or allow_change:
        return current
    label = f" ({data})" if data else ""
    raise UserError(f"the data{label} changed since this run started ({where} records its fingerprint): "
                    f"{describe_change(recorded, current)}. Resume with --allow-data-change to train on the data "
                    "as it is now (its fingerprint is then recorded), or restore the data")


def describe_change(recorded: Any, current: dict[str, Any]) -> str:
    """'5 files then, 6 now', or per domain 'domain B: 7 files then and now, but ...' for those that differ."""
    if "files" in current:
        return _domain_change(recorded, current)
    recorded = recorded if isinstance(recorded, dict) else {}
    return "; ".join(f"domain {d}: {_domain_change(recorded.get(d), now)}"
                     for d, now in current.items() if recorded.get(d) != now)


def _domain_change(before: Any, now: dict[str, Any]) -> str:
    then = before.get("files") if isinstance(before, dict) else None
    if not isinstance(then, int):
        return f"the recorded fingerprint is unreadable ({repr(before)[:80]}); {now['files']} files now"
    if then != now["files"]:
        return f"{then} files then, {now['files']} now"
    return (f"{then} files then and now, but their names, sizes or modification times differ "
            "(files replaced, renamed, edited, or copied without their times)")


def source_is_embedded(source) -> bool:
    """Whether ``source`` names the embedded Fashion-MNIST data (no --data, or its name)."""
    from . import DEFAULT_DATASET

    return source is None or str(source) == DEFAULT_DATASET


def fingerprint_for_run(source: str | os.PathLike | None, spec: DataSpec, record: dict | None,
                        allow_change: bool, config_path: str | os.PathLike) -> dict[str, Any]:
    """The data's fingerprint for config.json; on resume (``record``: the run's config.json) checked first.

    A resumed run's ``record`` takes the fingerprint in place (under KEY), so
    that rewriting the record keeps it current.
    """
    current = fingerprint_data(source, spec)
    if record is not None:
        what = "the embedded dataset" if source_is_embedded(source) else f"--data {source}"
        record[KEY] = checked_fingerprint(record.get(KEY), current, allow_change, str(config_path), what)
    return current
