"""Atomic writes: whole files, nothing left behind on failure, ordinary permissions."""

import os
import stat

import pytest

from ganzoo.fileio import atomic_write, write_json


def test_atomic_files_get_the_permissions_of_a_plain_open(tmp_path):
    previous = os.umask(0o027)
    try:
        write_json(tmp_path / "config.json", {"a": 1})
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("x")
    finally:
        os.umask(previous)
    mode = stat.S_IMODE((tmp_path / "config.json").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == 0o640


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old")

    def fail(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, fail)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
