"""Training reads prepared data: prepared once on first use, memory-mapped after, shared by ranks (issue 24).

A folder given to --data is decoded once into the prepared-data cache; every
later run, resume and rank reads that copy. Shown for real: after the first
run the source images are spoiled in a way the data fingerprint cannot see
(same size, same modification time), so anything that decoded them again would
fail, and nothing does. Memory: a process's private memory stays flat when the
dataset grows eight-fold (the decoded array it used to hold would add 172 MB).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers import SMOKE, ganzoo, image_folder

from ganzoo.bench.process_memory import MemorySampler
from ganzoo.data.prepared import is_prepared, write_synthetic
from test_read_only import run_in_read_only

GANZOO = str(Path(sys.executable).with_name("ganzoo"))


def _spoil_unseen(folder: Path) -> None:
    """Every image's bytes zeroed, its size and modification time kept: the fingerprint does not change."""
    for path in folder.rglob("*.png"):
        info = path.stat()
        path.write_bytes(b"\0" * info.st_size)
        os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))


def _prepared(home: Path) -> list[Path]:
    return sorted(p for p in home.iterdir() if is_prepared(p)) if home.is_dir() else []


def test_a_folder_is_prepared_once_then_runs_resumes_and_ranks_decode_nothing(tmp_path):
    data = image_folder(tmp_path / "data", n=16)
    env = {"GANZOO_PREPARED": str(tmp_path / "prepared")}
    first = ganzoo("train", "dcgan", *SMOKE, "--data", data, "--steps", 1, "--out", tmp_path / "a", env=env)
    assert first.returncode == 0, first.stderr
    assert len(_prepared(tmp_path / "prepared")) == 1

    _spoil_unseen(data)
    again = ganzoo("train", "dcgan", *SMOKE, "--data", data, "--steps", 1, "--out", tmp_path / "b", env=env)
    assert again.returncode == 0, again.stderr
    resumed = ganzoo("train", "dcgan", "--resume", tmp_path / "a", "--steps", 2, env=env)
    assert resumed.returncode == 0, resumed.stderr
    ranks = ganzoo("train", "dcgan", *SMOKE, "--data", data, "--steps", 1, "--nproc-per-node", 2,
                   "--out", tmp_path / "c", env=env, timeout=300)
    assert ranks.returncode == 0, ranks.stderr
    assert len(_prepared(tmp_path / "prepared")) == 1

    # The control: the spoiled files really cannot be decoded, so a copy at another size fails on them.
    other = ganzoo("train", "dcgan", *SMOKE, "--data", data, "--set", "resolution=64", "--steps", 1,
                   "--out", tmp_path / "d", env=env)
    assert other.returncode == 1 and "cannot read image" in other.stderr, other.stderr


def test_changed_data_is_prepared_afresh_not_mixed_with_the_old_copy(tmp_path):
    data = image_folder(tmp_path / "data", n=12)
    env = {"GANZOO_PREPARED": str(tmp_path / "prepared")}
    assert ganzoo("train", "dcgan", *SMOKE, "--data", data, "--steps", 1, "--out", tmp_path / "a",
                  env=env).returncode == 0
    image_folder(tmp_path / "data" / "more", n=4, seed=1)
    second = ganzoo("train", "dcgan", *SMOKE, "--data", data, "--steps", 1, "--out", tmp_path / "b", env=env)
    assert second.returncode == 0, second.stderr
    assert "16 images" in second.stdout, second.stdout
    assert len(_prepared(tmp_path / "prepared")) == 2


