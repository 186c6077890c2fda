"""Ctrl-C, SIGTERM and a hang-up stop a bench run at once, as one exception the command can report.

A measurement cannot be finished early the way a training step can, so the
signal interrupts it; what earlier cases measured is already on disk (the
record is rewritten after every case). ``Stopped`` derives from
KeyboardInterrupt, so no ``except Exception`` on the way up swallows it.
As in training: under `nohup` (SIGHUP ignored) hang-ups stay ignored, and
after a hang-up output that went to the lost terminal goes to /dev/null, so
the last message cannot fail.
"""

from __future__ import annotations

import contextlib
import signal

from ..train.trainer import _detach_from_terminal


class Stopped(KeyboardInterrupt):
    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.name = signal.Signals(signum).name


def _raise(signum, frame):
    if signum == getattr(signal, "SIGHUP", None):
        _detach_from_terminal()
    raise Stopped(signum)


@contextlib.contextmanager
def stop_on_signals():
    """SIGINT, SIGTERM and SIGHUP raise ``Stopped`` inside the block; the old handlers come back after it."""
    previous = {}
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is None or (sig == getattr(signal, "SIGHUP", None) and signal.getsignal(sig) == signal.SIG_IGN):
            continue  # no SIGHUP on Windows; under nohup it stays ignored
        try:
            previous[sig] = signal.signal(sig, _raise)
        except ValueError:  # not the main thread: leave signals alone
            pass
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
