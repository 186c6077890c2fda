"""The signals that stop a long job: Ctrl-C, SIGTERM and a hang-up, handled alike by training and the bench.

A hang-up (a closed terminal, a lost SSH session) is a stop like SIGTERM;
output that went to the lost terminal goes to /dev/null from then on, so the
last messages cannot fail. Under `nohup` (SIGHUP ignored) hang-ups stay
ignored. A stopped job exits with 128 + the signal's number (130, 143, 129).

Inside an `on_stop_signals` block (training, the bench, the launcher) the job
decides how to stop. Everywhere else in a ganzoo command, from its first line
(`handle_stops`: imports, checks, data loading), a stop signal raises
`Interrupted` where the process is, so cleanups run, and the command ends with
one line, `stopped by SIGINT`, and 128 + N: not Python's traceback, click's
`Aborted!` with status 1, or a SIGTERM that kills midway. The ranks of a
torchrun job are the exception: until they train, or rank 0 is about to write
(`interrupt_on_stops`), they have nothing to undo or say, and a stop ends them
at once, the kernel's way, since a rank may be waiting inside C++ (a
rendezvous) where no Python handler runs. Once the command is over,
`exit_on_stops` ends a process that Python is still finalizing at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import Callable, Iterator

STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")
# Set by `ganzoo train --nproc-per-node` (its pid) for torchrun and the ranks: the launcher reports stops.
LAUNCHER_PID = "GANZOO_LAUNCHER_PID"

_received: list[str] = []  # every stop signal this process handled, in order
_interrupted: list[str] = []  # those that raised Interrupted
_blocks_ended = [0]  # on_stop_signals blocks that have ended in this process (work_done)


class Interrupted(KeyboardInterrupt):
    """A stop signal outside any block that handles one: the command unwinds (cleanups run) and exits 128 + N."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


def handle_stops() -> None:
    """A ganzoo command's first line: a rank of a torchrun job ends at once on a stop; any other raises Interrupted."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        _install(signal.SIG_DFL)
    else:
        interrupt_on_stops()


def interrupt_on_stops() -> None:
    """From now on, a stop signal outside an on_stop_signals block raises Interrupted where the process is."""

    def interrupt(signum, frame):
        name = signal.Signals(signum).name
        if signum == getattr(signal, "SIGHUP", None):
            detach_from_terminal()
        _received.append(name)
        _interrupted.append(name)
        raise Interrupted(name)

    _install(interrupt)


def exit_on_stops() -> None:
    """Once a command is over (Python finalizing): a stop signal ends the process at once, with 128 + N.

    Raising there would only print "Exception ignored in ..." with a traceback, from whatever finalizer runs.
    """

    def leave(signum, frame):
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(128 + signum)

    _install(leave)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Stop signals wait until the block ends: a cleanup is not cut short midway (they arrive right after)."""
    stops = {getattr(signal, name) for name in STOP_SIGNALS if hasattr(signal, name)}
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, stops)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _install(handler) -> None:
    for name in STOP_SIGNALS:
        sig = getattr(signal, name, None)
        if sig is None or (name == "SIGHUP" and signal.getsignal(sig) == signal.SIG_IGN):
            continue  # no SIGHUP on Windows; under nohup it stays ignored
        signal.signal(sig, handler)


def stop_received() -> bool:
    """Whether a stop signal reached this process (a stop is under way)."""
    return bool(_received)


def interrupted_by() -> str | None:
    """The first stop signal that raised Interrupted in this process, if any."""
    return _interrupted[0] if _interrupted else None


def first_stop() -> str | None:
    """The first stop signal this process handled, however it handled it (None: none came)."""
    return _received[0] if _received else None


def work_done() -> bool:
    """Whether a job's on_stop_signals block (training, the bench) has ended here: only leaving is left."""
    return _blocks_ended[0] > 0


def launcher_reports() -> bool:
    """Whether `ganzoo train --nproc-per-node` started this process and still runs: it reports how the job stopped."""
    pid = int(os.environ.get(LAUNCHER_PID, "0") or 0)
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:  # killed: the ranks say it themselves
        return False
    except PermissionError:
        return True
    try:  # a killed launcher its parent has not reaped yet is a zombie: dead too
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def say_stopped(name: str) -> None:
    """`stopped by NAME` on stderr, from the process that reports stops (see reports_stops)."""
    if reports_stops():
        print(f"stopped by {name}", file=sys.stderr, flush=True)


def reports_stops() -> bool:
    """Whether this process says how a stop ended it: rank 0 of a job (or the one process), unless its launcher does."""
    return os.environ.get("RANK", "0") == "0" and not launcher_reports()


@contextlib.contextmanager
def on_stop_signals(handler: Callable[[str], None]) -> Iterator[None]:
    """Inside the block, each stop signal calls ``handler(name)``; the previous handlers come back after it."""

    def handle(signum, frame):
        if signum == getattr(signal, "SIGHUP", None):
            detach_from_terminal()
        _received.append(signal.Signals(signum).name)
        handler(signal.Signals(signum).name)

    previous = {}
    for name in STOP_SIGNALS:
        sig = getattr(signal, name, None)
        if sig is None or (name == "SIGHUP" and signal.getsignal(sig) == signal.SIG_IGN):
            continue  # no SIGHUP on Windows; under nohup it stays ignored
        try:
            previous[sig] = signal.signal(sig, handle)
        except ValueError:  # not the main thread: leave signals alone
            pass
    try:
        yield
    finally:
        _blocks_ended[0] += 1
        for sig, old in previous.items():
            signal.signal(sig, old)


def exit_status(name: str) -> int:
    """The shell's status for a job stopped by signal ``name``: 128 + its number."""
    return 128 + signal.Signals[name].value


def detach_from_terminal() -> None:
    """Point stdout and stderr that are terminals at /dev/null (files and pipes keep their output)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in (1, 2):
            if os.isatty(fd):
                os.dup2(devnull, fd)
    finally:
        os.close(devnull)
