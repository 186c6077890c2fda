"""torchrun (torch.distributed.run) as `ganzoo train --nproc-per-node` starts it.

The same launcher, except that:

- it dies with the launcher: Linux sends it SIGTERM when the launcher dies,
  SIGKILL included (ganzoo.lifeline), and it stops the ranks as on any SIGTERM;
- a stop signal ends it with the shell's status for that signal (130 for
  Ctrl-C, 143 for SIGTERM) and nothing printed, at any moment: before torchrun
  handles signals itself (while torch imports) it simply exits, since no rank
  has started; after, torchrun passes the signal to every rank, which stop
  together (rank 0 checkpoints), and the launcher says how the job stopped;
- a rank that failed first with status 1 (a UserError, one "Error:" line, or a
  bug, whose traceback that rank printed) or with a stop's status ends it with
  that status and nothing more.
"""

import os
import signal
import subprocess
import sys

from ganzoo.lifeline import die_with_launcher
from ganzoo.signals import LAUNCHER_PID, STOP_SIGNALS, exit_status, interrupt_on_stops, on_stop_signals

# torchrun's own lines about a stop it passes on (the launcher reports the stop in one line of its own).
_STOP_NOTICES = ("Received %s death signal, shutting down workers", "Sending process %s closing signal %s")
_STOP_STATUSES = {exit_status(name) for name in STOP_SIGNALS}


def run_job(nproc: int, train_args: list[str]) -> tuple[int, str | None]:
    """`ganzoo train TRAIN_ARGS` in ``nproc`` ranks under torchrun; (torchrun's status, the signal that ended it).

    The launcher's side. torchrun runs in a session of its own, so a terminal's
    Ctrl-C (or a signal to this process group) reaches this process alone, which
    passes each stop on once: as SIGTERM, which ends torchrun quietly however
    early it comes (Python turns an early SIGINT into a traceback), and a hang-up
    as SIGHUP, so the ranks let go of the lost terminal. The signal returned is
    this process's stop, or the one torchrun itself was stopped or killed by
    (its ranks then stop by themselves, ganzoo.lifeline).
    """
    command = [sys.executable, "-m", "ganzoo.train.torchrun", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "ganzoo", "train", *train_args]
    received: list[str] = []
    passed: list[str] = []
    job: list[subprocess.Popen] = []

    def pass_on(name: str) -> None:
        passed.append(name)
        try:
            job[0].send_signal(signal.SIGHUP if name == "SIGHUP" else signal.SIGTERM)
        except ProcessLookupError:
            pass

    def forward(name: str) -> None:
        received.append(name)
        if job:
            pass_on(name)

    with on_stop_signals(forward):
        if received:
            return exit_status(received[0]), received[0]
        child = subprocess.Popen(command, env={**os.environ, LAUNCHER_PID: str(os.getpid())},
                                 start_new_session=True)
        job.append(child)
        if received and not passed:  # it came while torchrun was starting, before `job` held it
            pass_on(received[0])
        status = child.wait()
    status = status if status >= 0 else 128 - status
    return status, received[0] if received else _signal_name(status)


def _signal_name(status: int) -> str | None:
    """The signal a status above 128 stands for (torchrun stopped by one, or killed), else None."""
    try:
        return signal.Signals(status - 128).name if status > 128 else None
    except ValueError:
        return None


def _quiet_stop_notices() -> None:
    import logging

    for name in ("torch.distributed.elastic.agent.server.api", "torch.distributed.elastic.multiprocessing.api"):
        logging.getLogger(name).addFilter(lambda record: record.msg not in _STOP_NOTICES)


def main(argv: list[str]) -> int:
    try:
        from torch.distributed.elastic.multiprocessing.api import SignalException
        from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
        from torch.distributed.run import main as torchrun

        _quiet_stop_notices()
        try:
            torchrun(argv)
        except SignalException as stop:
            return 128 + int(stop.sigval)
        except ChildFailedError as failed:
            status = failed.get_first_failure()[1].exitcode
            if status != 1 and status not in _STOP_STATUSES:
                raise
            return status
    except KeyboardInterrupt as stop:  # a stop signal before torchrun handles them (ganzoo.signals)
        return exit_status(getattr(stop, "name", "SIGINT"))
    return 0


if __name__ == "__main__":
    die_with_launcher()
    interrupt_on_stops()
    sys.exit(main(sys.argv[1:]))
