"""The signals that stop a long job: Ctrl-C, SIGTERM and a hang-up, handled alike by training and the bench.

A hang-up (a closed terminal, a lost SSH session) is a stop like SIGTERM;
output that went to the lost terminal goes to /dev/null from then on, so the
last messages cannot fail. Under `nohup` (SIGHUP ignored) hang-ups stay
ignored. A stopped job exits with 128 + the signal's number (130, 143, 129).
"""

from __future__ import annotations

import contextlib
import os
import signal
from typing import Callable, Iterator

STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


@contextlib.contextmanager
def on_stop_signals(handler: Callable[[str], None]) -> Iterator[None]:
    """Inside the block, each stop signal calls ``handler(name)``; the previous handlers come back after it."""

    def handle(signum, frame):
        if signum == getattr(signal, "SIGHUP", None):
            detach_from_terminal()
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
