"""The shipped ``fmnist`` extractor: its accuracy, its input convention, an fd-fmnist that ranks samples sensibly."""

from __future__ import annotations

import hashlib
import pickle

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from ganzoo.api import DataSpec
from ganzoo.data import _resize_uint8, embedded_images
from ganzoo.errors import UserError
from ganzoo.metrics import frechet_distance_from_features
from ganzoo.metrics.extractors import load_extractor
from ganzoo.metrics.extractors import fmnist

N = 450  # images per compared set: every class has more than this in each half of the test split


@pytest.fixture(scope="module")
def extractor():
    return load_extractor("fmnist", "cpu", batch_size=256)


@pytest.fixture(scope="module")
def test_split():
    """The embedded 10k test split (held out from the classifier's training), uint8 (N, 1, 32, 32)."""
    return embedded_images(DataSpec("images", 32, 1))


@pytest.fixture(scope="module")
def test_features(extractor, test_split):
    return extractor.features(test_split[0])


def predictions(extractor, images: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([extractor.extra["classify"](chunk).argmax(1) for chunk in images.split(1000)])


def test_shipped_weights_classify_the_held_out_split_at_the_recorded_accuracy(extractor, test_split):
    images, labels = test_split
    accuracy = (predictions(extractor, images) == labels).double().mean().item()
    recorded = float(extractor.extra["metadata"]["test_accuracy"])
    assert recorded >= 0.90
    assert abs(accuracy - recorded) <= 0.005, (accuracy, recorded)
    weights = fmnist.default_weights()
    assert weights.stat().st_size < 400_000, "the shipped file stays a few hundred KB"
    assert extractor.describe()["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert extractor.describe()["feature_dim"] == 128


def test_features_do_not_depend_on_batch_size(test_split):
    images = test_split[0][:64]
    by_size = {size: load_extractor("fmnist", "cpu", batch_size=size).features(images) for size in (1, 7, 64)}
    for size in (1, 7):
        np.testing.assert_allclose(by_size[size], by_size[64], rtol=1e-5, atol=1e-5, err_msg=f"batch size {size}")


def test_features_are_deterministic(extractor, test_split, test_features):
    again = load_extractor("fmnist", "cpu", batch_size=256).features(test_split[0][:500])
    assert test_features.shape == (10_000, 128) and test_features.dtype == np.float64
    np.testing.assert_array_equal(again, test_features[:500])
    assert np.all(test_features >= 0), "features are taken after a ReLU"


def blur(images: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Separable Gaussian blur of uint8 images, edges replicated."""
    radius = int(3 * sigma + 0.5)
    kernel = torch.exp(-torch.arange(-radius, radius + 1.0) ** 2 / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    x = F.conv2d(F.pad(images.float(), (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))
    return x.round().clamp(0, 255).to(torch.uint8)


def test_fd_fmnist_ranks_held_out_real_then_blurred_then_one_class_then_noise(extractor, test_split, test_features):
    """Real images of one half against the other half; every class alone; noise of two kinds.

    Uniform pixel noise is one of the kinds the classifier's reject class saw in
    training; binary (salt-and-pepper) noise is not, and must land as far.
    """
    images, labels = test_split
    first, reference = slice(0, 5000), test_features[5000:]
    generator = torch.Generator().manual_seed(0)

    def fd(candidate: np.ndarray) -> float:
        return frechet_distance_from_features(candidate, reference)

    held_out = fd(test_features[first][:N])
    blurred = fd(extractor.features(blur(images[first][:N])))
    first_labels = labels[first].numpy()
    one_class = [fd(test_features[first][first_labels == c][:N]) for c in range(10)]
    uniform = fd(extractor.features(torch.randint(0, 256, (N, 1, 32, 32), generator=generator, dtype=torch.uint8)))
    binary = fd(extractor.features((torch.rand(N, 1, 32, 32, generator=generator) < 0.5).to(torch.uint8) * 255))

    print(f"fd-fmnist, {N} images against 5000: held-out real {held_out:.1f}, blurred {blurred:.1f}, one class "
          f"{min(one_class):.1f}..{max(one_class):.1f}, uniform noise {uniform:.1f}, binary noise {binary:.1f}")
    assert held_out < blurred < min(one_class)
    assert max(one_class) < uniform
    assert max(one_class) < binary


def test_rgb_becomes_grey_exactly_as_pillow_decodes_it():
    from PIL import Image

    rgb = torch.randint(0, 256, (1, 3, 16, 16), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    pillow = np.asarray(Image.fromarray(rgb[0].permute(1, 2, 0).numpy(), "RGB").convert("L"))
    np.testing.assert_array_equal(fmnist.to_grey(rgb)[0, 0].numpy(), pillow)


def test_other_sizes_are_resized_as_the_data_pipeline_resizes(test_split):
    images = test_split[0][:20]
    for size in (16, 64):
        scaled = _resize_uint8(images, size)
        assert torch.equal(fmnist.resize(scaled), _resize_uint8(scaled, 32))
    assert fmnist.resize(images) is images


def test_larger_rgb_images_are_still_recognised(extractor, test_split):
    """The embedded split decoded at 64x64 RGB (what a 64-px RGB generator is compared with)."""
    images, labels = embedded_images(DataSpec("images", 64, 3))
    accuracy = (predictions(extractor, images[:2000]) == labels[:2000]).double().mean().item()
    assert accuracy > 0.87, accuracy


def test_images_with_other_channel_counts_are_refused_by_name(extractor):
    with pytest.raises(UserError, match="got 2 channels"):
        extractor.features(torch.zeros(2, 2, 32, 32, dtype=torch.uint8))


def save_safetensors(path, tensors):
    from safetensors.torch import save_file

    save_file({name: t.contiguous() for name, t in tensors.items()}, str(path))


def good_tensors() -> dict[str, torch.Tensor]:
    return {name: t.clone() for name, t in fmnist.FmnistClassifier().state_dict().items()}


def test_weights_of_the_wrong_shape_are_one_error_naming_file_tensor_and_shapes(tmp_path):
    tensors = good_tensors()
    tensors["embed.1.weight"] = torch.zeros(128, 512)
    path = tmp_path / "wrong.safetensors"
    save_safetensors(path, tensors)
    with pytest.raises(UserError) as caught:
        load_extractor("fmnist", "cpu", weights=path)
    message = str(caught.value)
    assert str(path) in message and "'embed.1.weight'" in message
    assert "(128, 512)" in message and "(128, 1024)" in message


@pytest.mark.parametrize("damage", ["missing tensor", "extra tensor", "integer tensor", "nan", "not safetensors",
                                    "no file"])
def test_every_bad_weights_file_is_one_error_naming_it(tmp_path, damage):
    tensors, path = good_tensors(), tmp_path / "bad.safetensors"
    if damage == "missing tensor":
        del tensors["head.bias"]
    elif damage == "extra tensor":
        tensors["head.scale"] = torch.ones(1)
    elif damage == "integer tensor":
        tensors["head.bias"] = torch.zeros(fmnist.NUM_CLASSES, dtype=torch.int32)
    elif damage == "nan":
        tensors["head.bias"][0] = float("nan")
    if damage == "not safetensors":
        path.write_bytes(b"this is not a weights file at all")
    elif damage != "no file":
        save_safetensors(path, tensors)
    with pytest.raises(UserError, match=str(path)):
        load_extractor("fmnist", "cpu", weights=path)


class _Payload:
    """Unpickling this creates a file: proof that a loader executed what it read."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickle_given_as_weights_is_refused_unread(tmp_path):
    path, marker = tmp_path / "weights.pt", tmp_path / "executed"
    path.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(UserError, match=str(path)):
        load_extractor("fmnist", "cpu", weights=path)
    assert not marker.exists()
