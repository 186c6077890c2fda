"""The registry against real importlib.metadata discovery of fake installed plugins.

Each test builds ``*.dist-info`` folders and plugin modules in its tmp_path and
puts that folder on sys.path, exactly where an installed plugin would be found.
Names carry a per-test suffix so that the class cache and sys.modules never
leak between tests, and assertions look only at these fake names, so the tests
hold whether or not the real ganzoo distribution is installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from ganzoo import registry
from ganzoo.api import API_VERSION, Architecture
from ganzoo.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[1]


def plugin_class(name: str, *, cls: str = "Plugin", api_version: int | None = None, summary: bool = True) -> str:
    """Source of an Architecture subclass ``cls`` whose ``name`` is ``name``."""
    lines = [f"class {cls}(Architecture):", f"    name = {name!r}"]
    if summary:
        lines.append("    summary = 'a fake architecture for registry tests'")
    if api_version is not None:
        lines.append(f"    api_version = {api_version}")
    lines += ["    @dataclass", "    class Config:", "        batch_size: int = 4"]
    return "\n".join(lines) + "\n"


def plugin_source(*classes: str, origin: str = "") -> str:
    """A tiny plugin module holding ``classes``; ``ORIGIN`` tells tests which module won."""
    header = ["from dataclasses import dataclass", "from ganzoo.api import Architecture", f"ORIGIN = {origin!r}"]
    return "\n".join(header) + "\n" + "".join(classes)


def install(site: Path, distribution: str, version: str, entries: dict[str, str], modules: dict[str, str]) -> None:
    """Write an installed distribution (dist-info with entry points) and its modules into ``site``."""
    info = site / f"{distribution.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\nSummary: fake plugin for tests\n"
    )
    lines = ["[ganzoo.architectures]"] + [f"{name} = {value}" for name, value in entries.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for module, source in modules.items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch):
    """Every test starts with an empty class cache and GANZOO_PLUGINS unset."""
    monkeypatch.delenv(registry.ENV_VAR, raising=False)
    registry.clear_cache()
    yield
    registry.clear_cache()


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A fresh site directory on sys.path; fake modules imported from it are dropped afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for module in [m for m in sys.modules if m.startswith("gzfake_")]:
        del sys.modules[module]


@pytest.fixture
def zoo(site):
    """A healthy plugin next to every kind of broken one, each under a unique name."""
    uid = uuid.uuid4().hex[:8]
    n = SimpleNamespace(uid=uid, site=site)
    for role in ("good", "importerr", "syntaxerr", "future", "notarch", "misnamed", "incomplete", "dup"):
        setattr(n, role, f"fake{role}_{uid}")
    for role in ("good", "broken", "future", "bad", "aaa", "zzz"):
        setattr(n, f"{role}_dist", f"gzfake-{role}-{uid}")
    mod = f"gzfake_{uid}"
    n.modules = [f"{mod}_{part}" for part in ("good", "importerr", "syntaxerr", "future", "bad", "aaa", "zzz")]

    # zzz is written first: precedence must not depend on the order on disk.
    install(site, n.zzz_dist, "2.0", {n.dup: f"{mod}_zzz:Plugin"}, {f"{mod}_zzz": plugin_source(plugin_class(n.dup), origin="zzz")})
    install(site, n.good_dist, "1.0", {n.good: f"{mod}_good:Plugin"}, {f"{mod}_good": plugin_source(plugin_class(n.good))})
    install(
        site,
        n.broken_dist,
        "0.1",
        {n.importerr: f"{mod}_importerr:Plugin", n.syntaxerr: f"{mod}_syntaxerr:Plugin"},
        {
            f"{mod}_importerr": "raise ImportError('needs libfoo,\\n which is missing')\n",
            f"{mod}_syntaxerr": "def broken(:\n    pass\n",
        },
    )
    install(site, n.future_dist, "9.0", {n.future: f"{mod}_future:Plugin"}, {f"{mod}_future": plugin_source(plugin_class(n.future, api_version=999))})
    bad_source = plugin_source(
        plugin_class("somethingelse", cls="Misnamed"),
        plugin_class(n.incomplete, cls="Incomplete", summary=False),
    ) + "NOT_AN_ARCHITECTURE = 42\n"
    install(
        site,
        n.bad_dist,
        "0.3",
        {
            n.notarch: f"{mod}_bad:NOT_AN_ARCHITECTURE",
            n.misnamed: f"{mod}_bad:Misnamed",
            n.incomplete: f"{mod}_bad:Incomplete",
        },
        {f"{mod}_bad": bad_source},
    )
    install(site, n.aaa_dist, "1.5", {n.dup: f"{mod}_aaa:Plugin"}, {f"{mod}_aaa": plugin_source(plugin_class(n.dup), origin="aaa")})
    return n


def fake_entries(entries, uid):
    """Only the entries these tests made, whatever else is installed."""
    return [e for e in entries if e.name.endswith(uid)]


def by_name(entries, uid):
    """Fake entries by name; a duplicated name maps to its entries in precedence order."""
    out = {}
    for e in fake_entries(entries, uid):
        out.setdefault(e.name, []).append(e)
    return {name: found[0] if len(found) == 1 else found for name, found in out.items()}


# Listing


def test_discover_reads_metadata_without_importing_plugins(zoo):
    entries = by_name(registry.discover(), zoo.uid)

    assert set(entries) == {zoo.good, zoo.importerr, zoo.syntaxerr, zoo.future, zoo.notarch, zoo.misnamed, zoo.incomplete, zoo.dup}
    good = entries[zoo.good]
    assert (good.value, good.distribution, good.version, good.status, good.reason) == (
        f"gzfake_{zoo.uid}_good:Plugin", zoo.good_dist, "1.0", "not loaded", ""
    )
    assert not [m for m in zoo.modules if m in sys.modules]


def test_discover_in_a_fresh_process_imports_neither_torch_nor_plugins(zoo):
    code = textwrap.dedent(
        f"""
        import json, sys
        import ganzoo.registry
        names = [e.name for e in ganzoo.registry.discover()]
        imported = [m for m in ["torch"] + {zoo.modules!r} if m in sys.modules]
        print(json.dumps({{"names": names, "imported": imported}}))
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(zoo.site), str(REPO_ROOT)])}
    env.pop(registry.ENV_VAR, None)
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    report = json.loads(result.stdout)

    assert zoo.good in report["names"] and zoo.importerr in report["names"]
    assert report["imported"] == []


