"""Evaluation of class-conditional generators: labels drawn from the data, intra-class FD, class accuracy.

The generators judged here are real, not mocks: ``gzeval-lookup`` is a tiny
conditional architecture (installed as a plugin distribution, as a third
party's would be) whose generator returns real Fashion-MNIST test images of the
class it is asked for, picked by its latent; with ``scramble=true`` it ignores
the label and picks the class from its latent too. Real images of the right
class must score a class accuracy near the classifier's own test accuracy and a
small intra-class FD; scrambled classes score chance and a large one, while
the plain FD (both are real images) cannot tell them apart.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from ganzoo import registry
from ganzoo.data.embedded import CLASS_NAMES
from helpers import SMOKE, invoke
from test_registry import install

PLUGIN = '''
from dataclasses import dataclass

from ganzoo.api import IMAGES, Adam, Architecture, DataSpec, Generator, Phase
from ganzoo.runtime.latents import Gaussian, Latents, OneHot

PER_CLASS = 100  # real images per class the generator can return


@dataclass
class LookupConfig:
    num_classes: int = 0
    scramble: bool = False  # pick the class from the latent, whatever the label asks for
    learn: bool = False  # the class asked for, for a share of the images that grows as it trains
    lr: float = 1e-3
    batch_size: int = 8


def bank():
    """The first PER_CLASS embedded test images of each class, float [-1, 1], class by class."""
    import torch

    from ganzoo.data import load_images

    data = load_images(None, DataSpec(IMAGES, 32, 1))
    rows = [torch.nonzero(data.labels == c).flatten()[:PER_CLASS] for c in range(10)]
    return data.images[torch.cat(rows)].float() / 127.5 - 1


def make_generator(cfg):
    import torch
    from torch import nn

    class Lookup(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("bank", bank(), persistent=False)
            self.weight = nn.Parameter(torch.zeros(()))  # grows by about lr a step; adds nothing to the pixels

        def forward(self, z, label=None):
            pick = torch.remainder(torch.floor(z[:, 0] * 1000), PER_CLASS).long()
            other = torch.remainder(torch.floor(z[:, 1] * 1000), 10).long()
            if label is None or cfg.scramble:
                cls = other
            elif cfg.learn:
                share = torch.remainder(torch.floor(z[:, 1] * 7919), 1000) / 1000
                cls = torch.where(share < self.weight, label.argmax(1), other)
            else:
                cls = label.argmax(1)
            return self.bank[cls * PER_CLASS + pick] + (self.weight - self.weight.detach())

    return Lookup()


class LookupArch(Architecture):
    name = "gzeval-lookup"
    summary = "returns real Fashion-MNIST images of the class asked for (a test generator)"
    Config = LookupConfig
    class_count_key = "num_classes"

    def data_spec(self, cfg):
        return DataSpec(IMAGES, 32, 1, labels=cfg.num_classes > 0)

    def build(self, cfg):
        return {"G": make_generator(cfg)}

    def phases(self, cfg):
        return [Phase("G", ("G",), Adam(lr=cfg.lr))]

    def loss(self, phase, nets, batch, ctx):
        import torch

        n = batch["image"].shape[0]
        z = ctx.randn(n, 2)
        if not ctx.cfg.num_classes:
            return -nets["G"](z).mean()
        label = torch.nn.functional.one_hot(ctx.labels(n), ctx.cfg.num_classes).float()
        return -nets["G"](z, label).mean()

    def generators(self, cfg):
        if not cfg.num_classes:
            return {"G": Generator(role="G", inputs=("z",), latents=Latents((Gaussian("z", (2,)),)))}
        parts = (Gaussian("z", (2,)), OneHot("label", (cfg.num_classes,)))
        return {"G": Generator(role="G", inputs=("z", "label"), latents=Latents(parts))}
'''


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    """gzeval-lookup installed into a site folder on sys.path, found by entry points like any plugin."""
    site = tmp_path_factory.mktemp("site")
    install(site, "gzeval-lookup", "1.0", {"gzeval-lookup": "gzeval_lookup:LookupArch"}, {"gzeval_lookup": PLUGIN})
    sys.path.insert(0, str(site))
    registry.clear_cache()
    yield site
    sys.path.remove(str(site))
    sys.modules.pop("gzeval_lookup", None)
    registry.clear_cache()


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANZOO_HOME", str(tmp_path / "home"))


def train(out, *args, steps: int = 2):
    result = invoke("train", *args, "--device", "cpu", "--steps", steps, "--out", out)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def lookup_runs(plugin, tmp_path_factory):
    """Conditional runs of the lookup generator: true to the label, and scrambled."""
    root = tmp_path_factory.mktemp("lookup")
    return {name: train(root / name, "gzeval-lookup", "--cond", "--set", f"scramble={scramble}")
            for name, scramble in (("true", "false"), ("scrambled", "true"))}


def evaluate(source, out, *args):
    result = invoke("eval", source, "--device", "cpu", "--out", out, *args)
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text()), result.output


def one_error(result) -> str:
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    return errors[0]


# --- labels drawn from the data -------------------------------------------------------------------------------


def test_generated_labels_follow_the_data_label_distribution():
    """stylegan2-ada's draw (the label of a uniformly drawn real image): frequencies within 4 sigma of the data's."""
    from ganzoo.metrics.conditional import chunk_labels, generated_labels

    data = np.repeat(np.arange(4), [7000, 2000, 900, 100])  # unbalanced: 70%, 20%, 9%, 1%
    n = 20_000
    drawn = generated_labels(data, n, seed=5, chunk=500)
    share = np.bincount(data, minlength=4) / len(data)
    sigma = np.sqrt(share * (1 - share) / n)
    assert np.all(np.abs(np.bincount(drawn, minlength=4) / n - share) < 4 * sigma)
    # chunk by chunk from (seed, chunk index): the same whatever else is drawn, another for another seed
    assert np.array_equal(drawn[500:1000], chunk_labels(data, 500, 5, 1))
    assert np.array_equal(generated_labels(data, 1200, 5, 500), drawn[:1200])
    assert not np.array_equal(generated_labels(data, 1200, 6, 500), drawn[:1200])


def embedded_label_of(images: np.ndarray) -> np.ndarray:
    """The class of each image, found by looking it up among the embedded test images (the lookup generator
    returns them exactly)."""
    from ganzoo.api import IMAGES, DataSpec
    from ganzoo.data import load_images

    data = load_images(None, DataSpec(IMAGES, 32, 1))
    index = {image.tobytes(): int(label) for image, label in zip(data.images.numpy(), data.labels.numpy())}
    return np.array([index[image.tobytes()] for image in images])


def test_a_run_and_its_export_ask_for_the_same_data_drawn_labels_and_get_those_classes(lookup_runs, tmp_path):
    import torch

    from ganzoo.metrics.conditional import generated_labels
    from ganzoo.metrics.sources import from_onnx, from_run

    run = lookup_runs["true"]
    assert invoke("export", run, "--out", tmp_path / "export").exit_code == 0
    model = next((tmp_path / "export").glob("*.onnx"))
    n = 1100  # three chunks, the last one short
    (torch_task,) = from_run(run, None, None, torch.device("cpu"), 64, seed=3).tasks
    (onnx_task,) = from_onnx(model, None, "cpu", 7, seed=3).tasks
    from ganzoo.data.embedded import load_fashion_mnist

    data_labels = load_fashion_mnist()[1]
    asked = generated_labels(data_labels, n, 3, 500)
    assert np.array_equal(torch_task.labels.generated(n), asked)
    assert np.array_equal(onnx_task.labels.generated(n), asked)
    images = np.concatenate(list(torch_task.fake(n)))
    assert np.array_equal(np.concatenate(list(onnx_task.fake(n))), images)
    assert np.array_equal(embedded_label_of(images), asked)  # each image is of the class it was asked for


# --- the metrics, from their definitions -----------------------------------------------------------------------


def test_intra_class_fd_is_the_mean_of_per_class_fds_computed_directly(lookup_runs, tmp_path):
    import torch

    from ganzoo.metrics import frechet_distance_from_features
    from ganzoo.metrics.evaluate import real_subset
    from ganzoo.metrics.extractors import load_extractor
    from ganzoo.metrics.sources import from_run

    n, seed = 600, 4
    record, output = evaluate(lookup_runs["scrambled"], tmp_path / "e.json", "--n", n, "--seed", seed,
                              "--metrics", "intra-fd-fmnist,fd-fmnist")
    result = record["results"]["samples"]
    (task,) = from_run(lookup_runs["scrambled"], None, None, torch.device("cpu"), 64, seed).tasks
    fmnist = load_extractor("fmnist", "cpu")
    real = fmnist.features(real_subset(task.real, n, seed))
    real_labels = real_subset(task.labels.real, n, seed)
    fake = fmnist.features(np.concatenate(list(task.fake(n))))
    fake_labels = task.labels.generated(n)
    expected = {}
    for c, name in enumerate(task.labels.classes):
        count = min((real_labels == c).sum(), (fake_labels == c).sum())  # StudioGAN: as many fake as real
        expected[name] = frechet_distance_from_features(real[real_labels == c][:count],
                                                        fake[fake_labels == c][:count])
    assert result["per_class"]["intra-fd-fmnist"] == pytest.approx(expected, rel=1e-9)
    assert result["values"]["intra-fd-fmnist"] == pytest.approx(np.mean(list(expected.values())), rel=1e-9)
    assert result["classes"]["real"] == np.bincount(real_labels, minlength=10).tolist()
    assert result["classes"]["generated"] == np.bincount(fake_labels, minlength=10).tolist()
    rows = [line.split() for line in output.splitlines()]
    assert ["per", "class", "real", "generated", "intra-fd-fmnist"] in rows
    last = f"9 {task.labels.classes[9]}".split()
    assert [*last, str(result["classes"]["real"][9]), str(result["classes"]["generated"][9]),
            f"{expected[task.labels.classes[9]]:.6g}"] in rows


def test_class_accuracy_is_the_classifiers_on_real_images_and_chance_when_labels_are_scrambled(lookup_runs, tmp_path):
    n = 1000
    true, _ = evaluate(lookup_runs["true"], tmp_path / "true.json", "--n", n)
    scrambled, _ = evaluate(lookup_runs["scrambled"], tmp_path / "scrambled.json", "--n", n,
                            "--metrics", "fd-fmnist,intra-fd-fmnist,class-accuracy")
    # the default metrics of a conditional run on the embedded data include both conditional metrics
    assert true["metrics"] == ["fd-fmnist", "kid", "pr", "intra-fd-fmnist", "class-accuracy"]
    a, b = true["results"]["samples"], scrambled["results"]["samples"]
    accuracy = a["values"]["class-accuracy"]
    assert 0.85 <= accuracy <= 1.0  # real test images of the class asked for: the classifier's test accuracy
    assert abs(b["values"]["class-accuracy"] - 0.1) < 0.04  # the class ignores the label: chance in ten (4 sigma)
    assert set(a["per_class"]["class-accuracy"]) == set(true["results"]["samples"]["classes"]["names"])
    # plain FD sees two sets of real images; intra-class FD sees the classes mixed up
    assert b["values"]["intra-fd-fmnist"] > 5 * a["values"]["intra-fd-fmnist"]
    assert b["values"]["fd-fmnist"] < 2 * a["values"]["fd-fmnist"] + 1


def test_class_accuracy_equals_the_classifier_on_the_same_images(lookup_runs):
    """The metric's predictions (the classifier's head on the recorded features) are the classifier's own."""
    import torch

    from ganzoo.metrics.evaluate import evaluate_task
    from ganzoo.metrics.extractors import load_extractor
    from ganzoo.metrics.sources import from_run

    (task,) = from_run(lookup_runs["true"], None, None, torch.device("cpu"), 64, seed=0).tasks
    fmnist = load_extractor("fmnist", "cpu")
    result = evaluate_task(task, ["class-accuracy"], "fmnist", {"fmnist": fmnist}, 700, 0)
    images = torch.from_numpy(np.concatenate(list(task.fake(700))))
    with torch.no_grad():
        predicted = fmnist.extra["classify"](images).argmax(1).numpy()
    assert result["values"]["class-accuracy"] == pytest.approx((predicted == task.labels.generated(700)).mean())


