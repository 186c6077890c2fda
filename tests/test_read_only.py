"""A run folder that cannot be written: `sample`, `export` and `train --resume` each say so in one line, up front.

Permissions do not stop root, and these tests (and CI) may run as root. So the
folder is made read-only in a way that holds for whoever runs the CLI: for a
plain user, ``chmod a-w``; for root, a read-only bind mount over the folder in a
private mount namespace (``unshare --mount``) that lives only as long as the
one ``ganzoo`` process, so nothing needs undoing. A control test shows that the
CLI's process really cannot write there.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import SMOKE, invoke

GANZOO = str(Path(sys.executable).with_name("ganzoo"))
MOUNT_READ_ONLY = 'mount --bind -o ro "$1" "$1" || exit 99; shift; exec "$@"'


def _root_can_mount() -> str | None:
    """None if a private read-only bind mount works here, else why not."""
    if shutil.which("unshare") is None:
        return "running as root, and unshare (util-linux) is missing"
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", MOUNT_READ_ONLY, "sh",
                            "/", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"running as root, and a read-only bind mount is not allowed here: {probe.stderr.strip()}"
    return None


def run_in_read_only(folder: Path, *argv) -> subprocess.CompletedProcess:
    """``argv`` run with ``folder`` (and all it holds) unwritable for it."""
    argv = [str(a) for a in argv]
    if os.geteuid() == 0:
        reason = _root_can_mount()
        if reason:
            pytest.skip(reason)
        return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", MOUNT_READ_ONLY, "sh",
                               str(folder), *argv], capture_output=True, text=True)
    modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")]}
    try:
        for path, mode in modes.items():
            os.chmod(path, mode & ~0o222)
        return subprocess.run(argv, capture_output=True, text=True)
    finally:
        for path, mode in modes.items():
            os.chmod(path, mode)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run = tmp_path_factory.mktemp("read-only") / "run"
    result = invoke("train", "dcgan", *SMOKE, "--steps", 2, "--batch-size", 8, "--out", run)
    assert result.exit_code == 0, result.output
    return run


def test_the_cli_really_cannot_write_the_folder(run):
    result = run_in_read_only(run, "sh", "-c", 'touch "$0/probe"', run)
    assert result.returncode != 0 and not (run / "probe").exists()
    assert stat.S_ISDIR(run.stat().st_mode)


def test_sample_says_the_run_folder_is_read_only_and_suggests_out(run, tmp_path):
    before = snapshot(run)
    line = one_error_line(run_in_read_only(run, GANZOO, "sample", run, "--n", 4))
    assert str(run / "samples") in line and "--out" in line
    assert snapshot(run) == before
    elsewhere = tmp_path / "grid.png"
    result = run_in_read_only(run, GANZOO, "sample", run, "--n", 4, "--out", elsewhere)
    assert result.returncode == 0, result.stderr
    assert elsewhere.stat().st_size > 0


def test_export_says_the_run_folder_is_read_only_and_suggests_out(run):
    before = snapshot(run)
    line = one_error_line(run_in_read_only(run, GANZOO, "export", run))
    assert str(run / "export") in line and "--out" in line
    assert snapshot(run) == before


def test_resume_names_the_read_only_run_folder(run):
    before = snapshot(run)
    line = one_error_line(run_in_read_only(run, GANZOO, "train", "dcgan", "--resume", run, "--steps", 4))
    assert f"cannot write to {run}:" in line
    assert snapshot(run) == before
