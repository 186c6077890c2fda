"""torchrun (torch.distributed.run) as `ganzoo train --nproc-per-node` starts it.

The same launcher, except that a stop signal ends it with the shell's status
for that signal (143 for SIGTERM) instead of a traceback: torchrun has already
passed the signal to every rank, which checkpointed and stopped together. A
rank that failed first with status 1 (a UserError, one "Error:" line, or a bug,
whose traceback that rank printed) ends it with status 1 and nothing more.
"""

import sys

from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import main

if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except SignalException as stop:
        sys.exit(128 + int(stop.sigval))
    except ChildFailedError as failed:
        if failed.get_first_failure()[1].exitcode != 1:
            raise
        sys.exit(1)