def _peak_private_memory(data: Path, out: Path) -> int:
    command = [GANZOO, "train", "dcgan", *SMOKE, "--data", str(data), "--set", "resolution=128", "--set",
               "channels=3", "--steps", "3", "--sample-every", "100", "--checkpoint-every", "100", "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with MemorySampler(process.pid, interval=0.02) as sampler:
        _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    return sampler.peak_anon


def test_private_memory_does_not_grow_with_the_dataset(tmp_path):
    small = write_synthetic(tmp_path / "small", 500, 3, 128)
    large = write_synthetic(tmp_path / "large", 4000, 3, 128)
    decoded_difference = 3500 * 3 * 128 * 128  # 172 MB: what holding the decoded images would add
    grown = _peak_private_memory(large, tmp_path / "b") - _peak_private_memory(small, tmp_path / "a")
    assert grown < 0.2 * decoded_difference, f"private memory grew {grown / 1e6:.0f} MB"


def test_a_prepared_dataset_is_named_directly_and_its_size_must_match(tmp_path):
    prepared = write_synthetic(tmp_path / "ready", 40, 1, 32)
    direct = ganzoo("train", "dcgan", *SMOKE, "--data", prepared, "--steps", 1, "--out", tmp_path / "a")
    assert direct.returncode == 0, direct.stderr
    assert "40 images" in direct.stdout
    by_name = ganzoo("train", "dcgan", *SMOKE, "--data", "ready", "--steps", 1, "--out", tmp_path / "b",
                     env={"GANZOO_PREPARED": str(tmp_path)})
    assert by_name.returncode == 0, by_name.stderr
    wrong = ganzoo("train", "dcgan", *SMOKE, "--data", prepared, "--set", "resolution=64", "--steps", 1,
                   "--out", tmp_path / "c")
    assert wrong.returncode == 1
    assert wrong.stderr.strip() == (f"Error: prepared dataset {prepared} holds 32x32x1 images; this config needs "
                                    "64x64x1: prepare it again with --resolution 64 --channels 1, or pass its "
                                    "source")
    assert not (tmp_path / "c").exists()


def test_a_changed_shard_stops_the_run_naming_the_file(tmp_path):
    prepared = write_synthetic(tmp_path / "ready", 40, 1, 32)
    shard = prepared / "images-00000.u8"
    with open(shard, "r+b") as f:
        f.seek(100)
        f.write(b"\x01\x02")
    result = ganzoo("train", "dcgan", *SMOKE, "--data", prepared, "--steps", 1, "--out", tmp_path / "a")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"Error: {shard} changed since it was prepared" in result.stderr
    os.truncate(shard, 1000)
    result = ganzoo("train", "dcgan", *SMOKE, "--data", prepared, "--steps", 1, "--out", tmp_path / "a")
    assert f"Error: {shard} is truncated: 1,000 bytes" in result.stderr


def test_prepared_data_on_a_read_only_mount_trains(tmp_path):
    prepared = write_synthetic(tmp_path / "ready", 40, 1, 32)
    result = run_in_read_only(prepared, GANZOO, "train", "dcgan", *SMOKE, "--data", str(prepared), "--steps", "2",
                              "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "run" / "checkpoints" / "step-0000002").is_dir()


def test_a_dataset_the_disk_cannot_hold_is_refused_before_decoding(tmp_path):
    """Images small enough to decode one at a time, too many for the free disk: one error, nothing prepared."""
    import math
    import shutil

    import pytest

    from ganzoo.api import IMAGES, DataSpec
    from ganzoo.data import load_data
    from ganzoo.data.memory import available_memory
    from ganzoo.errors import UserError

    side = math.isqrt(available_memory() // 4)
    count = shutil.disk_usage(tmp_path).free // (side * side) + 2
    folder = image_folder(tmp_path / "data", n=count, size=8)
    with pytest.raises(UserError) as raised:
        load_data(folder, DataSpec(IMAGES, side, 1))
    message = str(raised.value)
    assert message.startswith(f"folder {folder}: {count:,} images prepared at {side}x{side}x1 take "), message
    assert "of disk, more than the" in message and "GANZOO_PREPARED" in message
    home = Path(os.environ["GANZOO_PREPARED"])
    assert not [p.name for p in home.iterdir() if f"-{side}px-" in p.name]  # no copy, no working folder


def test_evaluation_reads_only_the_real_images_it_compares_with(tmp_path):
    """The real images of an evaluation stay on disk until its n are chosen; the same n as from memory."""
    from ganzoo.data.prepared import open_prepared
    from ganzoo.metrics.evaluate import real_subset
    from ganzoo.metrics.sources import real_images

    folder = write_synthetic(tmp_path / "ready", 300, 3, 32)
    lazy = real_images(str(folder), 32, 3)
    assert not isinstance(lazy, __import__("numpy").ndarray) and len(lazy) == 300
    whole = open_prepared(folder).domains["images"].numpy()
    picked = real_subset(lazy, 50, seed=3)
    assert picked.shape == (50, 3, 32, 32) and (picked == real_subset(whole, 50, seed=3)).all()
    assert (real_subset(lazy, 300, seed=3) == whole).all()


def test_new_labels_in_dataset_json_are_new_data(tmp_path):
    """A stylegan2-ada folder whose dataset.json changed gets another fingerprint, so another prepared copy
    (with the new labels) and a refused resume, as changed images do."""
    import json

    from ganzoo.api import IMAGES, DataSpec
    from ganzoo.data import load_data
    from ganzoo.data.fingerprint import fingerprint_data

    folder = image_folder(tmp_path / "data", n=6)
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png"))
    spec = DataSpec(IMAGES, 32, 3)
    (folder / "dataset.json").write_text(json.dumps({"labels": [[name, 0] for name in names]}))
    before = fingerprint_data(str(folder), spec)
    assert load_data(folder, spec).labels.tolist() == [0] * 6
    (folder / "dataset.json").write_text(json.dumps({"labels": [[name, 10] for name in names]}))
    assert fingerprint_data(str(folder), spec) != before
    assert load_data(folder, spec).labels.tolist() == [10] * 6
