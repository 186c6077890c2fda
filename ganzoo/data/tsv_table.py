"""The tab-separated catalogs ganzoo ships (datasets, published checkpoints) and the user files that extend them.

One reader for both: a header line naming the columns, then one entry a line
(blank and '#' lines skipped), every error naming the file and line; entries of
the file an environment variable names add to or replace the built-in ones by name.
"""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path
from typing import Callable, TypeVar

from ..errors import UserError

UNKNOWN = "-"  # a size or sha256 a catalog does not know
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # names become folder and file names, so they stay plain
SCHEMES = ("http://", "https://", "file://")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")

Entry = TypeVar("Entry")


def read_table(package: str, file: str, env: str, columns: tuple[str, ...], what: str,
               entry: Callable[[list[str], str], Entry], optional: tuple[str, ...] = ()) -> dict[str, Entry]:
    """Every entry by name, sorted: ``package``'s ``file``, then the file ``$env`` names over it.

    ``entry(fields, where)`` checks one data line (``where`` names file and line for its errors), given every
    column of ``columns + optional``. ``optional`` columns came later: a file whose header stops before them
    (one written for an older ganzoo) still reads, its entries holding '-' there.
    """
    source = resources.files(package).joinpath(file)
    entries = parse_table(source.read_text(encoding="utf-8"), str(source), columns, what, entry, optional)
    extra = os.environ.get(env)
    if extra:
        path = Path(extra).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise UserError(f"cannot read {env} file {path}: {error}") from None
        entries.update(parse_table(text, str(path), columns, what, entry, optional))
    return dict(sorted(entries.items()))


def parse_table(text: str, source: str, columns: tuple[str, ...], what: str,
                entry: Callable[[list[str], str], Entry], optional: tuple[str, ...] = ()) -> dict[str, Entry]:
    entries: dict[str, Entry] = {}
    header: tuple[str, ...] | None = None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.rstrip("\r").split("\t")
        where = f"{source}, line {number}"
        if header is None:
            header = tuple(f.strip() for f in fields)
            if header not in (columns, columns + optional):
                later = f"; {', '.join(optional)} may be left out" if optional else ""
                raise UserError(f"{where}: expected the header line {chr(9).join(columns + optional)!r} "
                                f"(tab-separated{later}), got {line!r}")
            continue
        if len(fields) != len(header):
            raise UserError(f"{where}: expected {len(header)} tab-separated fields ({', '.join(header)}), "
                            f"got {len(fields)}")
        fields += [UNKNOWN] * (len(columns) + len(optional) - len(header))
        made = entry([f.strip() for f in fields], where)
        if made.name in entries:
            raise UserError(f"{where}: {what} {made.name!r} is listed twice")
        entries[made.name] = made
    return entries


def source_fields(where: str, url: str, size: str, sha256: str) -> tuple[str, int | None, str | None]:
    """(url, bytes or None, lower-case sha256 or None), each checked; '-' marks a size or hash not known."""
    if not url.startswith(SCHEMES):
        raise UserError(f"{where}: bad url {url!r} (must start with {', '.join(SCHEMES)})")
    if size != UNKNOWN and not (size.isdigit() and int(size) > 0):
        raise UserError(f"{where}: bad bytes {size!r} (a positive whole number, or '-' if unknown)")
    if sha256 != UNKNOWN and not _SHA256.fullmatch(sha256):
        raise UserError(f"{where}: bad sha256 {sha256!r} (64 hex digits, or '-' if unknown)")
    return url, None if size == UNKNOWN else int(size), None if sha256 == UNKNOWN else sha256.lower()