# --- ranking by a metric where higher is better ------------------------------------------------------------------


def test_accuracy_ranks_higher_as_better_and_distances_lower():
    from ganzoo.metrics.suite import RANKED, better

    assert better("class-accuracy", 0.9, 0.8) and not better("class-accuracy", 0.8, 0.9)
    assert better("intra-fd-fmnist", 8.0, 9.0) and not better("fd-fmnist", 9.0, 8.0)
    assert {"intra-fid", "intra-fd-fmnist", "intra-fd-dinov2", "class-accuracy"} <= set(RANKED)


def test_training_ranks_checkpoints_by_accuracy_higher_is_better(plugin, tmp_path):
    """A generator true to the label for a growing share of its images: accuracy rises step by step, so the
    best checkpoint is the last (a lower-is-better ranking would keep the first)."""
    from ganzoo.train import checkpoint as ckpt

    run = train(tmp_path / "run", "gzeval-lookup", "--cond", "--set", "learn=true", "--set", "lr=0.25",
                "--eval-every", 1, "--eval-n", 300, "--eval-metric", "class-accuracy", steps=4)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "eval/class-accuracy" in r]
    accuracy = [r["eval/class-accuracy"] for r in evals]
    assert [r["step"] for r in evals] == [1, 2, 3, 4] and accuracy == sorted(accuracy) and accuracy[0] < accuracy[-1]
    assert all("eval/intra-fd-fmnist" in r for r in evals)  # logged beside it: it reuses the same features
    assert ckpt.step_of(ckpt.best_checkpoint(run)) == 4
    again, _ = evaluate(run, tmp_path / "e.json", "--step", "best", "--n", 300,
                        "--metrics", "class-accuracy,intra-fd-fmnist")
    values = again["results"]["samples"]["values"]
    assert values["class-accuracy"] == pytest.approx(accuracy[-1], rel=1e-12)
    assert values["intra-fd-fmnist"] == pytest.approx(evals[-1]["eval/intra-fd-fmnist"], rel=1e-9)


