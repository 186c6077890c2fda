"""Find architectures through entry points, import them only when used, and
keep one broken plugin from breaking anything else.

Listing (:func:`discover`) reads entry-point names and distribution metadata
only: it imports neither torch nor any plugin, so ``ganzoo list`` stays fast
and works even when a plugin is broken. :func:`load` imports one plugin and
records any failure on its :class:`PluginEntry` instead of raising.

The ``GANZOO_PLUGINS`` environment variable limits loading, as ``LLM_LOAD_PLUGINS``
does for simonw/llm: unset loads all; a comma-separated list loads only the
entries whose architecture name or distribution name it names; an empty string
loads none.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points

from ganzoo.api import API_VERSION, ENTRY_POINT_GROUP, Architecture
from ganzoo.errors import UserError

ENV_VAR = "GANZOO_PLUGINS"
BUILTIN_DISTRIBUTION = "ganzoo"

OK = "ok"
NOT_LOADED = "not loaded"
IMPORT_ERROR = "import error"
API_MISMATCH = "api mismatch"
BAD_PLUGIN = "bad plugin"
DUPLICATE = "duplicate"
DISABLED = "disabled"

REQUIRED_ATTRIBUTES = ("name", "summary", "Config")


@dataclass
class PluginEntry:
    """One entry point of the ``ganzoo.architectures`` group and what became of it."""

    name: str
    value: str
    distribution: str
    version: str
    status: str = NOT_LOADED
    reason: str = ""
    entry_point: EntryPoint | None = field(default=None, repr=False, compare=False)

    @property
    def usable(self) -> bool:
        """Whether loading may be tried: disabled and duplicate entries are never imported."""
        return self.status not in (DISABLED, DUPLICATE)


# (distribution, name, value) -> (status, reason, class or None); see clear_cache().
_cache: dict[tuple[str, str, str], tuple[str, str, type | None]] = {}


def clear_cache() -> None:
    """Forget loaded plugins, so that tests can load a fresh set of fakes."""
    _cache.clear()


def _normalize(distribution: str) -> str:
    """PEP 503 normal form, so ``My_Plugin`` and ``my-plugin`` name one distribution."""
    return re.sub(r"[-_.]+", "-", distribution).lower()


def _allowed() -> set[str] | None:
    """The names ``GANZOO_PLUGINS`` allows, or None when it is unset (allow all)."""
    raw = os.environ.get(ENV_VAR)
    if raw is None:
        return None
    return {item.strip() for item in raw.split(",") if item.strip()}


def _is_allowed(entry: PluginEntry, allowed: set[str] | None) -> bool:
    if allowed is None:
        return True
    allowed_distributions = {_normalize(item) for item in allowed}
    return entry.name in allowed or _normalize(entry.distribution) in allowed_distributions


def _disabled_reason() -> str:
    raw = os.environ.get(ENV_VAR, "")
    if not raw.strip():
        return f"{ENV_VAR} is set but empty, which disables all plugins"
    return f"not listed in {ENV_VAR}={raw!r}"


def _precedence(entry: PluginEntry) -> tuple[bool, str, str, str]:
    """Built-ins first, then by distribution and entry-point name: collisions resolve the same way everywhere."""
    distribution = _normalize(entry.distribution)
    return (distribution != BUILTIN_DISTRIBUTION, distribution, entry.name, entry.value)


def _entry_from(ep: EntryPoint) -> PluginEntry:
    dist = getattr(ep, "dist", None)
    return PluginEntry(
        name=ep.name,
        value=ep.value,
        distribution=dist.name if dist is not None else "",
        version=(dist.version or "") if dist is not None else "",
        entry_point=ep,
    )


def discover() -> list[PluginEntry]:
    """Every declared architecture, in precedence order, from metadata alone.

    Statuses are "not loaded", "disabled" (by ``GANZOO_PLUGINS``) or "duplicate"
    (an enabled entry earlier in precedence took the name). Disabled entries
    claim no name, so allowing a third-party distribution can replace a built-in.
    """
    entries = sorted((_entry_from(ep) for ep in entry_points(group=ENTRY_POINT_GROUP)), key=_precedence)
    allowed = _allowed()
    owners: dict[str, PluginEntry] = {}
    for entry in entries:
        if not _is_allowed(entry, allowed):
            entry.status, entry.reason = DISABLED, _disabled_reason()
        elif entry.name in owners:
            owner = owners[entry.name]
            entry.status = DUPLICATE
            entry.reason = f"name {entry.name!r} is already taken by distribution {owner.distribution} {owner.version}"
        else:
            owners[entry.name] = entry
    return entries


def one_line(exc: BaseException) -> str:
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _check(entry: PluginEntry, obj: object) -> tuple[str, str]:
    """Status and reason for what an entry point named: is it an Architecture we can use?"""
    if not (isinstance(obj, type) and issubclass(obj, Architecture)):
        kind = "class" if isinstance(obj, type) else type(obj).__name__
        return BAD_PLUGIN, f"{entry.value} is a {kind}, not a subclass of ganzoo.api.Architecture"
    declared = getattr(obj, "api_version", None)
    if declared != API_VERSION:
        return API_MISMATCH, f"plugin declares api_version {declared!r}, this ganzoo provides API_VERSION {API_VERSION}"
    missing = [attr for attr in REQUIRED_ATTRIBUTES if not hasattr(obj, attr)]
    if missing:
        return BAD_PLUGIN, f"{entry.value} lacks {', '.join(missing)}"
    if not dataclasses.is_dataclass(obj.Config):
        return BAD_PLUGIN, f"{entry.value}.Config is not a dataclass"
    if obj.name != entry.name:
        return BAD_PLUGIN, f"{entry.value} has name {obj.name!r}, but its entry point is named {entry.name!r}"
    return OK, ""


def _import(entry: PluginEntry) -> tuple[str, str, type | None]:
    """Import and check one plugin; any exception a plugin raises becomes a status, never a crash."""
    ep = entry.entry_point or EntryPoint(entry.name, entry.value, ENTRY_POINT_GROUP)
    try:
        obj = ep.load()
    except Exception as exc:  # a plugin may fail in any way; isolate it
        return IMPORT_ERROR, one_line(exc), None
    status, reason = _check(entry, obj)
    return status, reason, obj if status == OK else None


def load(entry: PluginEntry) -> type[Architecture] | None:
    """The entry's Architecture class, or None when it cannot be used.

    Imports the plugin (once per process), sets ``entry.status`` and
    ``entry.reason``, and never raises. Disabled and duplicate entries are
    not imported.
    """
    if not entry.usable:
        return None
    key = (entry.distribution, entry.name, entry.value)
    if key not in _cache:
        _cache[key] = _import(entry)
    entry.status, entry.reason, cls = _cache[key]
    return cls


def load_all() -> list[PluginEntry]:
    """Every entry with its final status, for ``ganzoo list``; one broken plugin stops nothing."""
    entries = discover()
    for entry in entries:
        load(entry)
    return entries


def _unknown(name: str, entries: list[PluginEntry]) -> UserError:
    """An error for a name nobody declared, with a close match and the names there are."""
    available = sorted({e.name for e in entries if e.usable})
    if not available:
        hint = f"no architectures are enabled ({ENV_VAR} may exclude them)" if entries else "no architectures are installed"
        return UserError(f"unknown architecture {name!r}: {hint}")
    message = f"unknown architecture {name!r}"
    close = difflib.get_close_matches(name, available, n=1)
    if close:
        message += f"; did you mean {close[0]!r}?"
    return UserError(f"{message} (available: {', '.join(available)})")


def get(name: str) -> Architecture:
    """An instance of the architecture called ``name``, importing only that plugin.

    Raises UserError when no plugin declares the name, or when the one that
    does is disabled, failed to import, or is not a usable Architecture.
    """
    return get_with_entry(name)[0]


def get_with_entry(name: str) -> tuple[Architecture, PluginEntry]:
    """Like get(), with the entry that says which distribution and version provide it."""
    entries = discover()
    candidates = [e for e in entries if e.name == name]
    if not candidates:
        raise _unknown(name, entries)
    entry = next((e for e in candidates if e.usable), candidates[0])
    cls = load(entry)
    if cls is None:
        raise UserError(
            f"architecture {name!r} from {entry.distribution} {entry.version} cannot be used "
            f"({entry.status}): {entry.reason}"
        )
    return cls(), entry


__all__ = [
    "ENV_VAR",
    "PluginEntry",
    "clear_cache",
    "discover",
    "get",
    "get_with_entry",
    "load",
    "load_all",
]