# Loading and statuses


def test_load_all_gives_each_broken_plugin_its_status_and_reason(zoo):
    entries = by_name(registry.load_all(), zoo.uid)

    assert entries[zoo.good].status == "ok"
    importerr = entries[zoo.importerr]
    assert importerr.status == "import error"
    assert importerr.reason == "ImportError: needs libfoo, which is missing"
    assert entries[zoo.syntaxerr].status == "import error"
    assert entries[zoo.syntaxerr].reason.startswith("SyntaxError: ")
    assert "\n" not in entries[zoo.syntaxerr].reason

    future = entries[zoo.future]
    assert future.status == "api mismatch"
    assert "999" in future.reason and f"API_VERSION {API_VERSION}" in future.reason

    notarch = entries[zoo.notarch]
    assert notarch.status == "bad plugin" and "not a subclass of ganzoo.api.Architecture" in notarch.reason
    misnamed = entries[zoo.misnamed]
    assert misnamed.status == "bad plugin"
    assert "'somethingelse'" in misnamed.reason and repr(zoo.misnamed) in misnamed.reason
    incomplete = entries[zoo.incomplete]
    assert incomplete.status == "bad plugin" and incomplete.reason.endswith("lacks summary")


def test_a_healthy_plugin_loads_and_get_works_while_others_are_broken(zoo):
    registry.load_all()  # import the broken ones first: nothing they did may leak into get()

    arch = registry.get(zoo.good)

    assert isinstance(arch, Architecture)
    assert arch.name == zoo.good
    assert arch.make_config({"batch_size": 8}).batch_size == 8


def test_get_imports_only_the_plugin_it_is_asked_for(zoo):
    registry.get(zoo.good)

    assert [m for m in zoo.modules if m in sys.modules] == [f"gzfake_{zoo.uid}_good"]


@pytest.mark.parametrize(
    "role, status, detail",
    [
        ("importerr", "import error", "ImportError: needs libfoo"),
        ("syntaxerr", "import error", "SyntaxError"),
        ("future", "api mismatch", "999"),
        ("notarch", "bad plugin", "not a subclass"),
        ("misnamed", "bad plugin", "somethingelse"),
        ("incomplete", "bad plugin", "lacks summary"),
    ],
)
def test_get_of_a_broken_plugin_is_a_user_error_with_its_reason(zoo, role, status, detail):
    with pytest.raises(UserError) as caught:
        registry.get(getattr(zoo, role))

    message = str(caught.value)
    assert f"({status})" in message and detail in message


def test_load_never_raises_and_caches_until_cleared(zoo):
    entries = by_name(registry.discover(), zoo.uid)

    assert registry.load(entries[zoo.importerr]) is None
    first = registry.load(entries[zoo.good])
    del sys.modules[f"gzfake_{zoo.uid}_good"]
    assert registry.load(entries[zoo.good]) is first  # cached: not imported again

    registry.clear_cache()
    again = registry.load(by_name(registry.discover(), zoo.uid)[zoo.good])
    assert again is not first and again.name == zoo.good


# Name collisions


