"""Run files that are FIFOs or folders: one Error line (or a damaged checkpoint skipped), never a hang.

On main a FIFO named config.json hung `info`, `sample`, `export` and a resume; a FIFO metrics.jsonl hung a
resume and `info`; a folder named metrics.jsonl was an IsADirectoryError traceback. Run files are now opened
only when they are regular files, as data files already were (ganzoo.fileio.open_regular). Every command
runs in a subprocess with a timeout, so a hang fails the test instead of hanging the suite.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from helpers import SMOKE, ganzoo, run_copy

TIMEOUT = 60  # seconds: a command reading a FIFO would wait for a writer forever
TRAIN = [*SMOKE, "--sample-every", "100", "--checkpoint-every", "1", "--set", "keep_checkpoints=10"]
KINDS = {"fifo": (os.mkfifo, "a FIFO (named pipe)"), "folder": (os.mkdir, "a folder")}


@pytest.fixture
def run(smoke_run, tmp_path):
    """A smoke DCGAN run with checkpoints at steps 1 and 2, both finite (conftest), to change."""
    return run_copy(smoke_run, tmp_path)


def replace_with(path: Path, kind: str) -> str:
    """``path`` becomes a FIFO or a folder; returns the words a message uses for it."""
    path.unlink()
    make, words = KINDS[kind]
    make(path)
    return words


def commands(run: Path, out: Path) -> dict[str, list]:
    return {"info": ["info", run], "sample": ["sample", run, "--n", 4, "--out", out / "s.png"],
            "export": ["export", run, "--out", out / "export"],
            "resume": ["train", "dcgan", *SMOKE, "--resume", run, "--steps", 3]}


def refused(args, expected: str) -> None:
    result = ganzoo(*args, timeout=TIMEOUT)
    assert result.returncode == 1 and result.stderr.strip() == expected, (args, result.stderr)


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_config_json_that_is_not_a_regular_file_is_one_error_for_every_command(run, tmp_path, kind):
    words = replace_with(run / "config.json", kind)
    expected = f"Error: cannot read {run / 'config.json'}: it is {words}, not a regular file (left unopened)"
    for name, args in commands(run, tmp_path).items():
        if kind == "folder" and name != "info":
            continue  # a folder never hung: one command shows the wording
        refused(args, expected)
    assert not (tmp_path / "s.png").exists() and not (tmp_path / "export").exists()


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_metrics_jsonl_that_is_not_a_regular_file_is_one_error_for_info_and_resume(run, tmp_path, kind):
    words = replace_with(run / "metrics.jsonl", kind)
    expected = f"Error: cannot read {run / 'metrics.jsonl'}: it is {words}, not a regular file (left unopened)"
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    for name in ("info", "resume"):
        refused(commands(run, tmp_path)[name], expected)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before  # the resume wrote nothing
    assert ganzoo(*commands(run, tmp_path)["sample"], timeout=TIMEOUT).returncode == 0  # sample never reads it


@pytest.mark.parametrize("name", ["networks.safetensors", "trainer.pt"])
def test_a_checkpoint_file_that_is_a_fifo_is_a_damaged_checkpoint_skipped_with_its_name(run, tmp_path, name):
    step2, step1 = run / "checkpoints" / "step-0000002", run / "checkpoints" / "step-0000001"
    words = replace_with(step2 / name, "fifo")
    why = f"{step2 / name}: it is {words}, not a regular file (left unopened)"
    warning = f"warning: skipping damaged checkpoint step-0000002 ({why}); using {step1}"
    if name == "networks.safetensors":  # --init reads only the networks: the same file, skipped the same way
        result = ganzoo("train", "dcgan", *TRAIN, "--init", run, "--steps", 1, "--out", tmp_path / "new",
                        timeout=TIMEOUT)
        assert result.returncode == 0 and f"warning: skipping {why}; using {step1}" in result.stderr, result.stderr
    for command in ("info", "sample", "resume"):  # the resume last: it writes step 2 again
        result = ganzoo(*commands(run, tmp_path)[command], timeout=TIMEOUT)
        assert result.returncode == 0 and warning in result.stderr, (command, result.stderr)


def test_a_best_link_to_a_fifo_is_no_best_checkpoint(run, tmp_path):
    os.mkfifo(run / "checkpoints" / "step-0000009")
    os.symlink("step-0000009", run / "checkpoints" / "best")
    result = ganzoo("sample", run, "--step", "best", "--out", tmp_path / "b.png", timeout=TIMEOUT)
    assert result.returncode == 1 and result.stderr.startswith(f"Error: {run}: no best checkpoint"), result.stderr


def test_open_regular_refuses_what_is_not_a_regular_file_without_blocking(tmp_path):
    """The shared helper itself: a FIFO (no writer) and a folder are refused at once; a regular file reads."""
    from ganzoo.fileio import NotRegularFile, open_regular, read_regular, sha256_of

    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_bytes(b"data")
    outcome = {}

    def attempt():
        for name in ("pipe", "dir"):
            try:
                open_regular(tmp_path / name)
            except NotRegularFile as error:
                outcome[name] = str(error)
        try:
            sha256_of(tmp_path / "pipe")
        except NotRegularFile as error:
            outcome["sha256"] = str(error)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(TIMEOUT)
    assert not worker.is_alive(), "open_regular blocked on a FIFO"
    assert outcome == {"pipe": f"{tmp_path / 'pipe'}: it is a FIFO (named pipe), not a regular file (left unopened)",
                       "dir": f"{tmp_path / 'dir'}: it is a folder, not a regular file (left unopened)",
                       "sha256": f"{tmp_path / 'pipe'}: it is a FIFO (named pipe), not a regular file (left unopened)"}
    assert read_regular(tmp_path / "file") == b"data"
