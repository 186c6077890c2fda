"""Verified downloads and safe zip extraction, with nothing half-done left on disk.

``download`` streams a URL into ``<dest>.part-<pid>`` while hashing it, checks
size and sha256, and only then renames it to ``dest``. ``extract_zip`` unpacks
into a hidden temporary folder beside the target and renames the dataset root
into place. Each removes its temporary file or folder on every failure,
Ctrl-C included, so a cache never holds a truncated archive or a half
extracted dataset. Failures are UserErrors that name the URL or archive and
the reason; urllib (standard library) keeps this free of new dependencies.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import socket
import ssl
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import UserError

CHUNK = 1 << 20
# File-type bits of a zip member's Unix mode (the high half of external_attr).
_S_IFMT = 0o170000
_S_IFLNK = 0o120000


@dataclass(frozen=True)
class Downloaded:
    """What actually arrived: shown to the user when the catalog had nothing to check it against."""

    path: Path
    bytes: int
    sha256: str


def download(
    url: str,
    dest: Path,
    *,
    expected_bytes: int | None,
    sha256: str | None,
    progress: bool,
    timeout: float = 30,
) -> Downloaded:
    """Fetch ``url`` into ``dest``; ``dest`` exists afterwards only if every check passed.

    ``expected_bytes`` / ``sha256`` of None skip that check (the caller reports
    what arrived instead). ``timeout`` bounds connecting and each wait for data,
    not the whole transfer. The progress bar goes to stderr and hides itself
    when stderr is not a terminal.
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot download {url} into {dest.parent}: {error.strerror or error}") from None
    part = dest.with_name(f"{dest.name}.part-{os.getpid()}")
    try:
        size, digest = _fetch(url, part, expected_bytes, progress, timeout)
        if expected_bytes is not None and size != expected_bytes:
            raise _failed(url, f"size mismatch: expected {expected_bytes} bytes, got {size}")
        if sha256 is not None and digest != sha256.lower():
            raise _failed(url, f"sha256 mismatch: expected {sha256.lower()}, got {digest}")
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)
    return Downloaded(dest, size, digest)


def _fetch(url: str, part: Path, expected_bytes: int | None, progress: bool, timeout: float) -> tuple[int, str]:
    """Stream the body into ``part``; (bytes received, sha256 hex). Network and disk errors become UserErrors."""
    import http.client

    from tqdm import tqdm

    from .. import __version__

    request = urllib.request.Request(url, headers={"User-Agent": f"ganzoo/{__version__}"})
    digest = hashlib.sha256()
    size = 0
    try:
        with _open_part(part, url) as out, urllib.request.urlopen(request, timeout=timeout) as response:
            length = _content_length(response)
            if length is not None and expected_bytes is not None and length != expected_bytes:
                raise _failed(url, f"size mismatch: expected {expected_bytes} bytes, the server announces {length}")
            with tqdm(total=length if length is not None else expected_bytes, unit="B", unit_scale=True,
                      unit_divisor=1024, desc=part.name.rsplit(".part-", 1)[0], file=sys.stderr, leave=False,
                      disable=None if progress else True) as bar:
                while chunk := response.read(CHUNK):
                    size += len(chunk)
                    if expected_bytes is not None and size > expected_bytes:
                        raise _failed(url, f"size mismatch: expected {expected_bytes} bytes, got more")
                    digest.update(chunk)
                    _write(out, chunk, url, part)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as error:
        raise _failed(url, f"HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        raise _failed(url, _network_reason(error.reason, timeout)) from None
    except TimeoutError:
        raise _failed(url, f"timed out: no data for {timeout:g} s after {size} bytes") from None
    except (OSError, http.client.HTTPException) as error:
        raise _failed(url, f"connection lost after {size} bytes ({type(error).__name__}: {error})") from None
    if length is not None and size < length:
        raise _failed(url, f"connection closed after {size} of {length} bytes")
    return size, digest.hexdigest()


def _open_part(part: Path, url: str):
    try:
        return open(part, "wb")
    except OSError as error:
        raise _failed(url, f"cannot write {part}: {error.strerror}") from None


def _write(out, chunk: bytes, url: str, part: Path) -> None:
    """One chunk to disk; a full disk is named as such rather than blamed on the network."""
    try:
        out.write(chunk)
    except OSError as error:
        raise _failed(url, f"cannot write {part}: {error.strerror}") from None


def _content_length(response) -> int | None:
    value = response.headers.get("Content-Length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _network_reason(reason, timeout: float) -> str:
    """Words for why no connection was made; the likely cause (offline) is said outright."""
    if isinstance(reason, ssl.SSLError):
        return f"TLS error: {reason}"
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve the host name ({reason.strerror}); are you offline?"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused; are you offline, or is the server down?"
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout:g} s; are you offline, or is the server down?"
    if isinstance(reason, OSError) and reason.strerror:
        return f"{reason.strerror}; are you offline?"
    return str(reason)


def _failed(url: str, reason: str) -> UserError:
    return UserError(f"download of {url} failed: {reason}")


def extract_zip(archive: Path, into: Path, name: str, *, required: tuple[str, ...] = ("trainA", "trainB"),
                replace: bool = False) -> Path:
    """Unpack ``archive`` so that ``into`` is the dataset root (the folder holding ``required``).

    The root may be the archive's top level or a single top folder (the
    official zips hold ``horse2zebra/trainA`` ...). Members with absolute
    paths, ``..`` or symlinks are refused before anything is written. An
    existing non-empty ``into`` is swapped out only when ``replace`` is true,
    and the old copy is kept until the new one is in place. The archive itself
    is left alone; the caller decides whether to keep it. ``name`` labels
    messages and the temporary folder.
    """
    archive, into = Path(archive), Path(into)
    into.parent.mkdir(parents=True, exist_ok=True)
    if _occupied(into) and not replace:
        raise UserError(f"{into} already exists and is not empty")
    # mkdir rather than mkdtemp: the folder becomes the dataset, so it gets the usual permissions, not 0700.
    work = into.parent / f".{name}.extract-{os.getpid()}-{secrets.token_hex(4)}"
    work.mkdir()
    try:
        try:
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    _check_member(archive, info)
                zf.extractall(work)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, NotImplementedError) as error:
            raise UserError(f"{archive} is not a valid zip archive ({error})") from None
        except OSError as error:
            raise UserError(f"cannot extract {archive} into {into.parent}: {error}") from None
        root = _find_root(work, name, required, archive)
        move_into_place(root, into)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return into


