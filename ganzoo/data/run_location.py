"""A run directory must not live inside the data it trains on.

Its sample grids are PNGs: inside the ``--data`` folder they would be found and
trained on by the next run (or the next resume) of that data.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UserError


def refuse_run_inside_data(run_dir: str | os.PathLike, source: str | os.PathLike | None) -> None:
    """UserError when ``run_dir`` is ``source``'s folder or below it (links resolved); nothing is created."""
    from . import source_folder

    folder = source_folder(source)
    if folder is None:
        return
    data, run = folder.resolve(), Path(run_dir).expanduser().resolve()
    if run == data or data in run.parents:
        raise UserError(f"run directory {run_dir} is inside its data folder {data}: the images it writes would be "
                        f"trained on next time; pick an --out outside {data}")
