"""Extractors in reduced precision: autocast around the network only, recorded wherever features are compared.

bf16/fp16 features must be close to fp32 ones (the metric barely moves) and
not bitwise equal (proof that autocast ran); the network's first layer must
still receive float32 (resize and normalisation are not in reduced precision);
the precision is part of describe(), so the reference-feature cache and
`ganzoo eval`'s JSON never mix precisions.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import SMOKE, invoke

from ganzoo.errors import UserError
from ganzoo.metrics.extractors import PRECISIONS, dinov2, fmnist, inception, load_extractor
from ganzoo.metrics.reference import reference_features

SMALL = "vit_small_patch14_dinov2"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: the cores are shared (see tests/test_extractors.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fashion(n: int, size: int = 32, channels: int = 1) -> torch.Tensor:
    from ganzoo.api import DataSpec
    from ganzoo.data import embedded_images

    images, _ = embedded_images(DataSpec(kind="images", resolution=size, channels=channels))
    return images[:n]


def relative_error(features: np.ndarray, reference: np.ndarray) -> float:
    return float(np.linalg.norm(features - reference) / np.linalg.norm(reference))


def first_layer_input_dtypes(layer: torch.nn.Module):
    seen = []
    layer.register_forward_pre_hook(lambda module, args: seen.append(args[0].dtype))
    return seen


def test_precision_is_described_and_fp32_is_the_default():
    assert PRECISIONS == ("fp32", "bf16", "fp16")
    assert load_extractor("fmnist", "cpu").describe()["precision"] == "fp32"
    assert load_extractor("fmnist", "cpu", precision="bf16").describe()["precision"] == "bf16"


@pytest.mark.parametrize("call", [
    lambda: load_extractor("fmnist", "cpu", precision="fp8"),
    lambda: fmnist.load("cpu", precision="half"),
    lambda: inception.wrap(inception.random_network(), "cpu", None, "random", precision="int8"),
])
def test_an_unknown_precision_is_one_error_listing_the_choices(call):
    with pytest.raises(UserError, match=r"unknown precision '\w+'; precisions: fp32, bf16, fp16"):
        call()


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_fmnist_features_in_reduced_precision_are_close_but_not_equal(precision):
    images = fashion(64)
    reference = load_extractor("fmnist", "cpu").features(images)
    reduced = load_extractor("fmnist", "cpu", precision=precision).features(images)
    assert reduced.dtype == np.float64 and reduced.shape == reference.shape
    assert not np.array_equal(reduced, reference)  # autocast ran
    assert relative_error(reduced, reference) < (0.02 if precision == "bf16" else 0.005)


def test_only_the_network_runs_in_reduced_precision():
    """The first layer of each network receives float32 under bf16 autocast: grey conversion, resize and
    normalisation happen before autocast (fmnist, dinov2) or are no autocast ops (inception's TF1 resize)."""
    images = fashion(2)
    extractor = fmnist.load("cpu", precision="bf16")
    conv = extractor.extra["network"].conv[0]
    seen_fmnist, conv_out = first_layer_input_dtypes(conv), []
    conv.register_forward_hook(lambda module, args, out: conv_out.append(out.dtype))
    extractor.features(images)
    assert seen_fmnist == [torch.float32] and conv_out == [torch.bfloat16]

    vit = dinov2.random_network(SMALL)
    seen_vit = first_layer_input_dtypes(vit.patch_embed.proj)
    dinov2.wrap(vit, "cpu", None, "random", precision="bf16", model_name=SMALL).features(images)
    assert seen_vit == [torch.float32]

    net = inception.random_network()
    seen_inception = first_layer_input_dtypes(net.Conv2d_1a_3x3.conv)
    inception.wrap(net, "cpu", None, "random", precision="bf16").features(images[:1])
    assert seen_inception == [torch.float32]


def test_dinov2_and_inception_bf16_features_are_close_to_fp32():
    images = fashion(6, size=40, channels=3)
    vit = dinov2.random_network(SMALL)
    fp32 = dinov2.wrap(vit, "cpu", None, "random", precision="fp32", model_name=SMALL).features(images)
    bf16 = dinov2.wrap(vit, "cpu", None, "random", precision="bf16", model_name=SMALL).features(images)
    assert not np.array_equal(fp32, bf16) and relative_error(bf16, fp32) < 0.05

    net = inception.random_network()
    fp32 = inception.wrap(net, "cpu", None, "random", precision="fp32").features(images[:3])
    bf16 = inception.wrap(net, "cpu", None, "random", precision="bf16").features(images[:3])
    assert not np.array_equal(fp32, bf16) and relative_error(bf16, fp32) < 0.05


def test_the_reference_cache_never_serves_features_of_another_precision(tmp_path, monkeypatch):
    monkeypatch.setenv("GANZOO_HOME", str(tmp_path))
    images = fashion(32).numpy()
    fp32 = load_extractor("fmnist", "cpu")
    bf16 = load_extractor("fmnist", "cpu", precision="bf16")
    first, _, cached = reference_features(images, fp32)
    assert not cached
    reduced, _, cached = reference_features(images, bf16)
    assert not cached and not np.array_equal(first, reduced)  # its own key, not fp32's features
    again, _, cached = reference_features(images, bf16)
    assert cached and np.array_equal(again, reduced)
    assert len(list((tmp_path / "eval-reference").glob("fmnist-*.npy"))) == 2


def test_eval_precision_is_used_and_recorded(tmp_path, monkeypatch):
    monkeypatch.setenv("GANZOO_HOME", str(tmp_path / "home"))
    run = tmp_path / "run"
    assert invoke("train", "dcgan", *SMOKE, "--steps", 2, "--out", run).exit_code == 0
    outputs = {}
    for precision in ("fp32", "bf16"):
        result = invoke("eval", run, "--n", 100, "--metrics", "fd-fmnist", "--precision", precision,
                        "--out", tmp_path / f"{precision}.json")
        assert result.exit_code == 0, result.output
        outputs[precision] = json.loads((tmp_path / f"{precision}.json").read_text())
    for precision, record in outputs.items():
        assert record["precision"] == precision and record["extractors"]["fmnist"]["precision"] == precision
    fd32, fd16 = (outputs[p]["results"]["samples"]["values"]["fd-fmnist"] for p in ("fp32", "bf16"))
    assert fd32 != fd16 and fd16 == pytest.approx(fd32, rel=0.05)


def test_a_bad_eval_precision_is_one_line_before_anything_runs(tmp_path):
    result = invoke("eval", tmp_path / "no-such-run", "--precision", "fp8")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip() == "Error: unknown precision 'fp8'; precisions: fp32, bf16, fp16"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_cuda_features_in_each_precision_are_close_to_the_cpus_fp32(precision):
    """fmnist, DINOv2 ViT-S and Inception (random weights) on CUDA: autocast there is real bf16/fp16 arithmetic."""
    images = fashion(16, size=40, channels=3)
    cpu = load_extractor("fmnist", "cpu").features(images)
    cuda = load_extractor("fmnist", "cuda", precision=precision).features(images)
    assert relative_error(cuda, cpu) < (1e-4 if precision == "fp32" else 0.02)
    vit = dinov2.random_network(SMALL)
    cpu = dinov2.wrap(vit, "cpu", None, "random", model_name=SMALL).features(images)
    cuda = dinov2.wrap(vit, "cuda", None, "random", precision=precision, model_name=SMALL).features(images)
    assert relative_error(cuda, cpu) < (1e-3 if precision == "fp32" else 0.05)
    net = inception.random_network()
    cpu = inception.wrap(net, "cpu", None, "random").features(images[:4])
    cuda = inception.wrap(net, "cuda", None, "random", precision=precision).features(images[:4])
    assert relative_error(cuda, cpu) < (1e-3 if precision == "fp32" else 0.05)
    if precision != "fp32":
        assert not np.array_equal(cuda, inception.wrap(net, "cuda", None, "random").features(images[:4]))
