"""`ganzoo translate` never writes over its inputs, replaces outputs only when asked, and bounds image sizes,
for run directories and exported .onnx models alike."""

from __future__ import annotations

import os
import resource
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import SMOKE, ganzoo, invoke
from test_hostile_data import bomb_png, special_files


@pytest.fixture(scope="module")
def translators(tmp_path_factory):
    """{"run": a cyclegan smoke run directory, "onnx": its exported a2b model}."""
    root = tmp_path_factory.mktemp("translators")
    run = root / "run"
    trained = invoke("train", "cyclegan", *SMOKE, "--steps", 2, "--out", run)
    assert trained.exit_code == 0, trained.output
    exported = invoke("export", run, "--generator", "a2b")
    assert exported.exit_code == 0, exported.output
    return {"run": run, "onnx": run / "export" / "cyclegan-a2b.onnx"}


@pytest.fixture(params=["run", "onnx"])
def translator(request, translators):
    return translators[request.param]


def photos(folder, n: int = 3):
    """n small grey photos, one in a subfolder; returns the folder."""
    rng = np.random.default_rng(0)
    (folder / "sub").mkdir(parents=True)
    for i in range(n):
        name = f"sub/p{i}.png" if i == 0 else f"p{i}.png"
        Image.fromarray(rng.integers(0, 256, (24, 30), dtype=np.uint8)).save(folder / name)
    return folder


