"""Commands that plugins contribute through ``Architecture.commands()``, seen from the real `ganzoo` script.

A fake installed distribution (dist-info and module on PYTHONPATH) adds a
command, tries to take one of ganzoo's own names, and another plugin's
``commands()`` fails; StyleGAN-lite's `style-mix` comes the same way.
"""

from __future__ import annotations

import pytest
from helpers import ganzoo
from test_registry import install

PLUGIN = '''
from dataclasses import dataclass

import click

from ganzoo.api import Architecture
from ganzoo.errors import UserError


@click.command("hello")
@click.argument("who")
def hello(who):
    """Greet WHO (a command from a plugin)."""
    if who == "nobody":
        raise UserError("there is nobody to greet")
    click.echo(f"hello {who}")


@click.command("train")
def hijack():
    """Not ganzoo's train."""
    click.echo("hijacked")


class Greeter(Architecture):
    name = "gzcmd-greeter"
    summary = "a plugin with commands"

    @dataclass
    class Config:
        batch_size: int = 4

    def commands(self):
        return [hello, hijack]


class Failing(Architecture):
    name = "gzcmd-failing"
    summary = "a plugin whose commands() raises"

    @dataclass
    class Config:
        batch_size: int = 4

    def commands(self):
        raise RuntimeError("no commands today")
'''


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    site = tmp_path_factory.mktemp("site")
    install(site, "gzcmd-plugin", "1.0", {"gzcmd-greeter": "gzcmd_plugin:Greeter", "gzcmd-failing": "gzcmd_plugin:Failing"},
            {"gzcmd_plugin": PLUGIN})
    install(site, "gzcmd-broken", "0.1", {"gzcmd-broken": "gzcmd_broken:Plugin"},
            {"gzcmd_broken": "raise ImportError('gzcmd_broken needs libfoo')\n"})
    return {"PYTHONPATH": str(site)}


def test_help_lists_plugin_commands_beside_ganzoos_own(env):
    result = ganzoo("--help", env=env)
    assert result.returncode == 0, result.stderr
    commands = [line.split()[0] for line in result.stdout.split("Commands:")[1].splitlines() if line.strip()]
    assert {"hello", "style-mix", "train", "sample", "list"} <= set(commands)
    assert commands.count("train") == 1


def test_a_plugin_command_runs_and_its_user_errors_are_one_line(env):
    ok = ganzoo("hello", "world", env=env)
    assert ok.returncode == 0 and ok.stdout == "hello world\n", ok.stderr
    bad = ganzoo("hello", "nobody", env=env)
    assert bad.returncode == 1 and bad.stderr == "Error: there is nobody to greet\n"


def test_a_taken_name_stays_ganzoos_and_list_says_what_was_left_out(env):
    train = ganzoo("train", "--help", env=env)
    assert train.returncode == 0 and "Train ARCH" in train.stdout and "hijacked" not in train.stdout
    listing = ganzoo("list", env=env)
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert "commands from plugins: ganzoo hello (gzcmd-greeter), ganzoo style-mix (stylegan-lite)" in lines
    assert "not mounted: gzcmd-greeter (gzcmd-plugin 1.0): command 'train': the name is ganzoo's own command" in lines
    assert ("not mounted: gzcmd-failing (gzcmd-plugin 1.0): commands() failed: RuntimeError: no commands today"
            in lines)
    broken = next(line for line in lines if line.startswith("gzcmd-broken "))
    assert "import error" in broken and "gzcmd_broken needs libfoo" in broken  # no commands, and the reason


def test_a_plugin_left_out_by_ganzoo_plugins_contributes_no_command(env):
    only_dcgan = {**env, "GANZOO_PLUGINS": "dcgan"}
    result = ganzoo("--help", env=only_dcgan)
    assert result.returncode == 0 and "style-mix" not in result.stdout and "hello" not in result.stdout
    missing = ganzoo("style-mix", "runs/x", env=only_dcgan)
    assert missing.returncode == 2 and "No such command 'style-mix'" in missing.stderr
    with_stylegan = ganzoo("--help", env={**env, "GANZOO_PLUGINS": "stylegan-lite"})
    assert "style-mix" in with_stylegan.stdout and "hello" not in with_stylegan.stdout