def _check_member(archive: Path, info: zipfile.ZipInfo) -> None:
    """Refuse a member that could land outside the target (zip slip) or is a symlink."""
    if member_escapes(info.filename):
        raise UserError(f"{archive} is unsafe: member {info.filename!r} would be written outside the dataset folder")
    if member_mode(info) == _S_IFLNK:
        raise UserError(f"{archive} is unsafe: member {info.filename!r} is a symbolic link")


def member_escapes(name: str) -> bool:
    """Whether a zip member's name points outside the archive's own tree: absolute, a drive, or through '..'."""
    name = name.replace("\\", "/")
    return name.startswith("/") or (len(name) > 1 and name[1] == ":") or ".." in PurePosixPath(name).parts


def member_mode(info: zipfile.ZipInfo) -> int:
    """The file-type bits of a member's Unix mode (0 where the archiver recorded none: a plain file)."""
    return (info.external_attr >> 16) & _S_IFMT


def _find_root(work: Path, name: str, required: tuple[str, ...], archive: Path) -> Path:
    """The folder holding every ``required`` subfolder: the top level, the one top folder, or one named ``name``."""
    def holds(folder: Path) -> bool:
        return all((folder / sub).is_dir() for sub in required)

    if holds(work):
        return work
    tops = [p for p in work.iterdir() if p.is_dir() and not p.name.startswith((".", "__MACOSX"))]
    for candidate in [work / name] + (tops if len(tops) == 1 else []):
        if candidate.is_dir() and holds(candidate):
            return candidate
    raise UserError(f"{archive} does not hold a dataset: no {', '.join(required)} folders "
                    f"at its top level or inside one top folder")


def move_into_place(root: Path, into: Path) -> None:
    """Rename ``root`` to ``into``; a previous ``into`` is moved aside first and deleted only once the new one is in."""
    if into.is_dir() and not into.is_symlink() and not any(into.iterdir()):
        into.rmdir()
    if not (into.exists() or into.is_symlink()):
        os.replace(root, into)
        return
    aside = Path(tempfile.mkdtemp(dir=into.parent, prefix=f".{into.name}.old-"))
    try:
        os.replace(into, aside / into.name)
        try:
            os.replace(root, into)
        except BaseException:
            os.replace(aside / into.name, into)
            raise
    finally:
        shutil.rmtree(aside, ignore_errors=True)


def _occupied(path: Path) -> bool:
    """Something is at ``path`` other than an empty folder (which a dataset may simply replace)."""
    if path.is_symlink() or path.is_file():
        return True
    return path.is_dir() and any(path.iterdir())