def test_a_conditional_dcgan_is_evaluated_alike_while_training_by_ganzoo_eval_and_from_its_export(tmp_path):
    """End to end with a real conditional architecture: the default training evaluation logs the conditional
    metrics; ganzoo eval of the checkpoint and of its ONNX export agree."""
    run = train(tmp_path / "run", "dcgan", "--cond", "--preset", "smoke", "--eval-every", 2, "--eval-n", 300)
    evals = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "eval/fd-fmnist" in r]
    assert [r["step"] for r in evals] == [2]
    assert {"eval/intra-fd-fmnist", "eval/class-accuracy"} <= set(evals[0])
    torch_record, _ = evaluate(run, tmp_path / "torch.json", "--n", 300, "--batch-size", 32)
    assert torch_record["results"]["samples"]["values"]["fd-fmnist"] == pytest.approx(evals[0]["eval/fd-fmnist"],
                                                                                      rel=1e-9)
    assert torch_record["results"]["samples"]["classes"]["names"] == list(CLASS_NAMES)
    assert invoke("export", run, "--out", tmp_path / "export").exit_code == 0
    model = next((tmp_path / "export").glob("*.onnx"))
    onnx_record, _ = evaluate(model, tmp_path / "onnx.json", "--n", 300, "--batch-size", 7)
    a, b = torch_record["results"]["samples"], onnx_record["results"]["samples"]
    assert a["classes"] == b["classes"] and a["values"].keys() == b["values"].keys()
    for key, value in a["values"].items():
        assert b["values"][key] == pytest.approx(value, rel=2e-3, abs=2e-3), key


