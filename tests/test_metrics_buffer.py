"""When deferred metrics records complete (ganzoo.train.metrics_buffer).

On the CPU a record lands at once. The CUDA policy (event.query(), in order; with several ranks only at
log points; everything when forced) is checked with a stand-in for torch.cuda.Event, since no CUDA runs
here: it reports done when told to, as a real event reports the copy's completion.
"""

from __future__ import annotations

import torch

from ganzoo.train.metrics_buffer import MetricsBuffer, _Pending


def test_on_the_cpu_a_record_lands_at_its_own_log_point():
    buffer = MetricsBuffer(torch.device("cpu"))
    start = buffer.mark()
    buffer.submit(torch.tensor([3.0, 1.5, -1.0, 0.0]), ["loss/D", "loss/G"], {"loss/D": 2}, start, step=4, steps=2)
    [landed] = buffer.ready()
    assert (landed.step, landed.steps, landed.sums, landed.counts, landed.extra) == \
        (4, 2, {"loss/D": 3.0, "loss/G": 1.5}, {"loss/D": 2}, [-1.0, 0.0])
    assert landed.seconds > 0 and buffer.ready() == []


class _Event:
    """Stands in for a torch.cuda.Event: done when the test says so; a timing event 2 ms after its start."""

    def __init__(self, done=False, at_ms=0.0):
        self.done, self.at_ms, self.waited = done, at_ms, False

    def query(self):
        return self.done

    def synchronize(self):
        self.waited, self.done = True, True

    def elapsed_time(self, end):
        return end.at_ms - self.at_ms


def _pending(buffer, step, done):
    event = _Event(done)
    buffer.pending.append(_Pending(torch.tensor([float(step)]), event, _Event(True, 0.0), _Event(True, 2.0), step, 2,
                                   ["loss/D"], {}))
    return event


def test_one_process_completes_what_has_landed_in_order_without_waiting():
    buffer = MetricsBuffer(torch.device("cpu"))
    first, second = _pending(buffer, 2, done=False), _pending(buffer, 4, done=True)
    assert buffer.ready() == []  # the older one has not landed: nothing overtakes it
    first.done = True
    landed = buffer.ready()
    assert [r.step for r in landed] == [2, 4] and not first.waited and not second.waited
    assert landed[0].seconds == 0.002 and landed[0].sums == {"loss/D": 2.0}


def test_forced_completion_waits_for_everything():
    buffer = MetricsBuffer(torch.device("cpu"))
    events = [_pending(buffer, 2, done=False), _pending(buffer, 4, done=False)]
    assert [r.step for r in buffer.ready(force=True)] == [2, 4] and all(e.waited for e in events)


def test_several_ranks_complete_at_log_points_all_but_the_newest():
    buffer = MetricsBuffer(torch.device("cpu"), agreed=True)
    _pending(buffer, 2, done=True)
    assert buffer.ready() == []  # landed, but ranks would see it at different steps: wait for a log point
    assert buffer.ready(log_point=True) == []  # the newest waits for the next log point
    _pending(buffer, 4, done=False)
    assert [r.step for r in buffer.ready(log_point=True)] == [2]
    assert [r.step for r in buffer.ready(force=True)] == [4]
