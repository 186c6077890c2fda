"""A prepare survives what happens to long jobs: Ctrl-C, SIGKILL, a second prepare at once, a full disk, damage.

Real `ganzoo data prepare` processes on real files: stopped by real signals once their working folder holds
finished shards, then run again (they continue, decoding fewer images, into the very dataset an uninterrupted
prepare makes); two at once (one waits, one dataset); a real full filesystem (a 256 KB tmpfs, mounted in a
user namespace) and a real file-size limit (RLIMIT_FSIZE: write() fails with EFBIG); shards changed or
truncated afterwards (named by `ganzoo data verify` and by the reader); a read-only dataset (opened, gathered).
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import ganzoo

from ganzoo.data.folder import load_folder
from ganzoo.data.prepare import SHARD_BYTES_ENV
from ganzoo.data.prepared import MANIFEST, listed_files, open_prepared
from ganzoo.errors import UserError

EXE = Path(sys.executable).with_name("ganzoo")
COUNT, RESOLUTION, PER_SHARD = 400, 64, 10  # 40 shards of 10 images of 64x64x3
SHARD_ENV = {SHARD_BYTES_ENV: str(PER_SHARD * 3 * RESOLUTION * RESOLUTION)}


@pytest.fixture(scope="module")
def slow_source(tmp_path_factory) -> Path:
    """400 smooth 384x384 PNGs (30 distinct ones, copied): seconds of decoding on two cores."""
    root = tmp_path_factory.mktemp("slow") / "photos"
    rng = np.random.default_rng(0)
    originals = []
    for i in range(30):
        coarse = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
        path = root / f"p{i % 3}" / f"img{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(coarse).resize((384, 384), Image.Resampling.BICUBIC).save(path)
        originals.append(path)
    for i in range(30, COUNT):
        shutil.copyfile(originals[i % 30], root / f"p{i % 3}" / f"img{i:04d}.png")
    (root / "p1" / "img0007.png").write_bytes(b"a bad file among them")
    return root


@pytest.fixture(scope="module")
def reference(slow_source, tmp_path_factory) -> dict:
    """The manifest of an uninterrupted prepare of slow_source."""
    out = tmp_path_factory.mktemp("reference") / "photos"
    result = ganzoo("data", "prepare", slow_source, "--resolution", RESOLUTION, "--out", out, "--skip-bad-files",
                    env=SHARD_ENV, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads((out / MANIFEST).read_text())


def contents(manifest: dict) -> dict:
    """What a dataset holds, without the times it was made: each domain's files (name, size, sha256, count)."""
    return {domain: {"count": entry["count"], "bad": entry["bad"],
                     "labels": entry["labels"] and entry["labels"]["sha256"],
                     "shards": [(s["file"], s["bytes"], s["sha256"], s["count"]) for s in entry["shards"]]}
            for domain, entry in manifest["domains"].items()}