# --- refusals -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dcgan_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("plain") / "dcgan"
    result = invoke("train", "dcgan", *SMOKE, "--steps", 1, "--out", run)
    assert result.exit_code == 0, result.output
    return run


@pytest.mark.parametrize("metric", ["class-accuracy", "intra-fd-fmnist", "intra-fid"])
def test_conditional_metrics_of_an_unconditional_run_are_refused(dcgan_run, tmp_path, metric):
    error = one_error(invoke("eval", dcgan_run, "--n", 100, "--metrics", f"fd-fmnist,{metric}",
                             "--out", tmp_path / "e.json"))
    assert f"{metric} needs a class-conditional generator" in error and "it is unconditional" in error
    assert not (tmp_path / "e.json").exists()


def test_a_conditional_eval_metric_for_an_unconditional_run_is_refused_before_the_run_exists(tmp_path):
    result = invoke("train", "dcgan", *SMOKE, "--steps", 1, "--eval-every", 1, "--eval-metric", "class-accuracy",
                    "--out", tmp_path / "run")
    error = one_error(result)
    assert "--eval-metric class-accuracy needs a class-conditional generator, and this run is not" in error
    assert not (tmp_path / "run").exists()


def test_too_few_images_of_a_class_for_intra_class_fd_is_named(lookup_runs, tmp_path):
    error = one_error(invoke("eval", lookup_runs["true"], "--n", 12, "--metrics", "intra-fd-fmnist",
                             "--out", tmp_path / "e.json"))
    assert "intra-fd-fmnist needs at least 2 real and 2 generated images of every class" in error
    assert "use a larger --n" in error and "(--n 12)" in error


