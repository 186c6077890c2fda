"""Whether decoded data fits in this machine's memory, asked before a byte of it is allocated.

A dataset is decoded once into one uint8 array of count x channels x side x side
bytes. At a large resolution that is more than any machine holds (the embedded
10,000 images at 4096x4096 are 168 GB): without this check the allocation
either fails deep inside torch or numpy with a traceback, or the kernel's
out-of-memory killer ends the process minutes later. The check compares the
size with the memory available now (Linux's MemAvailable; the physical memory
where the system says no more), so it can only refuse what cannot fit.
"""

from __future__ import annotations

import os

from ..errors import UserError


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation now, or None where the system does not say."""
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def size_text(nbytes: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if nbytes < 1000 or unit == "PB":
            return f"{nbytes:.0f} {unit}" if unit == "bytes" else f"{nbytes:.3g} {unit}"
        nbytes /= 1000
    raise AssertionError("unreachable")


def require_memory_for(count: int, channels: int, side: int, what: str) -> None:
    """UserError unless ``count`` decoded images of ``channels`` x ``side`` x ``side`` bytes fit in the memory
    available; ``what`` names the data (a folder, the embedded set)."""
    need = count * channels * side * side
    available = available_memory()
    if available is None or need <= available:
        return
    raise UserError(f"{what}: {count:,} image{'s' * (count != 1)} decoded at {side}x{side}x{channels} would take {size_text(need)}, "
                    f"more than the {size_text(available)} of memory available: train at a lower resolution, or "
                    "on fewer images")