def snapshot(folder) -> dict[str, bytes]:
    """Every entry under ``folder`` (hidden temporaries too) and the bytes of each file."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"")
            for p in sorted(folder.rglob("*"))}


def test_translating_a_folder_into_itself_is_refused_and_nothing_is_written(translator, tmp_path):
    inputs = photos(tmp_path / "photos")
    before = snapshot(inputs)
    for extra in ([], ["--overwrite"]):
        result = invoke("translate", translator, inputs, "--out", inputs, "--device", "cpu", *extra)
        assert result.exit_code == 1
        assert result.output.startswith("Error: refusing to write over the input images: ")
        assert f"{inputs / 'sub' / 'p0.png'} is an input" in result.output
        assert snapshot(inputs) == before


def test_an_out_folder_holding_inputs_at_the_written_names_is_refused(translators, tmp_path):
    inputs = photos(tmp_path / "photos")
    # photos/p1.png would be written as photos/sub/p1.png: an input there too.
    Image.fromarray(np.zeros((24, 24), np.uint8)).save(inputs / "sub" / "p1.png")
    before = snapshot(inputs)
    clash = invoke("translate", translators["run"], inputs / "p1.png", inputs / "sub" / "p0.png",
                   "--out", inputs / "sub", "--overwrite", "--device", "cpu")
    assert clash.exit_code == 1 and f"{inputs / 'sub' / 'p0.png'} is an input" in clash.output
    # An output name that is a link to an input, or a second name (hard link) of one, is that input.
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(inputs / "p1.png", out / "p1.png")
    os.link(inputs / "p2.png", out / "p2.png")
    linked = invoke("translate", translators["onnx"], inputs / "p1.png", inputs / "p2.png", "--out", out,
                    "--overwrite")
    assert linked.exit_code == 1
    assert f"{out / 'p1.png'} is the input {inputs / 'p1.png'}" in linked.output
    assert f"{out / 'p2.png'} is the input {inputs / 'p2.png'}" in linked.output
    assert snapshot(inputs) == before


def test_existing_outputs_are_replaced_only_with_overwrite(translator, tmp_path):
    inputs = photos(tmp_path / "photos")
    out = tmp_path / "out"
    first = invoke("translate", translator, inputs, "--out", out, "--device", "cpu")
    assert first.exit_code == 0, first.output
    before = snapshot(out)
    again = invoke("translate", translator, inputs, "--out", out, "--device", "cpu")
    assert again.exit_code == 1
    assert (f"3 of the 3 output file(s) already exist: {out / 'p1.png'}, {out / 'p2.png'}, {out / 'sub' / 'p0.png'}"
            in again.output)
    assert "pass --overwrite" in again.output and snapshot(out) == before
    for _ in range(2):  # an earlier translation is replaced with --overwrite, as often as asked
        replaced = invoke("translate", translator, inputs, "--out", out, "--device", "cpu", "--overwrite")
        assert replaced.exit_code == 0, replaced.output
    assert Image.open(out / "p1.png").size == (32, 24)


@pytest.mark.parametrize("name", ["p1.png", "p1.jpg", "p1.webp", "p1.bmp"])
def test_a_file_that_is_not_a_translation_is_never_replaced_even_with_overwrite(translator, tmp_path, name):
    """A user's photo, an edited translation, or one in a format with no room for ganzoo's mark (BMP)."""
    inputs = tmp_path / "photos"
    inputs.mkdir()
    rng = np.random.default_rng(1)
    for stem in ("p1", "p2"):
        Image.fromarray(rng.integers(0, 256, (24, 30), dtype=np.uint8)).save(inputs / f"{stem}{Path(name).suffix}")
    out = tmp_path / "out"
    first = invoke("translate", translator, inputs, "--out", out, "--device", "cpu")
    assert first.exit_code == 0, first.output
    assert invoke("translate", translator, inputs, "--out", out, "--device", "cpu", "--overwrite").exit_code == \
        (1 if name.endswith(".bmp") else 0)  # a BMP cannot carry the mark: never told from a user's file
    Image.fromarray(rng.integers(0, 256, (24, 30), dtype=np.uint8)).save(out / name)  # the user's own now
    before = snapshot(out)
    for extra in ([], ["--overwrite"]):
        result = invoke("translate", translator, inputs, "--out", out, "--device", "cpu", *extra)
        assert result.exit_code == 1, result.output
        assert result.output.startswith("Error: ") and result.output.count("\n") == 1, result.output
        assert f"already exist and are not translations ganzoo wrote: {out / name}" in result.output
        assert "never replaced, even with --overwrite" in result.output
        assert snapshot(out) == before


def test_a_run_directory_s_own_files_are_never_translation_targets(translators, tmp_path):
    run = translators["run"]
    before = snapshot(run / "checkpoints")
    inputs = tmp_path / "photos"
    inputs.mkdir()
    Image.fromarray(np.zeros((24, 24), np.uint8)).save(inputs / "networks.safetensors.png")
    step = next(p for p in (run / "checkpoints").iterdir() if p.name.startswith("step-"))
    (inputs / "trainer.pt").write_bytes((inputs / "networks.safetensors.png").read_bytes())
    for out in (run / "checkpoints", step):
        for extra in ([], ["--overwrite"]):
            result = invoke("translate", translators["onnx"], inputs / "trainer.pt", "--out", out, *extra)
            assert result.exit_code == 1, result.output
            assert "is the run's own checkpoints/" in result.output and result.output.count("\n") == 1
    assert snapshot(run / "checkpoints") == before


def _limited(lim_gib: int):
    """A child's address space capped, so that a regression fails with MemoryError instead of eating the machine."""
    if not sys.platform.startswith("linux"):
        return None
    limit = lim_gib * 2**30
    return lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def test_size_is_bounded_before_anything_is_decoded(translators, tmp_path):
    """A 70x50 photo at --size 5000 is 7000x5000; today's main allocated gigabytes for it."""
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((50, 70, 3), np.uint8)).save(small)
    for key in ("run", "onnx"):
        huge = ganzoo("translate", translators[key], small, "--size", 5000, "--out", tmp_path / "out",
                      "--device", "cpu", timeout=120, preexec_fn=_limited(6))
        assert huge.returncode == 1 and "Traceback" not in huge.stderr
        assert (f"{small} is 70x50; scaled to a shorter side of 5000 (--size) it would become 7000x5000 = "
                "35,000,000 pixels, more than the limit of 16,777,216") in huge.stderr
        assert "--max-pixels" in huge.stderr and not (tmp_path / "out").exists()
    raised = invoke("translate", translators["onnx"], small, "--size", 100, "--max-pixels", 140 * 100,
                    "--out", tmp_path / "out")
    assert raised.exit_code == 0, raised.output
    assert Image.open(tmp_path / "out" / "small.png").size == (140, 100)
    zero = invoke("translate", translators["onnx"], small, "--max-pixels", 0)
    assert zero.exit_code == 1 and "--max-pixels must be positive" in zero.output


def test_bombs_fifos_and_garbage_among_the_inputs_are_all_named_first(translators, tmp_path):
    inputs = photos(tmp_path / "photos")
    bomb_png(inputs / "bomb.png")
    (inputs / "junk.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    bad = invoke("translate", translators["onnx"], inputs, "--out", out)
    assert bad.exit_code == 1 and bad.output.startswith("Error: 2 bad image files (nothing was translated):")
    assert f"{inputs / 'bomb.png'}: its header declares 8000x8000" in bad.output
    assert f"cannot read image {inputs / 'junk.jpg'}" in bad.output
    assert not out.exists()
    kinds = special_files(inputs)
    odd = ganzoo("translate", translators["onnx"], inputs, "--out", out, timeout=60)  # main hangs on the FIFO
    assert odd.returncode == 1 and "Traceback" not in odd.stderr
    for name, kind in kinds.items():
        assert f"{inputs / name}: it is {kind}" in odd.stderr
    direct = ganzoo("translate", translators["onnx"], inputs / "fifo.png", "--out", out, timeout=60)
    assert direct.returncode == 1 and f"{inputs / 'fifo.png'}: it is a FIFO" in direct.stderr
    assert not out.exists()
