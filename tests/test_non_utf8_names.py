"""Data files whose names are not UTF-8: names are bytes on Linux, and such a file trains like any other.

On main the data fingerprint raised UnicodeEncodeError (a traceback) for any such name, with or without
--skip-bad-files; before the fingerprint existed these folders trained. Messages show the name's bytes as
\\xNN escapes, config.json stays valid UTF-8 JSON, and a resume compares the same bytes.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from helpers import SMOKE, ganzoo

STEPS = ["--steps", 1, "--batch-size", 4, "--sample-every", 100]


def named(folder: Path, raw: bytes) -> Path:
    """The path of a file in ``folder`` whose name is the bytes ``raw`` (as os.listdir would return it)."""
    return folder / os.fsdecode(raw)


def shown(path: Path) -> str:
    """How a message must show ``path``: its bytes, UTF-8 where they are, \\xNN where they are not."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def images(folder: Path, names: list[bytes], seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for raw in names:
        path = named(folder, raw)
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(path, format="PNG")
        paths.append(path)
    return paths


def run_ok(*args, **kwargs):
    result = ganzoo(*args, timeout=300, **kwargs)  # text=True: any output that is not UTF-8 fails here too
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result


def one_error(result) -> list[str]:
    assert result.returncode == 1 and result.stderr.startswith("Error: "), result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr.splitlines()


def test_a_folder_with_names_that_are_not_utf8_trains_resumes_and_notices_a_rename(tmp_path):
    data = tmp_path / os.fsdecode(b"photos-\xe9t\xe9")  # latin-1 "photos-ete": the folder's own name too
    images(data, [b"\xff\xfe.png", b"caf\xe9.png", b"ok-1.png", b"ok-2.png", "sch\u00f6n.png".encode()])
    run = tmp_path / "run"
    first = run_ok("train", "dcgan", *SMOKE, *STEPS, "--data", data, "--out", run)
    assert f"5 images from {shown(data).rsplit('/', 1)[1]} at" in first.stdout
    text = (run / "config.json").read_bytes().decode("utf-8")  # strict: valid UTF-8
    assert json.loads(text)["data"] == str(data)  # the name comes back as the same bytes
    run_ok("train", "dcgan", *SMOKE, "--resume", run, "--steps", 2)
    named(data, b"\xff\xfe.png").rename(named(data, b"\xfe\xff.png"))  # same count and sizes, other bytes
    refused = one_error(ganzoo("train", "dcgan", *SMOKE, "--resume", run, "--steps", 3, timeout=300))
    assert len(refused) == 1 and "the data" in refused[0] and "changed since this run started" in refused[0]


def test_bad_files_named_in_bytes_are_listed_escaped_and_skipped_on_request(tmp_path):
    data = tmp_path / "data"
    images(data, [b"a.png", b"b.png", b"c.png", b"\xff.png"])
    garbage = named(data, b"bad\xff\xfe.png")
    garbage.write_bytes(b"not an image")
    pipe = named(data, b"pipe\x80.png")
    os.mkfifo(pipe)
    result = ganzoo("train", "dcgan", *SMOKE, *STEPS, "--data", data, "--out", tmp_path / "run", timeout=300)
    lines = one_error(result)
    assert lines[0].startswith("Error: 2 bad image files")
    assert lines[1:] == [f"  cannot read image {shown(garbage)}: cannot identify image file",
                         f"  cannot read image {shown(pipe)}: it is a FIFO (named pipe), "
                         "not a regular file (left unopened)"]
    assert "bad\\xff\\xfe.png" in lines[1] and not (tmp_path / "run").exists()
    skipped = run_ok("train", "dcgan", *SMOKE, *STEPS, "--data", data, "--out", tmp_path / "run", "--skip-bad-files")
    assert f"skipped: cannot read image {shown(garbage)}: cannot identify image file" in skipped.stderr
    assert "2 unreadable file(s) skipped" in skipped.stderr and "4 images from data" in skipped.stdout


def test_unpaired_domains_with_names_that_are_not_utf8(tmp_path):
    data = tmp_path / "pairs"
    images(data / "trainA", [b"\xe0.png", b"a1.png", b"a2.png"], seed=1)
    images(data / "trainB", [b"\xe1\xe2.png", b"b1.png", b"b2.png"], seed=2)
    garbage = named(data / "trainB", b"\xff.png")
    garbage.write_bytes(b"")
    args = ["train", "cyclegan", *SMOKE, "--steps", 1, "--sample-every", 100, "--data", data]
    lines = one_error(ganzoo(*args, "--out", tmp_path / "run", timeout=300))
    assert lines[1:] == [f"  cannot read image {shown(garbage)}: cannot identify image file"]
    result = run_ok(*args, "--out", tmp_path / "run", "--skip-bad-files")
    assert "3 + 3 images from pairs" in result.stdout
    shutil.rmtree(tmp_path / "run")
    garbage.unlink()
    run_ok(*args, "--out", tmp_path / "run")
