"""`python -m ganzoo` (how torchrun starts each rank): the `ganzoo` command, stop signals handled from its first line."""

from .signals import exit_status, handle_stops, say_stopped

handle_stops()  # a stop while the CLI imports ends this process in one line (ganzoo.signals), not a traceback
try:
    from .cli import main
except KeyboardInterrupt as stop:
    say_stopped(getattr(stop, "name", "SIGINT"))
    raise SystemExit(exit_status(getattr(stop, "name", "SIGINT"))) from None

main()
