"""Hostile or odd training data: FIFOs, sockets and devices named *.png, decompression bombs, many bad
files, a run folder inside its data, and data that changed under a run being resumed."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import zlib

import pytest
from PIL import Image

from ganzoo.api import DataSpec
from ganzoo.data import load_data
from ganzoo.data.folder import decode_image, load_folder
from ganzoo.errors import UserError
from ganzoo.runtime.image_files import find_images
from helpers import SMOKE, ganzoo, image_folder, invoke
from test_unpaired import unpaired_folder

DCGAN = ["train", "dcgan", *SMOKE, "--steps", 1, "--batch-size", 4]


def bomb_png(path, side: int = 8000) -> None:
    """A valid grey PNG of side x side black pixels: a few kB on disk, side**2 bytes once decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = zlib.compressobj(9)
    body = b"".join(rows.compress(b"\0" * (side + 1)) for _ in range(side)) + rows.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def special_files(folder) -> dict[str, str]:
    """A FIFO, a unix socket and a character device (a link to /dev/zero), each named like an image.

    Returns name -> the kind the error must name. A closed socket's file stays, still a socket.
    """
    os.mkfifo(folder / "fifo.png")
    cwd = os.getcwd()
    os.chdir(folder)  # a relative bind keeps the path under the 108-byte limit of AF_UNIX
    try:
        with socket.socket(socket.AF_UNIX) as server:
            server.bind("sock.png")
    finally:
        os.chdir(cwd)
    os.symlink("/dev/zero", folder / "zero.png")
    return {"fifo.png": "a FIFO", "sock.png": "a socket", "zero.png": "a character device"}


# --- only regular files are opened ------------------------------------------


def test_fifo_socket_and_device_in_the_data_are_named_never_opened(tmp_path):
    """On main a FIFO named fifo.png blocks training forever in open(); the timeout makes that a failure."""
    data = image_folder(tmp_path / "data", n=6, size=24)
    kinds = special_files(data / "a")
    stopped = ganzoo(*DCGAN, "--data", data, "--out", tmp_path / "run", timeout=60)
    assert stopped.returncode == 1 and "Traceback" not in stopped.stderr
    assert "3 bad image files" in stopped.stderr and "--skip-bad-files" in stopped.stderr
    for name, kind in kinds.items():
        assert f"{data / 'a' / name}: it is {kind}" in stopped.stderr
    assert not (tmp_path / "run").exists()
    skipped = ganzoo(*DCGAN, "--data", data, "--out", tmp_path / "run", "--skip-bad-files", timeout=60)
    assert skipped.returncode == 0, skipped.stderr
    assert "6 images from data" in skipped.stdout
    assert sum(line.startswith("skipped: ") for line in skipped.stderr.splitlines()) == 3


def test_find_images_lists_regular_files_only_and_a_broken_link_is_a_bad_file(tmp_path):
    image_folder(tmp_path / "odd", n=2, size=16)
    special_files(tmp_path / "odd")  # find_images only stats: no hang here even on a regression
    os.symlink(tmp_path / "odd" / "b" / "img000.png", tmp_path / "odd" / "linked.png")  # a link to an image is one
    assert [p.name for p in find_images(tmp_path / "odd")] == ["img001.png", "img000.png", "linked.png"]
    image_folder(tmp_path / "links", n=2, size=16)
    os.symlink("gone.png", tmp_path / "links" / "broken.png")
    with pytest.raises(UserError) as info:
        load_folder(tmp_path / "links", 8, 3)
    assert "1 bad image file" in str(info.value)
    assert f"{tmp_path / 'links' / 'broken.png'}: a broken symbolic link (to gone.png)" in str(info.value)


# --- decompression bombs ----------------------------------------------------


def test_a_bomb_is_named_by_its_declared_size_before_decoding(tmp_path):
    from ganzoo.runtime.image_files import DEFAULT_MAX_PIXELS

    bomb_png(tmp_path / "bomb.png")
    assert (tmp_path / "bomb.png").stat().st_size < 100_000
    with pytest.raises(UserError) as info:
        decode_image(tmp_path / "bomb.png", 32, 1)
    message = str(info.value)
    assert str(tmp_path / "bomb.png") in message and "declares 8000x8000 = 64,000,000 pixels" in message
    assert f"limit of {DEFAULT_MAX_PIXELS:,}" in message and "--set max_image_pixels=N" in message
    # Pillow's own limit is far above: the file is a valid image it would decode.
    assert 8000 * 8000 < Image.MAX_IMAGE_PIXELS and DEFAULT_MAX_PIXELS * 4 < Image.MAX_IMAGE_PIXELS
    assert decode_image(tmp_path / "bomb.png", 32, 1, max_pixels=8000 * 8000).shape == (1, 32, 32)