def test_class_accuracy_needs_fashion_mnist_classes():
    from ganzoo.errors import UserError
    from ganzoo.metrics.sources import Task, TaskLabels
    from ganzoo.metrics.suite import refuse_inapplicable

    task = Task("", np.zeros((4, 1, 32, 32), np.uint8), lambda n: iter(()),
                labels=TaskLabels(["cat", "dog"], np.array([0, 1, 0, 1]), lambda n: np.zeros(n, np.int64)))
    refuse_inapplicable(["intra-fd-fmnist"], task, "runs/pets")  # applies to any classes
    with pytest.raises(UserError) as caught:
        refuse_inapplicable(["class-accuracy"], task, "runs/pets")
    assert str(caught.value) == ("class-accuracy needs a generator of Fashion-MNIST's ten classes (the fmnist "
                                 "classifier knows only those), and runs/pets has 2 classes (cat, dog); intra-class "
                                 "FD applies (e.g. --metrics intra-fid,intra-fd-dinov2,intra-fd-fmnist)")


def test_a_conditional_run_evaluated_on_unlabelled_data_is_refused(lookup_runs, tmp_path):
    from PIL import Image

    folder = tmp_path / "flat"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8)).save(folder / f"{i}.png")
    error = one_error(invoke("eval", lookup_runs["true"], "--data", folder, "--n", 10, "--metrics", "fd-fmnist",
                             "--out", tmp_path / "e.json"))
    assert f"{folder} has no class labels, and a conditional run needs a class for every image" in error


def test_data_with_labels_beyond_the_runs_classes_is_refused(lookup_runs, tmp_path):
    """stylegan2-ada's dataset.json labelling 12 classes, for a run of 10."""
    from PIL import Image

    folder = tmp_path / "labelled"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8)).save(folder / f"{i}.png")
    (folder / "dataset.json").write_text(json.dumps({"labels": [[f"{i}.png", i] for i in range(12)]}))
    error = one_error(invoke("eval", lookup_runs["true"], "--data", folder, "--n", 10, "--metrics", "fd-fmnist",
                             "--out", tmp_path / "e.json"))
    assert "has labels up to 11, but" in error and "has 10 classes (0 to 9)" in error


def test_data_with_other_class_names_is_refused_naming_both_lists(lookup_runs, tmp_path):
    """A folder of class subfolders (cat/, dog/): its labels fit the run's 10 classes, but they mean others."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (tmp_path / "pets" / name).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8)).save(tmp_path / "pets" / name / f"{i}.png")
    error = one_error(invoke("eval", lookup_runs["true"], "--data", tmp_path / "pets", "--n", 10,
                             "--metrics", "fd-fmnist", "--out", tmp_path / "e.json"))
    assert "was trained on 10 classes (T-shirt/top, Trouser, Pullover" in error
    assert f"but {tmp_path / 'pets'} has 2 classes (cat, dog)" in error
