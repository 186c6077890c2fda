"""Sampling a chosen class (issue 25, items 3 and 4): `ganzoo sample --class`, the one-row-per-class grid, and a
conditional generator exported to ONNX with its label input and class names, sampled by the torch-free runtime.

The well-defined relation between the grid and ``--class``: every input part is drawn for every image whatever
the labels (``Latents``), so image i of a seed has the same z in any sample of the same size; image i of the
default grid (class ``labels[i]``) is then image i of ``--class labels[i]`` with the same ``--n`` and seed.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from helpers import SMOKE, invoke
from PIL import Image
from test_runtime import blocked_env, run_python

from ganzoo.data.embedded import CLASS_NAMES
from ganzoo.errors import UserError
from ganzoo.runtime import load
from ganzoo.runtime.classes import class_index, labels_for

NAMES = list(CLASS_NAMES)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A conditional DCGAN run on the embedded data (ten classes) and an unconditional one, both exported."""
    root = tmp_path_factory.mktemp("cond")
    made = {}
    for name, extra in (("cond", ["--cond"]), ("plain", [])):
        run = root / name
        trained = invoke("train", "dcgan", *SMOKE, *extra, "--steps", 2, "--out", run)
        assert trained.exit_code == 0, trained.output
        exported = invoke("export", run)
        assert exported.exit_code == 0, exported.output
        made[name] = run
        made[f"{name}-model"] = run / "export" / "dcgan-G.onnx"
    return made


def sample_npz(source, out, *args) -> dict:
    result = invoke("sample", source, "--out", out, *args)
    assert result.exit_code == 0, result.output
    with np.load(out) as data:
        return {key: data[key] for key in data.files}


