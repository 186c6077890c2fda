"""The signals that stop a long job: Ctrl-C, SIGTERM and a hang-up, handled alike by training and the bench.

A hang-up (a closed terminal, a lost SSH session) is a stop like SIGTERM;
output that went to the lost terminal goes to /dev/null from then on, so the
last messages cannot fail. Under `nohup` (SIGHUP ignored) hang-ups stay
ignored. A stopped job exits with 128 + the signal's number (130, 143, 129).

Inside an `on_stop_signals` block (training, the bench, the launcher) the job
decides how to stop. Everywhere else in a ganzoo command (`stop_on_signals`,
from the CLI's first line: imports, checks, data loading) a stop signal
raises `Interrupted` where the process is, so cleanups run, and the command
ends with one line, `stopped by SIGINT`, and 128 + N: not Python's traceback,
click's `Aborted!` with status 1, or a SIGTERM that kills midway.
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

_received: list[str] = []  # every stop signal this process got, in order
_interrupted: list[str] = []  # those stop_on_signals turned into Interrupted


class Interrupted(KeyboardInterrupt):
    """A stop signal outside any block that handles one: the command unwinds (cleanups run) and exits 128 + N."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


def stop_on_signals() -> None:
    """From now on, for the whole process, a stop signal outside an on_stop_signals block raises Interrupted."""

    def interrupt(signum, frame):
        name = signal.Signals(signum).name
        if signum == getattr(signal, "SIGHUP", None):
            detach_from_terminal()
        _received.append(name)
        _interrupted.append(name)
        raise Interrupted(name)

    for name in STOP_SIGNALS:
        sig = getattr(signal, name, None)
        if sig is None or (name == "SIGHUP" and signal.getsignal(sig) == signal.SIG_IGN):
            continue
        signal.signal(sig, interrupt)


def exit_on_signals() -> None:
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

    for name in STOP_SIGNALS:
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) != signal.SIG_IGN:
            signal.signal(sig, leave)


def stop_received() -> bool:
    """Whether a stop signal reached this process (a stop is under way)."""
    return bool(_received)


def interrupted_by() -> str | None:
    """The first stop signal that interrupted this process (stop_on_signals), if any."""
    return _interrupted[0] if _interrupted else None


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
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
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
