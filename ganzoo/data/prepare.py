"""Preparing a dataset: every image of a source decoded once, in parallel, into a prepared dataset (prepared.py).

Decoding follows today's rules (folder.decode_image: Lanczos, centre square,
EXIF, regular files only, ``max_pixels``); a bad file is left out and listed in
the manifest's "bad" ([relative path, message]), and the caller decides
whether that stops it. A source of 70,000 images takes a while, so the work is
built to be interrupted:

- it happens in a hidden working folder beside the target, ``.NAME.partial``;
  each finished shard is written atomically, then a progress record
  (``progress.json``) says how far the source has been read. A prepare stopped
  any way (Ctrl-C, SIGKILL, a full disk) continues from its last finished shard
  when run again; one whose source has changed since starts over;
- manifest.json is written last, then the folder is renamed into place: a
  folder without a manifest is never a dataset, so a half-written one is never
  used;
- an flock on ``.NAME.lock`` beside it makes a second prepare of the same target
  wait (it says so once), then find the dataset complete;
- a target that holds something else is refused, never overwritten; one that
  holds an older preparation of the same source (the files changed since) is
  replaced once the new one is complete.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import fcntl
import json
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import UserError
from . import prepared
from .sources import IMAGES_DOMAIN, Domain, Source, open_source

PROGRESS = "progress.json"  # in the working folder: how far each domain has been read
# Bytes of pixels per shard; a smaller value makes shards (and the work an interruption loses) smaller.
SHARD_BYTES_ENV = "GANZOO_PREPARE_SHARD_BYTES"
MAX_WORKERS = 8  # as folder.decode_folder: Pillow decodes with the GIL released, so threads scale
_IN_FLIGHT_PER_WORKER = 4  # decodes queued ahead per thread: the pool keeps working while a shard is written
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


def prepare_dataset(source, kind: str, resolution: int, channels: int, out: Path, *, max_pixels: int,
                    progress: bool, name: str | None = None, require_labels: bool = False,
                    announce: str | None = None) -> Path:
    """``source`` (a folder, an unpaired folder set, a stylegan2-ada zip or folder, a catalog name) prepared
    into ``out`` at ``resolution`` x ``resolution`` with ``channels``; returns ``out``.

    ``kind`` is IMAGES or UNPAIRED. Returns at once when ``out`` already holds this preparation. Bad files
    are left out and listed in the manifest ("bad" per domain); a domain left with no image is a UserError.
    ``progress`` shows a bar with an estimate on stderr (where stderr is a terminal) and says what happened
    (continued, already prepared, how many decoded); without it only a wait for another prepare, and what is
    kept when stopped, are said. ``require_labels`` (a conditional run's data) refuses a source without a class
    for every image, or with an empty class folder, before anything is written (class_labels.require_labels).
    ``announce`` is said on stderr once the checks pass and the work begins.
    """
    from ..api import DataSpec
    from ..fileio import require_writable
    from .fingerprint import fingerprint_data

    out = Path(out).expanduser().absolute()
    src = open_source(source, kind)
    images = src.domains.get(IMAGES_DOMAIN)
    if require_labels:
        images.require_labels()
    identity = {"source": str(src.path), "source_kind": src.kind, "resolution": resolution, "channels": channels,
                "max_image_pixels": max_pixels,
                "fingerprint": fingerprint_data(str(src.path), DataSpec(kind, resolution, channels)),
                # the format (a version-1 copy kept no classes from subfolders), and the class list: an empty
                # class folder added or removed changes no image, only the classes
                "version": prepared.VERSION, "classes": images.classes if images is not None else None}
    if _settled(out, identity, quiet=not progress):
        return out
    if announce:
        print(announce, file=sys.stderr, flush=True)
    capacity = _capacity(channels, resolution)
    require_writable(out.parent, "prepare it elsewhere (--out PATH, or $GANZOO_PREPARED for the cache)")
    out.parent.mkdir(parents=True, exist_ok=True)
    _require_room(src, resolution, channels, out)
    with _prepare_lock(out):
        if _settled(out, identity, quiet=True):  # another prepare finished it while this one waited
            return out
        work = out.parent / f".{out.name}.partial"
        if not _finished_before(work, identity):
            record = _resume(work, {**identity, "format_version": prepared.VERSION, "shard_capacity": capacity},
                             src, quiet=not progress)
            _decode_all(src, record, work, capacity, resolution, channels, max_pixels, progress, name or out.name)
            _finish(src, record, work, name or out.name, identity)
        _publish(work, out)
    return out


def _require_room(src: Source, resolution: int, channels: int, out: Path) -> None:
    """Refused before decoding: a shard that cannot be held in memory, or a dataset the disk has no room for.

    The dataset itself never has to fit in memory, only the shard being filled; the disk must hold it all
    (what an interrupted prepare of ``out`` already wrote counts as room: it stays).
    """
    from .memory import require_memory_for, size_text

    count = sum(len(domain.items) for domain in src.domains.values())
    what = f"{'folder' if src.kind == 'folder' else src.kind} {src.path}"
    require_memory_for(min(count, _capacity(channels, resolution)), channels, resolution, what)
    need = count * prepared.image_bytes(channels, resolution)
    work = out.parent / f".{out.name}.partial"
    free = shutil.disk_usage(out.parent).free + sum(f.stat().st_size for f in work.glob("*.u8"))
    if need > free:
        raise UserError(f"{what}: {count:,} images prepared at {resolution}x{resolution}x{channels} take "
                        f"{size_text(need)} of disk, more than the {size_text(free)} free in {out.parent}: free "
                        "space, prepare onto a larger disk (--out, or GANZOO_PREPARED for prepared copies), or "
                        "lower the resolution")


def _capacity(channels: int, resolution: int) -> int:
    override = os.environ.get(SHARD_BYTES_ENV)
    if not override:
        return prepared.shard_capacity(channels, resolution)
    try:
        shard_bytes = int(override)
    except ValueError:
        raise UserError(f"{SHARD_BYTES_ENV}={override!r} is not a whole number of bytes") from None
    return max(1, shard_bytes // prepared.image_bytes(channels, resolution))


# --- what is at the target already -------------------------------------------------------------------------

def _settled(out: Path, identity: dict[str, Any], quiet: bool = False) -> bool:
    """True when ``out`` is this very preparation; False when it may be (re)written; a UserError when it holds
    anything else (never overwritten)."""
    if not os.path.lexists(out):
        return False
    if out.is_dir() and not out.is_symlink() and not any(out.iterdir()):
        return False  # an empty folder: made for the dataset, perhaps
    if not prepared.is_prepared(out):
        raise UserError(f"{out} already exists and is not a prepared dataset (it has no {prepared.MANIFEST}): "
                        "choose another --out, or remove it; nothing was written")
    manifest = json.loads((out / prepared.MANIFEST).read_bytes())
    same = {key: manifest.get(key) for key in ("source", "source_kind", "resolution", "channels")}
    if same != {key: identity[key] for key in same}:
        raise UserError(f"{out} already holds another prepared dataset ({_describe(manifest)}), not "
                        f"{_describe(identity)}: choose another --out, or remove it; nothing was written")
    if _is_this_preparation(manifest, identity):
        if not quiet:
            print(f"{out} is already prepared from {identity['source']}", file=sys.stderr, flush=True)
        return True
    if not quiet:
        if manifest.get("version") != identity["version"]:
            why = (f"made by an older ganzoo, format version {manifest.get('version')}, which kept no classes "
                   "from subfolders")
        elif manifest.get("fingerprint") != identity["fingerprint"]:
            why = "its files changed since"
        elif manifest.get("classes") != identity["classes"]:
            why = "its classes changed since"
        else:
            why = f"with another max_image_pixels ({manifest.get('max_image_pixels')})"
        print(f"{out} holds an older preparation of {identity['source']} ({why}): preparing it again; it is "
              "replaced once the new one is complete", file=sys.stderr, flush=True)
    return False


def _is_this_preparation(manifest: dict[str, Any], identity: dict[str, Any]) -> bool:
    return all(manifest.get(key) == value for key, value in identity.items())


def _finished_before(work: Path, identity: dict[str, Any]) -> bool:
    """Whether the working folder is complete (a prepare ended between its manifest and the rename)."""
    if not prepared.is_prepared(work):
        return False
    try:
        return _is_this_preparation(json.loads((work / prepared.MANIFEST).read_bytes()), identity)
    except (OSError, ValueError):
        return False


def _describe(info: dict[str, Any]) -> str:
    return (f"{info.get('source')} ({info.get('source_kind')}) at {info.get('resolution')}x{info.get('resolution')}, "
            f"{info.get('channels')} channel{'' if info.get('channels') == 1 else 's'}")


@contextlib.contextmanager
def _prepare_lock(out: Path) -> Iterator[None]:
    """Hold ``.NAME.lock`` beside ``out``; a second prepare waits for the first, saying so once.

    The kernel drops an flock when its holder dies however it dies, so a lock is never stale; the file
    itself stays (removing a lock file another process has open would let two processes lock two files).
    """
    path = out.parent / f".{out.name}.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o666)
    except OSError as error:
        raise UserError(f"cannot open {path}: {error.strerror or error} (the lock a prepare of {out} "
                        "takes; remove it if it is not a regular file)") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            print(f"waiting for another prepare of {out} to finish ({holder})", file=sys.stderr, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as error:
            if error.errno not in _NO_LOCKS:
                raise UserError(f"cannot lock {path}: {error.strerror or error}") from None
            print(f"warning: {path}: this filesystem does not support locks ({error.strerror}), so two prepares "
                  f"of {out} at the same time would not wait for each other", file=sys.stderr, flush=True)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}\n".encode(), 0)
        except OSError:  # a full disk: the lock holds all the same
            pass
        yield
    finally:
        os.close(fd)


# --- the working folder -------------------------------------------------------------------------------------

def _resume(work: Path, identity: dict[str, Any], src: Source, quiet: bool = False) -> dict[str, Any]:
    """The progress record to continue from: the working folder's, when it is of this very preparation and its
    shards are intact; else a fresh one in an emptied folder. Files the record does not list (a shard written
    after the last record, a temporary file of a killed write) are removed."""
    record = _read_progress(work)
    if record is not None and record.get("identity") == identity and _intact(work, record):
        done = sum(state["next"] for state in record["domains"].values())
        total = sum(len(domain.items) for domain in src.domains.values())
        if not quiet:
            print(f"continuing an interrupted prepare from {work}: {done:,} of {total:,} images already done",
                  file=sys.stderr, flush=True)
        listed = {PROGRESS, prepared.MANIFEST, *(shard["file"] for state in record["domains"].values()
                                                 for shard in state["shards"])}
        for entry in work.iterdir():
            if entry.name not in listed:
                _remove(entry)
        return record
    if os.path.lexists(work):
        if record is not None and not quiet:
            print(f"starting over: {work} holds an interrupted prepare of other data (or the source changed "
                  "since)", file=sys.stderr, flush=True)
        _remove(work)
    try:
        work.mkdir()
    except OSError as error:
        raise UserError(f"cannot make {work}: {error.strerror or error}") from None
    record = {"identity": identity, "domains": {d: {"next": 0, "shards": [], "bad": []} for d in src.domains}}
    _save_progress(work, record)
    return record


def _read_progress(work: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((work / PROGRESS).read_bytes())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("domains"), dict) else None


def _intact(work: Path, record: dict[str, Any]) -> bool:
    """Every shard the record lists is there as written (size; sha256 where its time changed)."""
    try:
        for state in record["domains"].values():
            for shard in state["shards"]:
                prepared.check_file(work, shard)
    except (UserError, KeyError, TypeError):
        return False
    return True


def _save_progress(work: Path, record: dict[str, Any]) -> None:
    from ..fileio import write_json

    write_json(work / PROGRESS, record)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


# --- decoding -----------------------------------------------------------------------------------------------

def _decode_all(src: Source, record: dict[str, Any], work: Path, capacity: int, resolution: int, channels: int,
                max_pixels: int, progress: bool, label: str) -> None:
    """Every domain's remaining items decoded into full shards, each followed by a progress record."""
    from tqdm import tqdm

    total = sum(len(domain.items) for domain in src.domains.values())
    already = sum(record["domains"][d]["next"] for d in src.domains)
    started, decoded = time.monotonic(), 0
    workers = max(1, min(MAX_WORKERS, os.cpu_count() or 1))
    with src.decoder() as decoder, ThreadPoolExecutor(max_workers=workers) as pool, \
            tqdm(total=total, initial=already, unit="img", desc=f"preparing {label}", file=sys.stderr,
                 dynamic_ncols=True, disable=None if progress else True) as bar:
        try:
            for name, domain in src.domains.items():
                state = record["domains"][name]

                def decode(item):
                    return decoder.decode(item, resolution, channels, max_pixels)

                decoded += _decode_domain(domain, state, record, work, capacity, resolution, channels, pool,
                                          decode, workers * _IN_FLIGHT_PER_WORKER, bar)
        except KeyboardInterrupt:
            _say_kept(work, record)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    if decoded and progress:  # quiet when asked: a small dataset prepared on first use passes silently
        seconds = time.monotonic() - started
        resumed = f"; {already:,} were done before, by an interrupted prepare" if already else ""
        print(f"decoded {decoded:,} images in {seconds:.1f} s ({decoded / max(seconds, 1e-9):,.0f} images/s)"
              f"{resumed}", file=sys.stderr, flush=True)


def _decode_domain(domain: Domain, state: dict[str, Any], record: dict[str, Any], work: Path, capacity: int,
                   resolution: int, channels: int, pool, decode, in_flight: int, bar) -> int:
    """The items of ``domain`` from ``state["next"]`` on, into shards of ``capacity`` images; the count decoded."""
    items, start = domain.items, state["next"]
    if start >= len(items):
        return 0
    shard = np.empty((min(capacity, len(items) - start), channels, resolution, resolution), dtype=np.uint8)
    filled, bad = 0, []
    for index, result in _in_order(pool, decode, items, start, in_flight):
        if isinstance(result, UserError):
            bad.append([items[index].relative, str(result)])
        else:
            shard[filled] = result
            filled += 1
        bar.update(1)
        if filled == len(shard) or index == len(items) - 1:
            shards = state["shards"]
            if filled:
                path = work / prepared.shard_name(domain.name, len(shards))
                shards = [*shards, {**_write(lambda: prepared.write_array_file(path, shard[:filled]), work, record),
                                    "count": filled}]
            after = {"next": index + 1, "shards": shards, "bad": state["bad"] + bad}
            # the record in memory moves on only once it is on disk, so that what a failure says is kept is
            # what the next prepare finds
            _write(lambda: _save_progress(work, {**record, "domains": {**record["domains"], domain.name: after}}),
                   work, record)
            state.update(after)
            filled, bad = 0, []
            if len(items) - index - 1 < len(shard):  # the last shard is only as long as what is left
                shard = shard[:max(1, len(items) - index - 1)]
    return len(items) - start


def _in_order(pool, decode, items, start: int, in_flight: int) -> Iterator[tuple[int, Any]]:
    """(index, decode(items[index])) for index from ``start``, in order, with ``in_flight`` decodes queued ahead."""
    pending: collections.deque = collections.deque()
    indices = iter(range(start, len(items)))
    for index in indices:
        pending.append((index, pool.submit(decode, items[index])))
        if len(pending) >= in_flight:
            break
    while pending:
        index, future = pending.popleft()
        following = next(indices, None)
        if following is not None:
            pending.append((following, pool.submit(decode, items[following])))
        yield index, future.result()


def _write(write, work: Path, record: dict[str, Any]):
    """A write into the working folder; a refusal (full disk, a file-size limit, read-only) names the file and
    says that what is done is kept."""
    try:
        return write()
    except UserError as error:
        raise UserError(f"{error}; {_kept(work, record)}") from None


def _kept(work: Path, record: dict[str, Any]) -> str:
    done = sum(shard["count"] for state in record["domains"].values() for shard in state["shards"])
    if not done:
        return f"no image was prepared yet; the same command starts again in {work}"
    return f"the {done:,} images prepared so far are kept in {work}, and the same command continues from them"


def _say_kept(work: Path, record: dict[str, Any]) -> None:
    print(_kept(work, record), file=sys.stderr, flush=True)


# --- the end ------------------------------------------------------------------------------------------------

def _finish(src: Source, record: dict[str, Any], work: Path, name: str, identity: dict[str, Any]) -> None:
    """Labels, then manifest.json: the working folder becomes a complete dataset."""
    from ..runtime.image_files import bad_files_error
    from .class_labels import UNLABELLED

    domains = {}
    for domain_name, domain in src.domains.items():
        state = record["domains"][domain_name]
        failed = {relative for relative, _ in state["bad"]}
        bad = sorted([*([relative, str(error)] for relative, error in domain.unreadable), *state["bad"]],
                     key=lambda item: Path(item[0]).parts)
        count = sum(shard["count"] for shard in state["shards"])
        if count == 0:
            _remove(work)
            raise bad_files_error([UserError(message) for _, message in bad],
                                  f"no readable images in {domain.where}: every one of its files is bad")
        labels, unlabelled = None, []
        if domain.labels is not None:
            keep = np.array([item.relative not in failed for item in domain.items], dtype=bool)
            kept = np.ascontiguousarray(domain.labels[keep], dtype="<i8")
            path = work / prepared.labels_name(domain_name)
            labels = _write(lambda: prepared.write_array_file(path, kept), work, record)
            unlabelled = [item.relative for item, label, k in zip(domain.items, domain.labels.tolist(), keep)
                          if k and label == UNLABELLED]
        domains[domain_name] = {"count": count, "shards": state["shards"], "labels": labels, "bad": bad,
                                "unlabelled": unlabelled}
    images = src.domains.get(IMAGES_DOMAIN)
    manifest = prepared.new_manifest(name=name, source=identity["source"], source_kind=identity["source_kind"],
                                     fingerprint=identity["fingerprint"], resolution=identity["resolution"],
                                     channels=identity["channels"], max_image_pixels=identity["max_image_pixels"],
                                     domains=domains, classes=identity["classes"],
                                     classes_from=images.label_origin if images is not None else None)
    _write(lambda: prepared.write_manifest(work, manifest), work, record)
    (work / PROGRESS).unlink(missing_ok=True)


def _publish(work: Path, out: Path) -> None:
    """The complete working folder renamed to ``out`` (an older preparation there is replaced only now)."""
    from .download import move_into_place

    try:
        move_into_place(work, out)
        fd = os.open(out.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as error:
        raise UserError(f"cannot move the prepared dataset into {out}: {error.strerror or error} (it is complete "
                        f"in {work})") from None
