"""`ganzoo sample` refuses what it cannot honour before it samples: a truncation psi that is not a finite
number >= 0 (NaN or inf made black images, silently) and an --out it cannot write (a folder, a path through a
file). Run folders and exported models alike, and the runtime's own ``model.sample``."""

from __future__ import annotations

import math

import pytest

from helpers import SMOKE, invoke

from ganzoo.errors import UserError
from ganzoo.runtime import load


@pytest.fixture(scope="module")
def stylegan(tmp_path_factory):
    """A one-step StyleGAN-lite run (its generator has a truncation input) and its exported model."""
    root = tmp_path_factory.mktemp("refusals")
    run = root / "run"
    trained = invoke("train", "stylegan-lite", *SMOKE, "--steps", 1, "--batch-size", 4, "--out", run)
    assert trained.exit_code == 0, trained.output
    exported = invoke("export", run, "--out", root / "models")
    assert exported.exit_code == 0, exported.output
    return run, root / "models" / "stylegan-lite-G.onnx"


def one_error(result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


@pytest.mark.parametrize("psi", ["nan", "inf", "-inf", "-0.5"])
@pytest.mark.parametrize("source", ["run", "model"])
def test_a_truncation_that_is_not_a_finite_psi_is_refused(stylegan, tmp_path, source, psi):
    path = stylegan[0] if source == "run" else stylegan[1]
    out = tmp_path / "grid.png"
    line = one_error(invoke("sample", path, "--truncation", psi, "--n", 2, "--out", out))
    assert line == f"Error: --truncation must be a finite number >= 0, got {float(psi)!r}"
    assert not out.exists()


def test_the_runtime_refuses_a_non_finite_truncation_too(stylegan):
    model = load(stylegan[1], "cpu")
    for psi in (math.nan, math.inf, -1.0):
        with pytest.raises(UserError, match=r"^truncation must be a finite number >= 0, got"):
            model.sample(2, truncation=psi)
    assert model.sample(2, truncation=0.5).shape[0] == 2


def test_an_out_that_cannot_be_a_file_is_one_message_before_sampling(stylegan, tmp_path):
    run, model = stylegan
    folder = tmp_path / "grid.png"
    (folder / "kept.txt").parent.mkdir()
    (folder / "kept.txt").write_text("mine")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for source in (run, model):
        assert f"{folder} already exists and is a folder" in one_error(invoke("sample", source, "--out", folder))
        line = one_error(invoke("sample", source, "--out", blocker / "grid.png"))
        assert f"cannot write to {blocker}: not a folder" in line and "--out" in line
    assert (folder / "kept.txt").read_text() == "mine" and blocker.read_text() == "not a folder"
    made = invoke("sample", model, "--n", 2, "--out", tmp_path / "new" / "folder" / "grid.npz")
    assert made.exit_code == 0 and (tmp_path / "new" / "folder" / "grid.npz").is_file()  # a missing folder is made
