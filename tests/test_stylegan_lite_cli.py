"""`ganzoo train stylegan-lite`, truncation, style mixing and exact resume, end to end through the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from helpers import SMOKE, checkpoint_tensors, image_folder, invoke
from test_resume import assert_identical

# The stylegan-lite smoke preset, with regularisers every 2 and 3 steps so that short runs exercise them.
# DiffAugment as the data decides (the smoke preset turns it on).
STYLE = [*SMOKE, "--set", "pl_interval=2", "--set", "r1_interval=3", "--set", "log_every=1", "--set", "diffaugment=auto"]


@pytest.fixture(scope="module")
def style_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("style") / "run"
    result = invoke("train", "stylegan-lite", *STYLE, "--steps", 3, "--out", run)
    assert result.exit_code == 0, result.output
    return run, result.output


def sample_array(run, *args) -> np.ndarray:
    out = run / f"s{abs(hash(args))}.npz"
    result = invoke("sample", run, *args, "--out", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    return np.load(out)["images"]


def test_trains_offline_on_the_embedded_data(style_run):
    run, output = style_run
    assert "stylegan-lite: 10000 images from fashion-mnist at 16x16x1" in output
    assert "fitted to the data: r1_gamma=0.0128, diffaugment=off" in output  # 0.0002 * 16^2 / 4; 10k images
    record = json.loads((run / "config.json").read_text())
    assert record["config"]["diffaugment"] == "off" and record["config"]["r1_gamma"] == pytest.approx(0.0128)
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"loss/G", "loss/D", "loss/G_pl", "loss/D_r1", "reg/r1", "reg/path_length"} <= set().union(*metrics)
    assert Image.open(run / "samples" / "step-0000003.png").size == (8 * 18 + 2, 8 * 18 + 2)  # 64 images


def test_small_datasets_get_diffaugment(tmp_path):
    data = image_folder(tmp_path / "data", n=12, size=20)
    result = invoke("train", "stylegan-lite", "--data", data, *STYLE, "--set", "channels=3", "--steps", 1,
                    "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "diffaugment=on" in result.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["config"]["diffaugment"] == "on"


def test_resume_is_bitwise_identical_with_regularisers(tmp_path):
    common = ["train", "stylegan-lite", *STYLE, "--checkpoint-every", 3]
    assert invoke(*common, "--steps", 7, "--out", tmp_path / "one").exit_code == 0
    assert invoke(*common, "--steps", 4, "--out", tmp_path / "split").exit_code == 0
    resumed = invoke("train", "stylegan-lite", "--resume", tmp_path / "split", "--steps", 7)
    assert resumed.exit_code == 0, resumed.output
    a, b = checkpoint_tensors(tmp_path / "one"), checkpoint_tensors(tmp_path / "split")
    assert "state/plugin/pl_mean" in a and float(a["state/plugin/pl_mean"]) > 0
    assert any(k.startswith("net/G_ema/mapping") for k in a)
    assert_identical(a, b)


def test_truncation_from_the_cli(style_run):
    run, _ = style_run
    full = sample_array(run, "--n", 6, "--seed", 1)
    assert np.array_equal(full, sample_array(run, "--n", 6, "--seed", 1, "--truncation", 1))
    average = sample_array(run, "--n", 6, "--seed", 1, "--truncation", 0)
    assert all(np.array_equal(average[0], image) for image in average)  # psi 0: every latent is the mean w
    half = sample_array(run, "--n", 6, "--seed", 1, "--truncation", 0.5)
    spread = [np.abs(x.astype(int) - x.mean(axis=0)).mean() for x in (full, half)]
    assert spread[1] < spread[0]  # truncation trades variety for typical images


def test_truncation_needs_a_generator_that_takes_it(tmp_path):
    run = tmp_path / "dcgan"
    assert invoke("train", "dcgan", *SMOKE, "--steps", 1, "--batch-size", 4, "--out", run).exit_code == 0
    result = invoke("sample", run, "--truncation", 0.7)
    assert result.exit_code == 1
    assert "dcgan's generator 'G' has no truncation input (its inputs: z)" in result.output
    mixed = invoke("style-mix", run)
    assert mixed.exit_code == 1 and f"style-mix needs a stylegan-lite run; {run} is a dcgan run" in mixed.output
    assert "Traceback" not in result.output + mixed.output


def test_style_mixing_grid(style_run, tmp_path):
    run, _ = style_run
    out = tmp_path / "mix.png"
    result = invoke("style-mix", run, "--rows", 3, "--cols", 4, "--seed", 5, "--coarse", 2, "--out", out,
                    "--device", "cpu")
    assert result.exit_code == 0, result.output
    grid = np.asarray(Image.open(out))
    assert grid.shape == (4 * 18 + 2, 5 * 18 + 2)

    def cell(r, c):
        return grid[2 + 18 * r:18 * (r + 1), 2 + 18 * c:18 * (c + 1)]

    rows = sample_array(run, "--n", 3, "--seed", 5)[..., 0]
    cols = sample_array(run, "--n", 4, "--seed", 6)[..., 0]
    for r in range(3):
        assert np.array_equal(cell(r + 1, 0), rows[r])  # the row sources are `ganzoo sample --seed 5`
    for c in range(4):
        assert np.array_equal(cell(0, c + 1), cols[c])  # the column sources, seed 6
    mixed = cell(2, 3)
    assert not np.array_equal(mixed, rows[1]) and not np.array_equal(mixed, cols[2])
    bad = invoke("style-mix", run, "--coarse", 99, "--device", "cpu", "--out", tmp_path / "x.png")
    assert bad.exit_code == 1 and "--coarse must be between 1 and 5 (the style layers at 16x16), got 99" in bad.output


def test_style_mix_replaces_its_own_grid_and_nothing_else(style_run, tmp_path):
    run, _ = style_run
    photo = tmp_path / "photo.png"
    Image.fromarray(np.full((8, 8), 7, np.uint8)).save(photo)
    grid = tmp_path / "grid.png"
    assert invoke("sample", run, "--n", 2, "--out", grid, "--device", "cpu").exit_code == 0
    for target in (photo, grid, run / "samples" / "step-0000003.png"):  # a photo, `sample`'s grid, a preview
        before = target.read_bytes()
        refused = invoke("style-mix", run, "--device", "cpu", "--out", target)
        assert refused.exit_code == 1 and refused.output.startswith(f"Error: {target} ") \
            and refused.output.count("\n") == 1, refused.output
        assert target.read_bytes() == before
    for _ in range(2):  # the default path, then again over its own grid
        again = invoke("style-mix", run, "--rows", 1, "--cols", 1, "--device", "cpu")
        assert again.exit_code == 0, again.output
    assert (run / "samples" / "style-mix-seed-0.png").is_file()
