"""Reading ahead: a daemon thread makes the next batches while the trainer computes the current one.

``ReadAhead(produce, depth)`` calls ``produce()`` in a background thread, at
most ``depth`` results ahead of the consumer, and ``next()`` hands them back in
the order they were made. One thread and one order: whatever ``produce`` draws
at random is drawn in exactly the sequence a plain loop would draw it.

The thread holds no reference to its owner (only ``produce``, a queue and a
stop flag), so an owner dropped without ``close()`` is collected and its
thread told to stop; it is a daemon either way, and never outlives the process.
An exception raised by ``produce`` (a ``UserError`` for a damaged shard, say)
ends the thread and is raised by ``next()`` as that same exception, then again
at every later call.
"""

from __future__ import annotations

import queue
import threading
import weakref
from typing import Callable

POLL_S = 0.1  # how often a waiting side looks at the stop flag or the other side's health
JOIN_S = 5.0  # how long close() waits for a batch in the making (the thread works on its own copies)


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


def _work(produce: Callable[[], object], items: queue.SimpleQueue, slots: threading.Semaphore,
          stop: threading.Event, setup: Callable[[], None] | None) -> None:
    try:
        if setup is not None:
            setup()
        while True:
            while not slots.acquire(timeout=POLL_S):
                if stop.is_set():
                    return
            if stop.is_set():
                return
            items.put(produce())
    except BaseException as error:  # noqa: BLE001 (handed to the consumer, who raises it)
        items.put(_Failed(error))


def _halt(stop: threading.Event, thread: threading.Thread, timeout: float) -> None:
    stop.set()
    if thread is not threading.current_thread() and thread.is_alive():
        thread.join(timeout)


class ReadAhead:
    """``produce()``'s results, made up to ``depth`` ahead in a daemon thread, handed back in order.

    ``setup`` runs first in the thread (e.g. ``torch.cuda.set_device`` before pinning memory there).
    """

    def __init__(self, produce: Callable[[], object], depth: int, setup: Callable[[], None] | None = None,
                 name: str = "ganzoo-read-ahead"):
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self._items: queue.SimpleQueue = queue.SimpleQueue()
        self._slots = threading.Semaphore(depth)
        self._stop = threading.Event()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=_work, args=(produce, self._items, self._slots, self._stop, setup),
                                        name=name, daemon=True)
        self._thread.start()
        self._close = weakref.finalize(self, _halt, self._stop, self._thread, JOIN_S)

    def next(self):
        """The next result, waiting for it if it is not made yet; the worker's exception if it failed."""
        if self._failed is not None:
            raise self._failed
        while True:
            try:
                item = self._items.get(timeout=POLL_S)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._items.empty():
                    self._failed = RuntimeError("the read-ahead thread stopped without a result")
                    raise self._failed from None
        if isinstance(item, _Failed):
            self._failed = item.error
            raise item.error
        self._slots.release()
        return item

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        """Stop the thread (waiting up to JOIN_S for a result in the making) and drop what it made."""
        self._close()
        while True:
            try:
                self._items.get_nowait()
            except queue.Empty:
                break
