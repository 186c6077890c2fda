"""Atomic writes: a temporary file in the same folder, then os.replace.

A reader sees the old file or the new one, never half of one, and a crash
mid-write leaves the old file intact. A new file gets the permissions a plain
``open(path, "w")`` would give (0666 less the umask), not mkstemp's private
0600; a replaced file keeps its own mode (and, where we may set them, its
owner and group), so a private 0600 config stays private.

A write the operating system refuses (a read-only or full disk, a folder that
is not ours, a path through a file) is one UserError naming the path, and the
old file is kept. ``require_writable`` asks the same question up front, before
a command does minutes of work it could not save.

Reading is the mirror image: a file ganzoo reads (config.json, metrics.jsonl, a
checkpoint's files) is opened only when it is a regular file (``open_regular``):
a FIFO would block its reader forever, a folder or a device is no run file. It is
checked by name first, for the message, then opened without blocking and checked
again on the open descriptor, so a FIFO swapped in between cannot hang the reader.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Callable

from .errors import UserError


class NotRegularFile(UserError):
    """A name that is a FIFO, socket, device or folder where a regular file was to be read; left unopened."""


_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder"))


def kind_of(mode: int) -> str:
    """What a file of ``mode`` is, in words, for a message: 'a FIFO (named pipe)', 'a folder', ..."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def not_regular_message(path, mode: int) -> str:
    """'PATH: it is a FIFO (named pipe), not a regular file (left unopened)': shared by run files and images."""
    return f"{path}: it is {kind_of(mode)}, not a regular file (left unopened)"


def open_regular(path, append: bool = False):
    """``path`` opened in binary (read, or append-and-read with ``append``, created if missing), only if it is
    a regular file; NotRegularFile (a UserError) saying what it is otherwise. OSErrors (missing, no permission)
    pass through for the caller to word.

    stat() first, for the message (opening a socket fails with a cryptic ENXIO); then the open itself is
    non-blocking (a FIFO put in its place meanwhile opens at once instead of waiting for a writer) and
    fstat() decides on the descriptor actually opened.
    """
    if not (append and not os.path.exists(path)):  # appending may create it
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFile(not_regular_message(path, info.st_mode))
    flags = (os.O_RDWR | os.O_APPEND | os.O_CREAT) if append else os.O_RDONLY
    fd = os.open(path, flags | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFile(not_regular_message(path, info.st_mode))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "a+b" if append else "rb", buffering=0 if append else -1)
    except BaseException:
        os.close(fd)
        raise


def read_regular(path) -> bytes:
    """The bytes of ``path`` if it is a regular file (open_regular), else NotRegularFile."""
    with open_regular(path) as f:
        return f.read()


@contextlib.contextmanager
def regular_path(path):
    """A name for ``path`` that opens the very file checked regular, for libraries that open by name (torch.load
    with mmap, safetensors): /proc/self/fd/N of the descriptor open_regular opened, where the system has it;
    else ``path`` itself, checked just before."""
    with open_regular(path) as f:
        own = f"/proc/self/fd/{f.fileno()}"
        yield own if os.path.exists(own) else str(path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _keep_attributes(fd: int, path: Path) -> None:
    """Give the temporary file the mode (and owner) of the file it replaces, or a plain open's mode."""
    try:
        old = os.stat(path)
    except FileNotFoundError:
        old = None
    if old is None or not stat.S_ISREG(old.st_mode):
        os.fchmod(fd, 0o666 & ~_umask())
        return
    if (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
        try:  # root may hand the file back to its owner; anyone else keeps what the system allows
            os.fchown(fd, old.st_uid, old.st_gid)
        except PermissionError:
            pass
    os.fchmod(fd, stat.S_IMODE(old.st_mode))  # after fchown, which may clear set-id bits


def _refused(path: Path, exc: OSError) -> UserError:
    """One line naming the target, and the folder above it that refused where that was one; never a temp name."""
    failed = Path(exc.filename) if isinstance(exc.filename, (str, os.PathLike)) else None
    where = f" ({failed})" if failed is not None and failed in path.parents else ""
    return UserError(f"cannot write {path}: {exc.strerror or exc}{where}")


def atomic_write(path: Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    path = Path(path)
    tmp = None
    try:
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "it is a folder", str(path))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, mode) as f:
            _keep_attributes(f.fileno(), path)
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _refused(path, exc) from exc
        raise


def require_writable(folder: Path, hint: str) -> None:
    """A UserError naming ``folder`` and ending in ``hint`` unless a file can be created there now.

    A folder that does not exist yet is judged by the nearest existing one above
    it, where it would be made. Tried for real (a file is created and removed),
    not with os.access: root passes every permission check, yet not a read-only
    filesystem, an immutable folder or a full inode table.
    """
    folder = Path(folder)
    probe = folder
    try:
        while not os.path.lexists(probe) and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(probe))
        fd, name = tempfile.mkstemp(dir=probe, prefix=".ganzoo-write-check-")
    except OSError as exc:
        where = f" ({probe})" if probe != folder else ""
        raise UserError(f"cannot write to {folder}: {exc.strerror or exc}{where}; {hint}") from None
    os.close(fd)
    os.unlink(name)


def require_writable_file(path: Path, hint: str) -> None:
    """``require_writable`` for the folder of an output file, which must not itself be a folder."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"cannot write {path}: it is a folder; {hint}")
    require_writable(path.parent, hint)


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(data, indent=2, sort_keys=False) + "\n"), mode="w")


def write_png(path: Path, image, mark: str | None = None) -> None:
    """Write a PIL image atomically; ``mark`` names the kind of result it is (ganzoo.marks), for a later re-run."""
    from .marks import image_save_options

    options = image_save_options("PNG", mark) if mark is not None else {}
    atomic_write(path, lambda f: image.save(f, format="PNG", **options))


_hash_cache: dict[tuple[str, int, int], str] = {}


def sha256_of(path: Path) -> str:
    """Full sha256 of a file, remembered per (path, size, mtime) so a second load does not read 1 GB again.

    Only a regular file is read (open_regular): a FIFO is NotRegularFile, never a hang."""
    path = Path(path)
    info = path.stat()
    key = (str(path.resolve()), info.st_size, info.st_mtime_ns)
    if key not in _hash_cache:
        digest = hashlib.sha256()
        with open_regular(path) as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        _hash_cache[key] = digest.hexdigest()
    return _hash_cache[key]