def one_error(result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


# -- reading a class: names exactly, then indices, then names in any case ------------------------------------

def test_a_class_is_its_exact_name_then_its_index_then_its_name_in_any_case():
    assert class_index("Trouser", NAMES) == class_index("1", NAMES) == class_index(1, NAMES) == 1
    assert class_index("ankle BOOT", NAMES) == class_index(np.int64(9), NAMES) == 9
    folders = ["1", "10", "2"]  # ImageFolder sorts names as text: the folder called "10" is class 1
    assert class_index("10", folders) == 1 and class_index("2", folders) == 2 and class_index("0", folders) == 0
    assert list(labels_for("Bag", 3, NAMES)) == [8, 8, 8]
    assert list(labels_for(["Bag", 0, np.int64(3), "coat"], 4, NAMES)) == [8, 0, 3, 4]
    assert labels_for(np.array([2, 5]), 2, NAMES).dtype == np.int64


@pytest.mark.parametrize("value, message", [
    ("Trousers", "--class 'Trousers' is not a class of runs/c (did you mean 'Trouser'?); its classes: 0 T-shirt/top, "
                 "1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal, 6 Shirt, 7 Sneaker, 8 Bag, 9 Ankle boot"),
    ("cat", "--class 'cat' is not a class of runs/c; its classes: 0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, "
            "4 Coat, 5 Sandal, 6 Shirt, 7 Sneaker, 8 Bag, 9 Ankle boot"),
    ("10", "--class 10 is out of range: runs/c has 10 classes, 0 to 9"),
    (-1, "--class -1 is out of range: runs/c has 10 classes, 0 to 9"),
    (True, "--class takes a class name or index, got True"),
    (2.0, "--class takes a class name or index, got float 2.0"),
])
def test_a_bad_class_is_one_message_naming_what_is_allowed(value, message):
    with pytest.raises(UserError) as caught:
        class_index(value, NAMES, "--class", "runs/c")
    assert str(caught.value) == message


def test_many_or_unnamed_classes_are_listed_briefly():
    with pytest.raises(UserError, match=r"its classes: 0 to 999 \(unnamed\)$"):
        class_index("x", [str(i) for i in range(1000)], "--class", "m")
    with pytest.raises(UserError, match=r"its classes: 0 c0, 1 c1, .*, 19 c19, \.\.\. and 80 more$"):
        class_index("x", [f"c{i}" for i in range(100)], "--class", "m")
    with pytest.raises(UserError, match=r"^labels must be one class or 3 of them \(one per sample\), got 2$"):
        labels_for([1, 2], 3, NAMES)


# -- a run directory ------------------------------------------------------------------------------------------

def test_the_default_grid_has_one_row_per_class_in_class_order(runs, tmp_path):
    data = sample_npz(runs["cond"], tmp_path / "grid.npz", "--seed", 3)
    assert data["images"].shape == (80, 32, 32, 1)  # 8 per class when --n is not given
    assert list(data["labels"]) == [k for k in range(10) for _ in range(8)]
    assert list(data["classes"]) == NAMES
    result = invoke("sample", runs["cond"], "--seed", 3, "--out", tmp_path / "grid.png")
    assert result.exit_code == 0, result.output
    assert "80 images, one row per class (10 classes), from" in result.output
    grid = np.asarray(Image.open(tmp_path / "grid.png"))
    assert grid.shape == (10 * 34 + 2, 8 * 34 + 2)  # ten rows of eight, 2-pixel gutters
    for k in range(10):  # row k of the PNG holds the images of class k
        cells = [grid[2 + 34 * k:34 + 34 * k, 2 + 34 * j:34 + 34 * j] for j in range(8)]
        assert np.array_equal(np.stack(cells), data["images"][8 * k:8 * k + 8, ..., 0])
    odd = sample_npz(runs["cond"], tmp_path / "odd.npz", "--n", 25)  # rows of n // classes, wrapping round
    assert list(odd["labels"]) == [k % 10 for k in range(13) for _ in range(2)][:25]


def test_row_k_of_the_grid_is_what_class_k_draws_at_the_same_positions(runs, tmp_path):
    grid = sample_npz(runs["cond"], tmp_path / "grid.npz", "--seed", 5)["images"]
    for k in (0, 4, 9):
        chosen = sample_npz(runs["cond"], tmp_path / f"c{k}.npz", "--seed", 5, "--n", 80, "--class", k)
        assert list(chosen["labels"]) == [k] * 80 and list(chosen["classes"]) == NAMES
        assert np.array_equal(chosen["images"][8 * k:8 * k + 8], grid[8 * k:8 * k + 8])
        other = sample_npz(runs["cond"], tmp_path / "other.npz", "--seed", 5, "--n", 80, "--class", (k + 1) % 10)
        assert not np.array_equal(other["images"][8 * k:8 * k + 8], grid[8 * k:8 * k + 8])  # the label matters


def test_class_by_number_by_name_and_in_any_case_are_the_same_images(runs, tmp_path):
    by_number = sample_npz(runs["cond"], tmp_path / "n.npz", "--class", 1, "--n", 6, "--seed", 2)
    by_name = sample_npz(runs["cond"], tmp_path / "t.npz", "--class", "Trouser", "--n", 6, "--seed", 2)
    folded = sample_npz(runs["cond"], tmp_path / "f.npz", "--class", "tRoUsEr", "--n", 6, "--seed", 2)
    assert np.array_equal(by_number["images"], by_name["images"]) and np.array_equal(by_name["images"], folded["images"])
    assert list(by_name["labels"]) == [1] * 6
    result = invoke("sample", runs["cond"], "--class", "Trouser", "--out", tmp_path / "t.png")
    assert result.exit_code == 0 and "64 images of class 1 (Trouser) from" in result.output, result.output


@pytest.mark.parametrize("source", ["run", "model"])
def test_bad_classes_are_one_error_line_and_write_nothing(runs, tmp_path, source):
    path = runs["cond"] if source == "run" else runs["cond-model"]
    out = tmp_path / "x.png"
    unknown = one_error(invoke("sample", path, "--class", "Sneakers", "--out", out))
    assert unknown == (f"Error: --class 'Sneakers' is not a class of {path} (did you mean 'Sneaker'?); its classes: "
                       "0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal, 6 Shirt, 7 Sneaker, 8 Bag, "
                       "9 Ankle boot")
    assert one_error(invoke("sample", path, "--class", 10, "--out", out)) == \
        f"Error: --class 10 is out of range: {path} has 10 classes, 0 to 9"
    assert one_error(invoke("sample", path, "--class", -2, "--out", out)) == \
        f"Error: --class -2 is out of range: {path} has 10 classes, 0 to 9"
    assert not out.exists()


def test_class_on_an_unconditional_run_or_model_is_refused_naming_the_generator(runs, tmp_path):
    out = tmp_path / "x.png"
    assert one_error(invoke("sample", runs["plain"], "--class", 1, "--out", out)) == \
        "Error: --class: dcgan's generator 'G' is not conditional (its inputs: z); sample without --class"
    model = runs["plain-model"]
    assert one_error(invoke("sample", model, "--class", "Trouser", "--out", out)) == \
        f"Error: --class: {model}'s generator dcgan/G is not conditional (its inputs: z); sample without --class"
    assert not out.exists()
    with pytest.raises(UserError, match=r"^labels: .*dcgan/G is not conditional \(its inputs: z\)$"):
        load(model, "cpu").sample(2, labels=1)
    plain = sample_npz(runs["plain"], tmp_path / "p.npz")  # unconditional: 64 images, no labels stored
    assert plain["images"].shape[0] == 64 and set(plain) == {"images", "ganzoo_output"}


# -- ONNX and the torch-free runtime --------------------------------------------------------------------------

def test_the_model_takes_a_one_hot_label_and_carries_the_class_names(runs):
    props = {p.key: p.value for p in onnx.load(str(runs["cond-model"])).metadata_props}
    assert json.loads(props["classes"]) == NAMES == json.loads((runs["cond"] / "config.json").read_text())["classes"]
    inputs = json.loads(props["inputs"])
    assert [i["name"] for i in inputs] == ["z", "label"] and inputs[1]["shape"] == [None, 10]
    assert {"kind": "onehot", "name": "label", "shape": [10]} in json.loads(props["latents"])
    graph = onnx.load(str(runs["cond-model"])).graph
    assert [i.type.tensor_type.shape.dim[0].dim_param for i in graph.input] == ["batch", "batch"]
    model = load(runs["cond-model"], "cpu")
    assert model.metadata.classes == tuple(NAMES)
    plain = {p.key: p.value for p in onnx.load(str(runs["plain-model"])).metadata_props}
    assert "classes" not in plain and [i["name"] for i in json.loads(plain["inputs"])] == ["z"]
    assert load(runs["plain-model"], "cpu").metadata.classes is None


def test_check_inputs_draw_valid_one_hot_labels(runs):
    from ganzoo import rundir
    from ganzoo.export import check_inputs

    run = rundir.open_run(runs["cond"])
    spec = run.arch.generators(run.resolved.config)["G"]
    label = check_inputs(spec, 64, 7, 32)["label"]
    assert label.shape == (64, 10) and label.dtype == np.float32
    assert set(np.unique(label)) == {0.0, 1.0} and (label.sum(1) == 1).all()
    assert len(set(label.argmax(1))) > 5  # drawn over the classes, not one class


@pytest.mark.parametrize("args", [["--class", "Trouser", "--n", 40], ["--n", 30]])
def test_the_model_samples_the_runs_images_within_one_level(runs, tmp_path, args):
    theirs = sample_npz(runs["cond"], tmp_path / "t.npz", "--seed", 9, *args)
    ours = sample_npz(runs["cond-model"], tmp_path / "o.npz", "--seed", 9, *args)
    assert list(ours["labels"]) == list(theirs["labels"]) and list(ours["classes"]) == NAMES
    a, b = ours["images"].astype(int), theirs["images"].astype(int)
    assert a.shape == b.shape and np.abs(a - b).max() <= 1 and (a != b).mean() < 1e-3
    model = load(runs["cond-model"], "cpu")
    labels = list(theirs["labels"])
    api = model.sample(len(labels), seed=9, labels=[NAMES[k] for k in labels])  # names per sample
    assert np.array_equal(api, ours["images"].transpose(0, 3, 1, 2))


def test_the_runtime_samples_a_class_where_torch_cannot_be_imported(runs, tmp_path):
    env = blocked_env(tmp_path)
    model = str(runs["cond-model"])
    code = (f"import sys, numpy as np; from ganzoo.runtime import load; m = load({model!r}, 'cpu'); "
            "np.save('one.npy', m.sample(5, seed=4, labels='Trouser')); "
            "np.save('each.npy', m.sample(4, seed=4, labels=['Bag', 0, 'sandal', 9])); "
            "assert not [k for k in sys.modules if k.split('.')[0] in ('torch', 'torchvision')]; print(m.metadata.classes)")
    result = run_python(code, env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "'Trouser'" in result.stdout
    reference = load(runs["cond-model"], "cpu")
    assert np.array_equal(np.load(tmp_path / "one.npy"), reference.sample(5, seed=4, labels=[1] * 5))
    assert np.array_equal(np.load(tmp_path / "each.npy"), reference.sample(4, seed=4, labels=[8, 0, 5, 9]))
    cli = subprocess.run([sys.executable, "-m", "ganzoo.cli", "sample", model, "--class", "Bag", "--n", "5",
                          "--seed", "4", "--out", "s.npz"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert cli.returncode == 0, cli.stderr
    with np.load(tmp_path / "s.npz") as data:
        assert list(data["labels"]) == [8] * 5
        assert np.array_equal(data["images"], reference.sample(5, seed=4, labels=8).transpose(0, 2, 3, 1))


def test_damaged_class_metadata_is_one_message(runs, tmp_path):
    source = onnx.load(str(runs["cond-model"]))
    for value, reason in ((json.dumps(NAMES[:9]), "9 classes for a one-hot label input of 10"),
                          ('{"a": 1}', "classes must be a JSON list of names")):
        for prop in source.metadata_props:
            if prop.key == "classes":
                prop.value = value
        path = tmp_path / "damaged.onnx"
        path.write_bytes(source.SerializeToString())
        with pytest.raises(UserError) as caught:
            load(path, "cpu")
        assert str(caught.value) == f"{path}: unreadable ganzoo metadata ({reason})"


def test_truncation_works_with_a_class_in_the_run_and_the_model(tmp_path):
    """A conditional StyleGAN-lite (its generator takes a truncation psi and a label): ``--class`` with
    ``--truncation`` is the same images from the run and from its ONNX model, and psi changes them."""
    run = tmp_path / "sg"
    trained = invoke("train", "stylegan-lite", *SMOKE, "--cond", "--steps", 2, "--batch-size", 4, "--out", run)
    assert trained.exit_code == 0, trained.output
    assert invoke("export", run, "--out", tmp_path / "m").exit_code == 0
    model = tmp_path / "m" / "stylegan-lite-G.onnx"
    args = ["--class", "Bag", "--n", 6, "--seed", 1]
    theirs = sample_npz(run, tmp_path / "t.npz", *args, "--truncation", 0.5)
    ours = sample_npz(model, tmp_path / "o.npz", *args, "--truncation", 0.5)
    assert list(theirs["labels"]) == list(ours["labels"]) == [8] * 6
    assert np.abs(theirs["images"].astype(int) - ours["images"].astype(int)).max() <= 1
    untruncated = sample_npz(run, tmp_path / "u.npz", *args)
    assert not np.array_equal(untruncated["images"], theirs["images"])
    api = load(model, "cpu").sample(6, seed=1, truncation=0.5, labels="Bag")
    assert np.array_equal(api, ours["images"].transpose(0, 3, 1, 2))
