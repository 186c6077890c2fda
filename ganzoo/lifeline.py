"""No process of a job outlives the one that started it: torchrun dies with the launcher, a rank with its agent.

`ganzoo train --nproc-per-node` starts torchrun, which starts the ranks, each
in a session of its own. A launcher killed with SIGKILL (or by the kernel's
out-of-memory killer) runs no handler; without this its children would train on
unseen, and hold the run's lock (ganzoo.run_lock). So:

- torchrun asks Linux for a parent-death signal (PR_SET_PDEATHSIG): SIGTERM
  when the launcher dies, however it dies. It passes it to every rank, which
  stop as on any SIGTERM: at one agreed step, where rank 0 checkpoints.
- each rank watches its agent (a daemon thread polling the parent's pid): once
  torchrun is gone (killed itself), the rank sends itself SIGTERM, the same
  stop, unless a stop is already under way, and exits after `GRACE_S` seconds
  if it is still alive (a peer that left mid-collective leaves it waiting).

The parent-death signal fires when the *thread* that started the child ends;
the launcher starts torchrun from its main thread, which lives as long as the
process. Nothing here runs outside Linux (parent-death signal) or outside
torchrun (the watch).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

from . import signals

AGENT_PID = "GANZOO_AGENT_PID"  # torchrun's pid, set by ganzoo.train.torchrun for its ranks
GRACE_S = 30.0  # how long a rank whose agent is gone may take to stop (a checkpoint) before it exits anyway
POLL_S = 0.2
_PR_SET_PDEATHSIG = 1


def die_with_launcher() -> None:
    """In torchrun under the launcher: SIGTERM when the launcher dies; exit at once if it already has."""
    launcher = int(os.environ.get(signals.LAUNCHER_PID, "0") or 0)
    if not launcher:
        return
    _parent_death_signal(signal.SIGTERM)
    if os.getppid() != launcher:  # it died before the request above: no signal will come
        os._exit(signals.exit_status("SIGTERM"))
    os.environ[AGENT_PID] = str(os.getpid())  # the ranks' parent, for stop_with_agent


def stop_with_agent() -> None:
    """In a rank of a torchrun job: stop when the agent (the parent) is gone; nothing elsewhere."""
    if "TORCHELASTIC_RUN_ID" not in os.environ or "LOCAL_RANK" not in os.environ:
        return
    agent = int(os.environ.get(AGENT_PID, "0") or 0) or os.getppid()
    threading.Thread(target=_watch, args=(agent,), name="ganzoo-agent-watch", daemon=True).start()


def _watch(agent: int) -> None:
    while os.getppid() == agent:
        time.sleep(POLL_S)
    if not signals.stop_received() and not signals.work_done():
        # the usual stop: the ranks agree on a step, rank 0 checkpoints. Once training has ended (a stop agreed
        # with a peer, or the last step) the rank is only leaving: a signal then would end it in the final
        # barrier and break its peer's.
        os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(GRACE_S)
    os._exit(signals.exit_status("SIGTERM"))


def _parent_death_signal(sig: int) -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):  # no prctl: the ranks still watch their agent
        pass
