"""`ganzoo train cyclegan`, `translate` and named datasets, end to end through the CLI."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
import torch
from PIL import Image

from ganzoo import rundir
from ganzoo.data import load_data
from ganzoo.train.trainer import Trainer
from helpers import SMOKE, checkpoint_tensors, ganzoo, invoke
from test_resume import assert_identical
from test_unpaired import unpaired_folder

# The cyclegan smoke preset (tiny networks, every layer type, pools that fill and swap), logging every step.
CYCLE = [*SMOKE, "--set", "log_every=1"]


@pytest.fixture(scope="module")
def cycle_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("cycle") / "run"
    result = invoke("train", "cyclegan", *CYCLE, "--steps", 3, "--out", run)
    assert result.exit_code == 0, result.output
    return run, result.output


def test_trains_offline_on_the_embedded_pair(cycle_run):
    run, output = cycle_run
    assert "cyclegan: 1000 + 1000 images from fashion-mnist at 24x24x1" in output
    assert "A: 1000 images (embedded sneakers); B: 1000 images (embedded ankle boots)" in output
    grid = Image.open(run / "samples" / "step-0000003.png")
    assert grid.size[0] == 6 * 26 + 2  # six columns: real, translated, reconstructed, for A and for B
    record = json.loads((run / "config.json").read_text())
    assert record["preset"] == "smoke" and record["config"]["channels"] == 1


def test_resume_is_bitwise_identical_with_pools_and_schedule(tmp_path):
    data = unpaired_folder(tmp_path / "data", n_a=5, n_b=7, size=30)  # epochs of 3 steps at batch 2
    common = ["--data", data, *CYCLE, "--set", "channels=3", "--batch-size", 2, "--checkpoint-every", 2]
    assert invoke("train", "cyclegan", *common, "--steps", 8, "--out", tmp_path / "one").exit_code == 0
    # The lr schedule depends on the run's length, so the first part knows it and stops early (as a signal
    # would stop it): the run directory is made from the same resolved config, through the Python API.
    one = rundir.open_run(tmp_path / "one")
    split = tmp_path / "split"
    split.mkdir()
    (split / "config.json").write_text((tmp_path / "one" / "config.json").read_text())
    dataset = load_data(str(data), one.arch.data_spec(one.resolved.config))
    Trainer(one.arch, one.resolved, dataset, split).run(until=3)
    second = invoke("train", "cyclegan", "--resume", split, "--steps", 8)
    assert second.exit_code == 0, second.output
    a, b = checkpoint_tensors(tmp_path / "one"), checkpoint_tensors(tmp_path / "split")
    assert a["state/plugin/pool_A/count"] == 3 and any(k.startswith("net/G_AB_ema/") for k in a)
    assert "state/data/rng" in a and a["state/data/epoch"] == 2
    lrs = [v for k, v in a.items() if k.startswith("state/optimizers/") and k.endswith("/lr")]
    assert len(lrs) == 2 and all(lr == 0.0 for lr in lrs)  # the linear decay reaches zero at the run's end
    scheduled = {k: v for k, v in a.items() if k.startswith("state/schedulers/") and k.endswith("/last_epoch")}
    assert sorted(scheduled.values()) == [8, 8], scheduled  # a LambdaLR per optimizer, checkpointed
    assert_identical(a, b)


def test_epochs_set_the_length_from_the_data(tmp_path):
    data = unpaired_folder(tmp_path / "data", n_a=5, n_b=7, size=30)
    result = invoke("train", "cyclegan", "--data", data, *CYCLE, "--batch-size", 2, "--epochs", 2,
                    "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "plan: steps 0 -> 6 (2 epochs)" in result.output
    train = json.loads((tmp_path / "run" / "config.json").read_text())["train"]
    assert (train["epochs"], train["steps"]) == (2.0, 6)
    longer = invoke("train", "cyclegan", "--resume", tmp_path / "run", "--steps", 7)  # --steps wins over epochs
    assert longer.exit_code == 0, longer.output
    train = json.loads((tmp_path / "run" / "config.json").read_text())["train"]
    assert (train["epochs"], train["steps"]) == (0.0, 7)
    both = invoke("train", "cyclegan", *CYCLE, "--steps", 2, "--epochs", 1, "--out", tmp_path / "x")
    assert both.exit_code == 1 and "--steps or --epochs" in both.output


def test_translate_keeps_names_and_matches_the_generator(cycle_run, tmp_path):
    run, _ = cycle_run
    inputs = tmp_path / "in"
    (inputs / "sub").mkdir(parents=True)
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (24, 24), dtype=np.uint8)).save(inputs / "boot.png")
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(inputs / "sub" / "photo.jpg")
    single = tmp_path / "single.png"
    Image.fromarray(rng.integers(0, 256, (24, 24), dtype=np.uint8)).save(single)
    out = tmp_path / "out"
    result = invoke("translate", run, inputs, single, "--direction", "b2a", "--out", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "3 image(s) translated B -> A" in result.output
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.*")) == ["boot.png", "single.png", "sub/photo.jpg"]
    # Shorter side 24 (the training resolution), both sides multiples of 4: 30x40 -> 24x32.
    assert Image.open(out / "sub" / "photo.jpg").size == (32, 24)
    # The PNG is exactly the EMA generator's output on the image.
    nets, _ = rundir.load_sampling_nets(rundir.open_run(run), torch.device("cpu"))
    x = torch.from_numpy(np.asarray(Image.open(inputs / "boot.png"), dtype=np.float32) / 127.5 - 1)[None, None]
    with torch.no_grad():
        expected = ((nets["G_BA"](x) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)[0, 0].numpy()
    assert np.array_equal(np.asarray(Image.open(out / "boot.png")), expected)
    kept = invoke("translate", run, inputs / "sub", "--size", 0, "--out", tmp_path / "kept", "--device", "cpu")
    assert kept.exit_code == 0 and Image.open(tmp_path / "kept" / "photo.jpg").size == (40, 32)


@pytest.mark.parametrize(("args", "message"), [
    (["--direction", "a2c"], "unknown --direction 'a2c'; cyclegan translates: a2b, b2a"),
    (["--size", "-3"], "--size must be positive"),
])
def test_translate_errors(cycle_run, tmp_path, args, message):
    run, _ = cycle_run
    image = tmp_path / "x.png"
    Image.new("L", (24, 24)).save(image)
    result = invoke("translate", run, image, *args)
    assert result.exit_code == 1 and message in result.output


def test_translate_missing_input_and_sample_on_translators(cycle_run, tmp_path):
    run, _ = cycle_run
    missing = invoke("translate", run, tmp_path / "nope.png")
    assert missing.exit_code == 1 and f"no such file or folder: {tmp_path / 'nope.png'}" in missing.output
    sampled = invoke("sample", run)
    assert sampled.exit_code == 1 and f"use: ganzoo translate {run}" in sampled.output


def test_translate_refuses_architectures_without_translators(tmp_path):
    run = tmp_path / "dcgan"
    assert invoke("train", "dcgan", *SMOKE, "--steps", 1, "--batch-size", 8, "--out", run).exit_code == 0
    image = tmp_path / "x.png"
    Image.new("L", (32, 32)).save(image)
    result = invoke("translate", run, image)
    assert result.exit_code == 1 and "dcgan has no image-to-image generator" in result.output


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_named_dataset_offline_then_placed_by_hand(tmp_path):
    """--data horse2zebra with no network: one clear message; with the folder where it says, training runs."""
    home = tmp_path / "home"
    catalog = tmp_path / "catalog.tsv"
    url = f"http://127.0.0.1:{_closed_port()}/horse2zebra.zip"
    catalog.write_text("name\turl\tbytes\tsha256\tkind\n"
                       f"horse2zebra\t{url}\t116867962\t{'a' * 64}\tunpaired\n")
    env = {"GANZOO_HOME": str(home), "GANZOO_CATALOG": str(catalog)}
    args = ["train", "cyclegan", "--data", "horse2zebra", *CYCLE, "--steps", 2, "--out", tmp_path / "run"]
    offline = ganzoo(*args, env=env)
    assert offline.returncode == 1 and "Traceback" not in offline.stderr
    expected_place = home / "datasets" / "horse2zebra" / "trainA"
    assert url in offline.stderr and f"{expected_place} exists" in offline.stderr
    assert not (home / "datasets" / "horse2zebra").exists()
    assert not list(home.rglob("*.part*")), "a partial download was left behind"
    unpaired_folder(home / "datasets" / "horse2zebra", n_a=4, n_b=6, size=30)
    placed = ganzoo(*args, env=env)
    assert placed.returncode == 0, placed.stderr
    assert "4 + 6 images from horse2zebra" in placed.stdout
    listed = ganzoo("data", "list", env=env)
    assert listed.returncode == 0 and any(line.split()[:1] == ["horse2zebra"] and "yes" in line
                                          for line in listed.stdout.splitlines())
