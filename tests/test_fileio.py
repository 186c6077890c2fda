"""Atomic writes: whole files, nothing left behind on failure, ordinary permissions kept; refusals in one line."""

import errno
import json
import os
import re
import stat

import pytest

from ganzoo.errors import UserError
from ganzoo.fileio import atomic_write, require_writable, require_writable_file, write_json


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


@pytest.mark.parametrize("mode", [0o600, 0o644, 0o444], ids=oct)
def test_a_replaced_file_keeps_its_mode(tmp_path, mode):
    config = tmp_path / "config.json"
    config.write_text("{}")
    os.chmod(config, mode)
    previous = os.umask(0o077 if mode & 0o044 else 0o022)  # a umask that would give another mode
    try:
        write_json(config, {"a": 1})
    finally:
        os.umask(previous)
    assert stat.S_IMODE(config.stat().st_mode) == mode
    assert json.loads(config.read_text()) == {"a": 1}


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can write a file that another user owns and keep it theirs")
def test_root_hands_a_replaced_file_back_to_its_owner(tmp_path):
    config = tmp_path / "config.json"
    config.write_text("{}")
    os.chown(config, 65534, 65534)
    write_json(config, {"a": 1})
    assert (config.stat().st_uid, config.stat().st_gid) == (65534, 65534)


def test_a_write_the_system_refuses_is_one_user_error_naming_the_path(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    refused = re.escape(f"cannot write {blocker}/sub/x.json: ") + ".*" + re.escape(f"({blocker}")
    with pytest.raises(UserError, match=refused):
        write_json(blocker / "sub" / "x.json", {})  # ENOTDIR from the real filesystem
    folder = tmp_path / "grid.png"
    (folder / "inside").mkdir(parents=True)
    with pytest.raises(UserError, match=re.escape(f"cannot write {folder}: it is a folder")):
        atomic_write(folder, lambda f: f.write(b"png"))
    assert (folder / "inside").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "grid.png"]


def test_a_full_disk_mid_write_names_the_path_and_keeps_the_old_file(tmp_path):
    # injected: a real ENOSPC needs a small filesystem, which a test cannot mount without privileges
    target = tmp_path / "metrics.json"
    target.write_text("old")

    def full(f):
        f.write(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(UserError, match=re.escape(f"cannot write {target}: No space left on device") + "$"):
        atomic_write(target, full)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_require_writable_judges_a_missing_folder_by_the_one_above_and_leaves_nothing(tmp_path):
    require_writable(tmp_path / "will" / "be" / "made", "hint")
    require_writable(tmp_path, "hint")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(UserError, match=re.escape(f"cannot write to {tmp_path}/a-file/out: not a folder "
                                                  f"({tmp_path}/a-file); pass --out elsewhere") + "$"):
        require_writable(tmp_path / "a-file" / "out", "pass --out elsewhere")
    with pytest.raises(UserError, match="it is a folder; pass --out elsewhere$"):
        require_writable_file(tmp_path, "pass --out elsewhere")
