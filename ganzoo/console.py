"""The `ganzoo` console script and `python -m ganzoo`: stop signals are handled before the CLI is imported.

Importing the CLI (click and every command module) takes a few hundred
milliseconds, more on a loaded machine; a Ctrl-C in that window printed
Python's KeyboardInterrupt traceback. Importing this module costs only
ganzoo.signals and installs the handlers at once, in its own body: a handler
installed only when ``main()`` runs left a window (after this module's import,
before the call) where a Ctrl-C still gave the traceback, and a test that stops
the command just as ganzoo.signals is imported found it. From the first line of
ganzoo's own code a stop is one line and 128 + N. (Python's own start-up and the
import of the ganzoo package, before this module runs, are the one window left.)
This module is only ever imported as the entry point.
"""

import sys

try:  # a Ctrl-C may come at any moment here, even while the handlers are being installed
    from .signals import exit_status, handle_stops, say_stopped

    handle_stops()  # a torchrun rank ends at once; any other process raises Interrupted (ganzoo.signals)
except KeyboardInterrupt as early:  # before ganzoo.signals is in, only Python's own SIGINT handler can raise this
    if "say_stopped" not in globals():
        print("stopped by SIGINT", file=sys.stderr)
        raise SystemExit(130) from None
    say_stopped(getattr(early, "name", "SIGINT"))
    raise SystemExit(exit_status(getattr(early, "name", "SIGINT"))) from None


def main():
    try:
        from .cli import main as cli_main
    except KeyboardInterrupt as stop:
        name = getattr(stop, "name", "SIGINT")
        say_stopped(name)
        raise SystemExit(exit_status(name)) from None
    return cli_main()
