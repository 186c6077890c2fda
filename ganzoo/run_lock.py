"""One writer per run folder: a lock that whoever trains a run holds from before its first write to its end.

Two processes training one folder at once write checkpoints of diverging
trajectories and interleave metrics.jsonl. So `ganzoo train` (under torchrun:
rank 0, for the whole job) holds an exclusive flock(2) on RUN/.lock while it
runs. The kernel drops the lock when its holder dies, however it dies (SIGKILL,
out of memory), so a lock is never stale and nobody removes one by hand. The
holder writes who it is into the file (pid, host, since when, command), so a
refused second writer names it. Readers (info, sample, eval, export) never take it.

While holding it, a process is the folder's only writer (`holds`): any scratch
folder in checkpoints/ is then a dead writer's, whichever process now carries
the id in its name.

The file itself stays: removing a lock file another process may have opened
would let two processes lock two different files. A taker therefore checks,
once locked, that the file it locked is still the one at RUN/.lock, so the one
case that does remove it (a run that fails before its first step takes away
the folder it made, while still holding the lock) stays safe.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shlex
import socket
import stat
import sys
import time
from pathlib import Path

from .errors import UserError

LOCK = ".lock"
# How long a taker retries a held lock before refusing: a check (`refuse_if_held`) holds it for an instant.
_RETRY_S = 1.0
# flock errors that mean "this filesystem has no locks", not "someone holds it".
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
_held: dict[tuple[int, int], "RunLock"] = {}  # the run folders this process holds, by (device, inode)
_warned: set[Path] = set()  # lock files on filesystems without locks, said once


class RunBusy(UserError):
    """Another live process trains this run folder."""


class RunLock:
    """A held run lock; `release` (or leaving the `with` block) drops it. ``exclusive`` is False where the
    filesystem has no locks (then nothing is held, and a warning said so)."""

    def __init__(self, run_dir: Path, fd: int, exclusive: bool):
        self.run_dir, self.fd, self.exclusive = run_dir, fd, exclusive
        self._key = _folder_key(run_dir) if exclusive else None
        if self._key is not None:
            _held[self._key] = self

    def release(self) -> None:
        if self.fd < 0:
            return
        if _held.get(self._key) is self:
            del _held[self._key]
        os.close(self.fd)  # the last descriptor of the open file: the kernel drops the lock
        self.fd = -1

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def acquire(run_dir: Path) -> RunLock:
    """Hold ``run_dir``'s lock (making the folder when it does not exist); RunBusy names the live holder."""
    run_dir = Path(run_dir)
    path = run_dir / LOCK
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot make {run_dir}: {exc.strerror or exc}") from None
    while True:
        fd = _open(path, os.O_RDWR | os.O_CREAT)
        try:
            if not _lock(fd, path, run_dir):
                return RunLock(run_dir, fd, exclusive=False)
            if not _same_file(fd, path):
                os.close(fd)  # its holder removed it before releasing it: lock the file there now
                continue
            _describe_holder(fd)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            raise
        return RunLock(run_dir, fd, exclusive=True)


def refuse_if_held(run_dir: Path) -> None:
    """RunBusy if another process trains ``run_dir`` now; writes nothing (a folder without the file is free).

    For refusing early (before the data loads, before --nproc-per-node starts any process); the writer
    itself still takes the lock with `acquire` before its first write.
    """
    path = Path(run_dir) / LOCK
    if not os.path.lexists(path):
        return
    fd = _open(path, os.O_RDWR)
    try:
        _lock(fd, path, Path(run_dir))
    finally:
        os.close(fd)


def holds(run_dir: Path) -> bool:
    """Whether this process holds ``run_dir``'s lock: it is the folder's only writer."""
    try:
        return _folder_key(Path(run_dir)) in _held
    except OSError:
        return False


def _open(path: Path, flags: int) -> int:
    """The lock file, opened without following a link or blocking on a FIFO; a UserError unless a regular file."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
            raise UserError(_not_a_lock(path)) from None
        raise UserError(f"cannot open {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UserError(_not_a_lock(path))
    return fd


def _not_a_lock(path: Path) -> str:
    return (f"{path} is not a regular file: it is the lock ganzoo takes while a run trains "
            f"(one writer per run folder); remove it")


def _lock(fd: int, path: Path, run_dir: Path) -> bool:
    """Lock ``fd`` exclusively, retrying for a moment; RunBusy if held. False: the filesystem has no locks."""
    deadline = time.monotonic() + _RETRY_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise RunBusy(_busy(run_dir, fd)) from None
            time.sleep(0.05)
        except OSError as exc:
            if exc.errno not in _NO_LOCKS:
                raise UserError(f"cannot lock {path}: {exc.strerror or exc}") from None
            if path not in _warned:
                _warned.add(path)
                print(f"warning: {path}: this filesystem does not support locks ({exc.strerror}), so a second "
                      f"process training {run_dir} at the same time would not be refused", file=sys.stderr,
                      flush=True)
            return False


def _same_file(fd: int, path: Path) -> bool:
    try:
        now = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)


def _folder_key(run_dir: Path) -> tuple[int, int]:
    info = os.stat(run_dir)
    return info.st_dev, info.st_ino


def _describe_holder(fd: int) -> None:
    """Who holds the lock, for the message a refused writer prints (the lock is the flock, not this text)."""
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
              "command": _command()}
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        holder["rank"] = f"rank {os.environ['RANK']} of {os.environ['WORLD_SIZE']}"
        launcher = os.environ.get("GANZOO_LAUNCHER_PID")
        if launcher:
            holder["launcher"] = int(launcher)
    data = (json.dumps(holder) + "\n").encode()
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
    except OSError:  # a full disk: the lock holds all the same, a refusal just cannot name the holder
        pass


def _command() -> str:
    """This process's command line as the user would type it (`python -m ganzoo` shown as `ganzoo`)."""
    first = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("ganzoo")
    name = first.parent.name if first.name == "__main__.py" else first.name
    text = shlex.join([name, *sys.argv[1:]])
    return text if len(text) <= 300 else text[:297] + "..."


def _busy(run_dir: Path, fd: int) -> str:
    """The refusal, naming the holder from what it wrote (it may not have written yet)."""
    try:
        holder = json.loads(os.pread(fd, 4096, 0).decode())
        who = f"pid {int(holder['pid'])}"
        if holder.get("rank"):
            who += f" ({holder['rank']}"
            who += f" started by pid {int(holder['launcher'])})" if holder.get("launcher") else ")"
        who += f" on {holder['host']} since {holder['since']} ({holder['command']})"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        who = "another process (it has not said which yet)"
    return (f"{run_dir} is being trained by {who}: a run folder has one writer at a time; wait for that run "
            f"to end or stop it")
