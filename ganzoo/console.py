"""The `ganzoo` console script and `python -m ganzoo`: stop signals are handled before the CLI is imported.

Importing the CLI (click and every command module) takes a few hundred
milliseconds, more on a loaded machine; a Ctrl-C in that window printed
Python's KeyboardInterrupt traceback. Importing this module costs only
ganzoo.signals, so from the first line of ganzoo's own code a stop is one
line and 128 + N. (Python's own start-up, before any of ganzoo runs, is the
one window left.)
"""

from .signals import exit_status, handle_stops, say_stopped


def main():
    try:  # a Ctrl-C may come even while the handlers are being installed
        handle_stops()  # a torchrun rank ends at once; any other process raises Interrupted (ganzoo.signals)
        from .cli import main as cli_main
    except KeyboardInterrupt as stop:
        name = getattr(stop, "name", "SIGINT")
        say_stopped(name)
        raise SystemExit(exit_status(name)) from None
    return cli_main()