def test_max_image_pixels_is_a_config_key_that_bounds_training_data(tmp_path):
    data = image_folder(tmp_path / "data", n=4, size=24)  # 24x24 .. 24x32
    small = invoke(*DCGAN, "--data", data, "--out", tmp_path / "small", "--set", "max_image_pixels=600")
    assert small.exit_code == 1 and "2 bad image files" in small.output
    assert "28x24 = 672 pixels, more than the limit of 600" in small.output
    assert not (tmp_path / "small").exists()
    ok = invoke(*DCGAN, "--data", data, "--out", tmp_path / "ok", "--set", "max_image_pixels=768")
    assert ok.exit_code == 0, ok.output
    assert json.loads((tmp_path / "ok" / "config.json").read_text())["train"]["max_image_pixels"] == 768
    bad = invoke(*DCGAN, "--data", data, "--out", tmp_path / "bad", "--set", "max_image_pixels=0")
    assert bad.exit_code == 1 and "max_image_pixels=0: must be at least 1 (from --set)" in bad.output


# --- every bad file in one message ------------------------------------------


def test_every_bad_file_is_listed_in_one_message(tmp_path):
    data = image_folder(tmp_path / "data", n=3, size=16)
    for i in range(25):
        (data / f"bad{i:02d}.png").write_bytes(b"not a png at all")
    result = invoke(*DCGAN, "--data", data, "--out", tmp_path / "run")
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0] == ("Error: 25 bad image files (fix or remove them, or skip them with --skip-bad-files; "
                        "on_bad= in Python):")
    assert [line.split()[3] for line in lines[1:21]] == [f"{data / f'bad{i:02d}.png'}:" for i in range(20)]
    assert lines[21:] == ["  and 5 more"]
    assert not (tmp_path / "run").exists()


def test_bad_files_of_both_domains_are_listed_together(tmp_path):
    data = unpaired_folder(tmp_path / "data", n_a=3, n_b=3, size=30)
    (data / "trainA" / "x.png").write_bytes(b"junk")
    (data / "trainB" / "y.jpg").write_bytes(b"junk")
    with pytest.raises(UserError) as info:
        load_data(data, DataSpec("unpaired", 16, 3))
    assert "2 bad image files" in str(info.value)
    assert str(data / "trainA" / "x.png") in str(info.value) and str(data / "trainB" / "y.jpg") in str(info.value)
    skipped = []
    pair = load_data(data, DataSpec("unpaired", 16, 3), on_bad=skipped.append)
    assert (len(pair.A), len(pair.B), len(skipped)) == (3, 3, 2)


# --- a run inside its own data ----------------------------------------------


def test_a_run_folder_inside_its_data_is_refused(tmp_path, monkeypatch):
    data = image_folder(tmp_path / "data", n=4, size=16)
    inside = invoke(*DCGAN, "--data", data, "--out", data / "runs" / "one")
    assert inside.exit_code == 1
    assert f"run directory {data / 'runs' / 'one'} is inside its data folder {data}" in inside.output
    assert not (data / "runs").exists()
    os.symlink(data, tmp_path / "alias")  # the same folder under another name
    aliased = invoke(*DCGAN, "--data", tmp_path / "alias", "--out", data / "run")
    assert aliased.exit_code == 1 and "is inside its data folder" in aliased.output
    monkeypatch.chdir(data)  # the default runs/ARCH-TIME lands in the data too
    here = invoke(*DCGAN, "--data", ".")
    assert here.exit_code == 1 and f"inside its data folder {data}" in here.output
    assert sorted(p.name for p in data.iterdir()) == ["a", "b"]
    beside = invoke(*DCGAN, "--data", data, "--out", tmp_path / "data-run")  # a shared prefix is not inside
    assert beside.exit_code == 0, beside.output


# --- resume checks the data's fingerprint -----------------------------------


def _resume(run, *extra):
    return invoke("train", "dcgan", "--resume", run, *extra)