def test_duplicates_resolve_by_distribution_name_whatever_the_order_on_disk(zoo):
    for _ in range(2):
        winner, loser = by_name(registry.load_all(), zoo.uid)[zoo.dup]
        assert (winner.distribution, winner.status) == (zoo.aaa_dist, "ok")
        assert (loser.distribution, loser.status) == (zoo.zzz_dist, "duplicate")
        assert zoo.aaa_dist in loser.reason
        registry.clear_cache()

    assert sys.modules[type(registry.get(zoo.dup)).__module__].ORIGIN == "aaa"
    assert f"gzfake_{zoo.uid}_zzz" not in sys.modules  # a duplicate is never imported


def test_builtin_distribution_wins_a_name_over_third_parties(site):
    uid = uuid.uuid4().hex[:8]
    name = f"fakebuiltin_{uid}"
    # "aaa" sorts before "ganzoo": only the built-in rule puts ganzoo first.
    install(site, f"aaa-{uid}", "1.0", {name: f"gzfake_{uid}_third:Plugin"}, {f"gzfake_{uid}_third": plugin_source(plugin_class(name), origin="third")})
    install(site, "ganzoo", "0.0.1", {name: f"gzfake_{uid}_builtin:Plugin"}, {f"gzfake_{uid}_builtin": plugin_source(plugin_class(name), origin="builtin")})

    builtin, third = by_name(registry.discover(), uid)[name]

    assert (builtin.distribution, builtin.status) == ("ganzoo", "not loaded")
    assert (third.status, third.reason) == ("duplicate", f"name {name!r} is already taken by distribution ganzoo 0.0.1")
    assert sys.modules[type(registry.get(name)).__module__].ORIGIN == "builtin"


# GANZOO_PLUGINS


def test_allow_list_of_architecture_names_tolerates_whitespace(zoo, monkeypatch):
    monkeypatch.setenv(registry.ENV_VAR, f" {zoo.good} ,{zoo.future} , ")

    entries = by_name(registry.load_all(), zoo.uid)

    assert entries[zoo.good].status == "ok"
    assert entries[zoo.future].status == "api mismatch"
    disabled = [e for e in fake_entries(registry.discover(), zoo.uid) if e.name not in (zoo.good, zoo.future)]
    assert disabled and all(e.status == "disabled" and "GANZOO_PLUGINS" in e.reason for e in disabled)
    assert f"gzfake_{zoo.uid}_importerr" not in sys.modules
    with pytest.raises(UserError, match=r"\(disabled\)"):
        registry.get(zoo.importerr)


def test_allow_list_accepts_distribution_names_in_any_normal_form(zoo, monkeypatch):
    monkeypatch.setenv(registry.ENV_VAR, zoo.broken_dist.upper().replace("-", "_"))

    entries = by_name(registry.load_all(), zoo.uid)

    assert entries[zoo.importerr].status == entries[zoo.syntaxerr].status == "import error"
    assert entries[zoo.good].status == "disabled"
    with pytest.raises(UserError, match=r"\(disabled\)"):
        registry.get(zoo.good)


def test_allowing_a_later_distribution_lets_it_take_a_name(zoo, monkeypatch):
    monkeypatch.setenv(registry.ENV_VAR, zoo.zzz_dist)

    first, second = by_name(registry.load_all(), zoo.uid)[zoo.dup]

    assert (first.distribution, first.status) == (zoo.aaa_dist, "disabled")
    assert (second.distribution, second.status) == (zoo.zzz_dist, "ok")
    assert sys.modules[type(registry.get(zoo.dup)).__module__].ORIGIN == "zzz"


@pytest.mark.parametrize("value", ["", "  "])
def test_empty_allow_list_loads_nothing(zoo, monkeypatch, value):
    monkeypatch.setenv(registry.ENV_VAR, value)

    entries = fake_entries(registry.load_all(), zoo.uid)

    assert entries and all(e.status == "disabled" and "empty" in e.reason for e in entries)
    assert not [m for m in zoo.modules if m in sys.modules]
    with pytest.raises(UserError, match=r"\(disabled\)"):
        registry.get(zoo.good)
    with pytest.raises(UserError, match="no architectures are enabled"):
        registry.get(f"nosuch_{zoo.uid}")


# Unknown names


def test_a_typo_gets_a_did_you_mean(zoo):
    typo = zoo.good.replace("good", "god")

    with pytest.raises(UserError, match=f"unknown architecture '{typo}'; did you mean '{zoo.good}'\\?"):
        registry.get(typo)


def test_an_unknown_name_lists_the_available_ones(zoo):
    with pytest.raises(UserError) as caught:
        registry.get("qqqqqqqqqqqqqqqqqqqq")

    message = str(caught.value)
    assert "did you mean" not in message
    assert "available: " in message and zoo.good in message and zoo.dup in message
