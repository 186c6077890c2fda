"""`python -m ganzoo` (how torchrun starts each rank): the `ganzoo` command, stop signals handled from its first line."""

from .console import main

main()
