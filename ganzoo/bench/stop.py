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

from ..signals import on_stop_signals


class Stopped(KeyboardInterrupt):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


def _raise(name: str) -> None:
    raise Stopped(name)


@contextlib.contextmanager
def stop_on_signals():
    """SIGINT, SIGTERM and SIGHUP raise ``Stopped`` inside the block; the old handlers come back after it."""
    with on_stop_signals(_raise):
        yield