def test_resume_refuses_changed_data_unless_allowed(tmp_path):
    data = image_folder(tmp_path / "data", n=8, size=16)
    run = tmp_path / "run"
    assert invoke(*DCGAN, "--data", data, "--out", run, "--checkpoint-every", 1).exit_code == 0
    recorded = json.loads((run / "config.json").read_text())["data_fingerprint"]
    assert recorded["files"] == 8 and len(recorded["sha256"]) == 64

    Image.new("RGB", (16, 16)).save(data / "a" / "new.png")
    added = _resume(run, "--steps", 2)
    assert added.exit_code == 1
    assert added.output.count("\n") == 1 and "8 files then, 9 now" in added.output
    assert f"--data {data}" in added.output and "--allow-data-change" in added.output
    (data / "a" / "new.png").unlink()
    assert _resume(run, "--steps", 2).exit_code == 0  # the same files again: the same fingerprint

    touched = data / "b" / "img000.png"
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    edited = _resume(run, "--steps", 3)
    assert edited.exit_code == 1 and "8 files then and now, but their names, sizes or modification times" \
        in edited.output
    allowed = _resume(run, "--steps", 3, "--allow-data-change")
    assert allowed.exit_code == 0, allowed.output
    now = json.loads((run / "config.json").read_text())["data_fingerprint"]
    assert now["files"] == 8 and now != recorded
    assert _resume(run, "--steps", 4).exit_code == 0  # the new fingerprint was recorded


def test_a_run_from_before_fingerprints_resumes_unchecked_then_records_one(tmp_path):
    data = image_folder(tmp_path / "data", n=8, size=16)
    run = tmp_path / "run"
    assert invoke(*DCGAN, "--data", data, "--out", run).exit_code == 0
    record = json.loads((run / "config.json").read_text())
    del record["data_fingerprint"]
    (run / "config.json").write_text(json.dumps(record))
    Image.new("RGB", (16, 16)).save(data / "a" / "new.png")
    resumed = _resume(run, "--steps", 2)
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((run / "config.json").read_text())["data_fingerprint"]["files"] == 9


def test_two_domain_data_fingerprints_both_domains(tmp_path):
    data = unpaired_folder(tmp_path / "data", n_a=3, n_b=5, size=30)
    run = tmp_path / "run"
    common = ["--data", data, *SMOKE, "--set", "channels=3"]
    assert invoke("train", "cyclegan", *common, "--steps", 1, "--out", run).exit_code == 0
    recorded = json.loads((run / "config.json").read_text())["data_fingerprint"]
    assert (recorded["A"]["files"], recorded["B"]["files"]) == (3, 5)
    (data / "trainB" / "4.png").unlink()
    (data / "testA" / "0.png").unlink()  # not training data: not in the fingerprint
    changed = invoke("train", "cyclegan", "--resume", run, "--steps", 2)
    assert changed.exit_code == 1 and "domain B: 5 files then, 4 now" in changed.output
    assert "domain A" not in changed.output


def test_fingerprints_never_open_a_file_and_the_embedded_one_is_constant(tmp_path):
    from ganzoo.data.fingerprint import fingerprint_data

    (tmp_path / "junk.png").write_bytes(b"never decoded")
    spec = DataSpec("images", 32, 1)
    assert fingerprint_data(tmp_path, spec)["files"] == 1  # the junk is counted, not decoded
    embedded = fingerprint_data(None, spec)
    assert embedded == fingerprint_data("fashion-mnist", spec) and embedded["files"] == 10_000
    pair = fingerprint_data(None, DataSpec("unpaired", 32, 1))
    assert set(pair) == {"A", "B"} and pair["A"] != pair["B"]


def test_an_embedded_run_records_and_passes_its_fingerprint(tmp_path):
    run = tmp_path / "run"
    assert invoke(*DCGAN, "--out", run).exit_code == 0
    assert json.loads((run / "config.json").read_text())["data_fingerprint"]["files"] == 10_000
    assert _resume(run, "--steps", 2).exit_code == 0


def test_a_fingerprint_leaves_fifos_sockets_and_devices_unopened(tmp_path):
    """fingerprint_data in a fresh interpreter, bounded by a timeout, over a folder holding only odd files."""
    special_files(tmp_path)
    code = ("from ganzoo.api import DataSpec; from ganzoo.data.fingerprint import fingerprint_data; "
            f"print(fingerprint_data({str(tmp_path)!r}, DataSpec('images', 8, 1))['files'])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "0", done.stderr