def start(source: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([str(EXE), "data", "prepare", str(source), "--resolution", str(RESOLUTION), "--out",
                             str(out), "--skip-bad-files", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **SHARD_ENV})


def finished_shards(work: Path) -> int:
    try:
        return sum(1 for p in work.iterdir() if re.fullmatch(r"images-\d{5}\.u8", p.name))
    except FileNotFoundError:
        return 0


def wait_for_shards(work: Path, proc: subprocess.Popen, shards: int = 3, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while finished_shards(work) < shards:
        assert proc.poll() is None, f"ended before it could be stopped: {proc.communicate()}"
        assert time.monotonic() < deadline, "no shards appeared"
        time.sleep(0.01)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_an_interrupted_prepare_continues_where_it_stopped(slow_source, reference, tmp_path, sig):
    out = tmp_path / "photos"
    work = tmp_path / ".photos.partial"
    proc = start(slow_source, out)
    wait_for_shards(work, proc)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "stopped by SIGINT" in stderr and "Traceback" not in stderr
        assert f"prepared so far are kept in {work}, and the same command continues from them" in stderr
    else:
        assert proc.returncode == -signal.SIGKILL
    assert not out.exists() and not (work / MANIFEST).exists()  # a half-written dataset is never a dataset
    with pytest.raises(UserError, match="is not a prepared dataset"):
        open_prepared(out)
    # a shard may have landed just before the progress record that lists it: the record is what counts
    recorded = json.loads((work / "progress.json").read_text())["domains"]["images"]
    assert len(recorded["shards"]) >= 2 and finished_shards(work) >= 3

    again = start(slow_source, out)
    stdout, stderr = again.communicate(timeout=300)
    assert again.returncode == 0, stderr
    done = int(re.search(r"continuing an interrupted prepare from .*: ([\d,]+) of ([\d,]+) images already done",
                         stderr).group(1).replace(",", ""))
    decoded = int(re.search(r"decoded ([\d,]+) images", stderr).group(1).replace(",", ""))
    assert done == recorded["next"] >= 2 * PER_SHARD and decoded == COUNT - done  # the rest is not decoded again
    manifest = json.loads((out / MANIFEST).read_text())
    assert contents(manifest) == contents(reference)  # the very dataset an uninterrupted prepare makes
    assert sorted(p.name for p in tmp_path.iterdir()) == [".photos.lock", "photos"]  # the working folder is gone
    assert sorted(p.name for p in out.iterdir()) == sorted([MANIFEST, *(f["file"] for f in listed_files(manifest))])


def test_two_prepares_at_once_make_one_dataset(slow_source, reference, tmp_path):
    out = tmp_path / "photos"
    first = start(slow_source, out)
    wait_for_shards(tmp_path / ".photos.partial", first, shards=1)
    second = start(slow_source, out)
    outputs = [proc.communicate(timeout=300) for proc in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    assert f"waiting for another prepare of {out} to finish (pid {first.pid})" in outputs[1][1]
    assert sum("decoded" in stderr for _, stderr in outputs) == 1  # one of them did the work
    assert all(f"prepared dataset: {out}" in stdout for stdout, _ in outputs)
    assert contents(json.loads((out / MANIFEST).read_text())) == contents(reference)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".photos.lock", "photos"]


@pytest.fixture
def small_dataset(tmp_path) -> Path:
    """20 images in 4 shards of 5, prepared."""
    from helpers import image_folder

    source = image_folder(tmp_path / "source", n=20)
    out = tmp_path / "small"
    result = ganzoo("data", "prepare", source, "--resolution", 16, "--out", out,
                    env={SHARD_BYTES_ENV: str(5 * 3 * 16 * 16)}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert len(open_prepared(out).manifest["domains"]["images"]["shards"]) == 4
    return out


def test_a_shard_changed_or_truncated_afterwards_is_named(small_dataset):
    assert ganzoo("data", "verify", small_dataset).returncode == 0
    truncated, edited, sly = (small_dataset / f"images-0000{i}.u8" for i in (1, 2, 3))
    with open(truncated, "r+b") as f:
        f.truncate(100)
    data = bytearray(edited.read_bytes())
    data[7] ^= 0xFF
    edited.write_bytes(bytes(data))
    times = sly.stat()
    data = bytearray(sly.read_bytes())
    data[0] ^= 0x01
    sly.write_bytes(bytes(data))
    os.utime(sly, ns=(times.st_atime_ns, times.st_mtime_ns))  # the same size and time: only a hash finds it

    result = ganzoo("data", "verify", small_dataset)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0] == f"Error: 3 files differ from {small_dataset / MANIFEST}:"
    assert lines[1].startswith(f"  {truncated} is truncated: 100 bytes, {MANIFEST} says 3,840")
    assert lines[2].startswith(f"  {edited} changed since it was prepared")
    assert lines[3].startswith(f"  {sly} changed since it was prepared")
    with pytest.raises(UserError, match=re.escape(f"{truncated} is truncated")):
        open_prepared(small_dataset)
    with open(truncated, "r+b") as f:
        f.truncate(3840)
    with pytest.raises(UserError, match=re.escape(f"{truncated} changed since it was prepared")):
        open_prepared(small_dataset)


def test_verify_refuses_what_is_not_a_prepared_dataset(tmp_path):
    result = ganzoo("data", "verify", tmp_path)
    assert result.returncode == 1 and "is not a prepared dataset: it has no manifest.json" in result.stderr
    missing = ganzoo("data", "verify", "no-such-name", env={"GANZOO_PREPARED": str(tmp_path)})
    assert missing.returncode == 1 and str(tmp_path / "no-such-name") in missing.stderr


def _limit_file_size(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_a_file_size_limit_is_one_line_and_the_prepare_continues_later(tmp_path):
    from helpers import image_folder

    source = image_folder(tmp_path / "source", n=30)
    out = tmp_path / "small"
    env = {SHARD_BYTES_ENV: str(10 * 3 * 16 * 16)}
    limited = ganzoo("data", "prepare", source, "--resolution", 16, "--out", out, env=env, timeout=120,
                     preexec_fn=_limit_file_size(4096))  # each shard is 7,680 bytes
    work = tmp_path / ".small.partial"
    assert limited.returncode == 1 and "Traceback" not in limited.stderr
    assert limited.stderr.strip().splitlines()[-1] == (
        f"Error: cannot write {work / 'images-00000.u8'}: File too large; no image was prepared yet; the same "
        f"command starts again in {work}")
    assert not out.exists() and sorted(p.name for p in work.iterdir()) == ["progress.json"]  # no partial file
    again = ganzoo("data", "prepare", source, "--resolution", 16, "--out", out, env=env, timeout=120)
    assert again.returncode == 0, again.stderr
    np.testing.assert_array_equal(open_prepared(out).domains["images"].read_all().numpy(), load_folder(source, 16, 3))


def _user_namespaces() -> bool:
    unshare = shutil.which("unshare")
    return bool(unshare) and subprocess.run([unshare, "-rm", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _user_namespaces(), reason="needs unshare -rm (user and mount namespaces) for a real "
                                                   "small filesystem; test_a_file_size_limit_... covers EFBIG")
def test_a_full_disk_is_one_line_and_the_prepare_continues_once_there_is_room(tmp_path):
    """A 256 KB tmpfs, a third of it taken by a filler file: the prepare fills the rest and stops mid-way."""
    from helpers import image_folder

    source = image_folder(tmp_path / "source", n=200)
    disk, copy = tmp_path / "disk", tmp_path / "copy"
    disk.mkdir()
    script = f"""
        mount -t tmpfs -o size=256k tmpfs {disk} || exit 99
        head -c 90000 /dev/zero > {disk}/filler
        {EXE} data prepare {source} --resolution 16 --out {disk}/out; echo "first: $?"
        ls -A {disk}; echo; ls -A {disk}/.out.partial
        rm {disk}/filler
        {EXE} data prepare {source} --resolution 16 --out {disk}/out; echo "second: $?"
        cp -a {disk}/out {copy}
    """
    result = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=300,
                            env={**os.environ, SHARD_BYTES_ENV: str(10 * 3 * 16 * 16)})
    assert result.returncode == 0, result.stderr
    work = disk / ".out.partial"
    full = re.search(rf"Error: cannot write {re.escape(str(work))}/(images-\d+\.u8|progress\.json): No space left on "
                     rf"device; the ([\d,]+) images prepared so far are kept in {re.escape(str(work))}, and the same "
                     "command continues from them\n", result.stderr)
    assert full, result.stderr
    assert "first: 1" in result.stdout and "second: 0" in result.stdout
    listing, partial = result.stdout.split("first: 1\n")[1].split("\n\n")[:2]
    assert "out" not in listing.split() and ".out.partial" in listing.split()  # nothing half-listed
    assert MANIFEST not in partial and ".tmp" not in partial  # no manifest, no half-written file
    kept = int(full.group(2).replace(",", ""))
    assert 0 < kept < 200 and f"continuing an interrupted prepare from {work}: {kept} of 200" in result.stderr
    assert f"decoded {200 - kept} images" in result.stderr
    np.testing.assert_array_equal(open_prepared(copy).domains["images"].read_all().numpy(), load_folder(source, 16, 3))


def test_a_read_only_prepared_dataset_opens_and_gathers(small_dataset, tmp_path):
    expected = open_prepared(small_dataset).domains["images"].read_all()
    for path in [small_dataset, *small_dataset.iterdir()]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        images = open_prepared(small_dataset).domains["images"]
        batch = images.gather(np.array([19, 0, 7, 7]))
        assert batch.equal(expected[[19, 0, 7, 7]])
        batch += 1  # the gathered batch is the caller's own, writable copy; the files stay as they are
        assert ganzoo("data", "verify", small_dataset).returncode == 0
    finally:
        for path in [small_dataset, *small_dataset.iterdir()]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


@pytest.mark.skipif(not _user_namespaces(), reason="needs unshare -rm for a read-only bind mount")
def test_a_prepared_dataset_on_a_read_only_mount_opens_gathers_and_verifies(small_dataset):
    check = ("import numpy as np; from ganzoo.data.prepared import open_prepared; "
             f"d = open_prepared({str(small_dataset)!r}).domains['images']; "
             "print(int(d.gather(np.array([3, 19])).sum()), int(d.read_all()[[3, 19]].sum()))")
    script = f"""
        mount --bind {small_dataset} {small_dataset} && mount -o remount,ro,bind {small_dataset} || exit 99
        touch {small_dataset}/x 2>/dev/null && echo writable
        {sys.executable} -c "{check}" && {EXE} data verify {small_dataset} || exit 1
        {EXE} data prepare {small_dataset.parent / "source"} --resolution 16 --out {small_dataset}/inside
        echo "into it: $?"
    """
    result = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    assert "writable" not in lines
    first, second = lines[0].split()
    assert first == second and "all 5 files match" in result.stdout  # 4 shards and the labels of a/ and b/
    assert "into it: 1" in result.stdout  # a prepare onto the read-only mount: one line, before any decoding
    assert result.stderr.strip() == (f"Error: cannot write to {small_dataset}: Read-only file system; prepare it "
                                     "elsewhere (--out PATH, or $GANZOO_PREPARED for the cache)")
