"""`ganzoo train --cond`: the class count fitted to the data, the class list recorded and held to.

Real subprocesses on the embedded data (ten labelled classes) and on class folders made here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from helpers import SMOKE, checkpoint_tensors, ganzoo, image_folder

FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def _ok(result):
    assert result.returncode == 0, result.stderr
    return result


def _refused(result, *words):
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def class_folders(root: Path, names: list[str], n: int = 6) -> Path:
    """A folder with one subfolder of ``n`` small images per class (torchvision's ImageFolder layout)."""
    for index, name in enumerate(names):
        image_folder(root / name, n=n, size=36, seed=index)
    return root


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory):
    """A conditional smoke DCGAN run on the embedded data, 2 steps."""
    run = tmp_path_factory.mktemp("cond") / "run"
    _ok(ganzoo("train", "dcgan", *SMOKE, "--cond", "--steps", "2", "--out", run, timeout=300))
    return run


def test_cond_sets_the_class_count_and_records_the_class_names(conditional_run):
    record = json.loads((conditional_run / "config.json").read_text())
    assert record["config"]["num_classes"] == 10
    assert record["classes"] == FASHION
    info = _ok(ganzoo("info", conditional_run)).stdout
    assert "classes:      0 T-shirt/top, 1 Trouser," in info and "9 Ankle boot" in info
    tensors = checkpoint_tensors(conditional_run)
    # the networks read the label (DCGAN's default conditioning, "concat"): G's projection reads z and the
    # one-hot label, D's first convolution the grey image and ten label maps
    assert tensors["net/G/main.0.linear.weight"].shape[1] == record["config"]["nz"] + 10
    assert tensors["net/D/main.0.weight"].shape[1] == 1 + 10


def test_the_training_grid_has_one_whole_row_per_class(conditional_run):
    """64 preview images of 10 classes: 10 rows of 6 (32x32 cells, 2-pixel gutters), no partial row."""
    from PIL import Image

    with Image.open(conditional_run / "samples" / "step-0000002.png") as grid:
        assert grid.size == (6 * 34 + 2, 10 * 34 + 2)


def test_an_unconditional_run_records_no_classes_and_info_shows_none(smoke_run):
    record = json.loads((smoke_run / "config.json").read_text())
    assert "classes" not in record and record["config"]["num_classes"] == 0
    assert "classes:" not in _ok(ganzoo("info", smoke_run)).stdout


def test_an_architecture_that_cannot_be_conditional_refuses_cond(tmp_path):
    line = _refused(ganzoo("train", "cyclegan", *SMOKE, "--cond", "--steps", "1", "--out", tmp_path / "run"),
                    "cyclegan cannot be conditional", "dcgan", "stylegan-lite")
    assert not (tmp_path / "run").exists(), line
    listing = _ok(ganzoo("list")).stdout.splitlines()
    cond = {line.split()[0]: line.split()[4] for line in listing[1:4]}
    assert cond == {"cyclegan": "no", "dcgan": "yes", "stylegan-lite": "yes"}


def test_a_class_count_that_disagrees_with_the_data_is_refused(tmp_path):
    _refused(ganzoo("train", "dcgan", *SMOKE, "--set", "num_classes=3", "--steps", "1", "--out", tmp_path / "run"),
             "num_classes=3", "10 classes", "T-shirt/top", "--cond")
    assert not (tmp_path / "run").exists()


def test_cond_on_data_without_labels_is_refused_before_anything_is_written(tmp_path):
    data = tmp_path / "flat"  # images at its root alone: no class folders, no dataset.json
    image_folder(tmp_path / "made", n=8, size=36)
    data.mkdir()
    for index, image in enumerate(sorted((tmp_path / "made").rglob("*.png"))):
        image.rename(data / f"{index}.png")
    line = _refused(ganzoo("train", "dcgan", *SMOKE, "--cond", "--data", data, "--steps", "1",
                           "--out", tmp_path / "run"), "label")
    assert str(data.name) in line
    assert not (tmp_path / "run").exists()


def test_class_folders_train_conditionally_and_a_changed_class_list_is_refused_on_resume(tmp_path):
    data = class_folders(tmp_path / "data", ["cats", "dogs"])
    run = tmp_path / "run"
    _ok(ganzoo("train", "dcgan", *SMOKE, "--cond", "--data", data, "--steps", "2", "--out", run))
    assert json.loads((run / "config.json").read_text())["classes"] == ["cats", "dogs"]
    (data / "dogs").rename(data / "wolves")
    before = sorted(p.name for p in run.rglob("*"))
    line = _refused(ganzoo("train", "dcgan", "--resume", run, "--steps", "4", "--allow-data-change"),
                    "2 classes (cats, dogs)", "2 classes (cats, wolves)")
    assert sorted(p.name for p in run.rglob("*")) == before, line


def test_init_keeps_the_source_classes(tmp_path, conditional_run):
    data = class_folders(tmp_path / "data", ["cats", "dogs"])
    line = _refused(ganzoo("train", "dcgan", *SMOKE, "--init", conditional_run, "--data", data, "--steps", "1",
                           "--out", tmp_path / "run"), "--init source", "10 classes", "2 classes (cats, dogs)")
    assert not (tmp_path / "run").exists(), line


def test_init_from_an_unconditional_run_refuses_cond(tmp_path, smoke_run):
    _refused(ganzoo("train", "dcgan", *SMOKE, "--init", smoke_run, "--cond", "--steps", "1",
                    "--out", tmp_path / "run"), "no classes (unconditional)", "10 classes")
    assert not (tmp_path / "run").exists()


def test_init_from_a_conditional_run_on_the_same_classes_trains(tmp_path, conditional_run):
    run = tmp_path / "run"
    _ok(ganzoo("train", "dcgan", *SMOKE, "--init", conditional_run, "--steps", "1", "--out", run))
    assert json.loads((run / "config.json").read_text())["classes"] == FASHION


def test_a_conditional_run_resumes_exactly(tmp_path):
    """Labels go through the seeded feed: 2 + 2 steps equal 4 steps, bit for bit."""
    whole, split = tmp_path / "whole", tmp_path / "split"
    _ok(ganzoo("train", "dcgan", *SMOKE, "--cond", "--steps", "4", "--out", whole))
    _ok(ganzoo("train", "dcgan", *SMOKE, "--cond", "--steps", "2", "--out", split))
    _ok(ganzoo("train", "dcgan", "--resume", split, "--steps", "4"))
    one, two = checkpoint_tensors(whole), checkpoint_tensors(split)
    assert one.keys() == two.keys()
    for key, value in one.items():
        assert torch.equal(value, two[key]) if torch.is_tensor(value) else value == two[key], key
