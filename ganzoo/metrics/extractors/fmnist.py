"""The ``fmnist`` extractor: a small Fashion-MNIST classifier shipped with ganzoo, so ``ganzoo eval`` works offline.

Inception and DINOv2 weights need a download; this network's weights are in the
package (``ganzoo/metrics/weights/fmnist-classifier.safetensors``, about 300 KB).
It was trained by ``scripts/train_fmnist_classifier.py`` on the 60k
Fashion-MNIST train split, so the embedded 10k test split, which ``ganzoo eval``
uses as reference images, is held out. Its feature is the 128-d penultimate
(post-ReLU) layer: "FID with a domain classifier", reported as ``fd-fmnist``.

Besides the ten garment classes it has an eleventh, "not Fashion-MNIST",
trained on synthetic noise images (outlier exposure). A plain ten-class
classifier has no features for noise: it maps noise near the middle of its
class clusters, so the Frechet distance of pure noise came out below that of a
generator collapsed onto one class. With the reject class, noise lands farther
from the real images than any single class does.

Input convention, the same for training and evaluation: uint8 (N, C, H, W);
RGB becomes grey by ITU-R 601 luma with Pillow's integer rounding (as
``ganzoo.runtime.image_files`` decodes folders); sizes other than 32x32 are
resized by bilinear interpolation, antialiased when shrinking, rounded back to
uint8 (as ``ganzoo.data`` resizes the embedded set); pixels are mapped to
[-1, 1] by ``x / 127.5 - 1``. 28x28 Fashion-MNIST digits sit in 32x32 frames
with 2 black pixels on every side, as the embedded data does.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ...errors import UserError
from ...fileio import sha256_of
from .base import Extractor, check_precision, network_precision

INPUT_SIZE = 32
FEATURE_DIM = 128
NUM_CLASSES = 11  # the ten Fashion-MNIST classes, then NOT_FMNIST
NOT_FMNIST = 10  # the reject class: synthetic noise images seen in training
WEIGHTS_NAME = "fmnist-classifier.safetensors"
RESIZE = "bilinear to 32x32, antialiased when shrinking, rounded to uint8 (as ganzoo.data resizes)"
NORMALISATION = "RGB to grey by ITU-R 601 luma (Pillow's rounding); x / 127.5 - 1 to [-1, 1]"


class FmnistClassifier(nn.Module):
    """Three conv blocks (16, 32, 64 channels; 32 -> 16 -> 8 -> 4 px), a 128-d ReLU embedding, 11 logits."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # 16x16
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 8x8
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 4x4
        )
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(64 * 4 * 4, FEATURE_DIM), nn.ReLU())
        self.dropout = nn.Dropout(0.3)  # training only; features are taken before it
        self.head = nn.Linear(FEATURE_DIM, NUM_CLASSES)

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """The feature: float [-1, 1] (n, 1, 32, 32) -> (n, 128), after the ReLU."""
        return self.embed(self.conv(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.embedding(x)))


def expected_shapes() -> dict[str, tuple[int, ...]]:
    """Every tensor a weights file must hold, with its shape."""
    return {name: tuple(t.shape) for name, t in FmnistClassifier().state_dict().items()}


def to_grey(images: torch.Tensor) -> torch.Tensor:
    """uint8 (n, 3, H, W) RGB -> (n, 1, H, W) luma, bit-exact with Pillow's ``convert('L')``."""
    rgb = images.to(torch.int32)
    luma = (rgb[:, 0] * 19595 + rgb[:, 1] * 38470 + rgb[:, 2] * 7471 + 0x8000) >> 16
    return luma.to(torch.uint8).unsqueeze(1)


def resize(images: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """uint8 (n, C, H, W) -> uint8 (n, C, size, size): bilinear, antialiased when shrinking, rounded."""
    if tuple(images.shape[-2:]) == (size, size):
        return images
    shrinking = max(images.shape[-2:]) > size
    out = F.interpolate(images.float(), size=(size, size), mode="bilinear", align_corners=False,
                        antialias=shrinking)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def prepare(images: torch.Tensor) -> torch.Tensor:
    """uint8 (n, 1 or 3, H, W) -> float [-1, 1] (n, 1, 32, 32): what the classifier was trained on."""
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"fmnist: expected uint8 (N, C, H, W) images, got {images.dtype} {tuple(images.shape)}")
    channels = images.shape[1]
    if channels == 3:
        images = to_grey(images)
    elif channels != 1:
        raise UserError(f"the fmnist extractor takes grey (1-channel) or RGB (3-channel) images, "
                        f"got {channels} channels")
    return resize(images).float() / 127.5 - 1.0


def default_weights() -> Path:
    """The weights file shipped inside the package."""
    return Path(str(resources.files("ganzoo.metrics").joinpath("weights", WEIGHTS_NAME)))


def read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """float32 tensors and metadata from a safetensors file, checked against the architecture.

    Never unpickles: safetensors holds raw arrays and a JSON header. Every
    problem (missing file, not safetensors, a tensor missing, extra, of the
    wrong shape or type, not finite) is one UserError naming the file.
    """
    from safetensors import SafetensorError, safe_open

    if path.is_dir():
        raise UserError(f"fmnist classifier weights {path} is a folder; give the weights file itself (the fmnist "
                        f"extractor reads a safetensors file such as the shipped {WEIGHTS_NAME})")
    if not path.is_file():
        raise UserError(f"fmnist classifier weights {path} "
                        + ("not found" if not path.exists() else "is not a regular file (a FIFO or device)")
                        + (" (reinstall ganzoo)" if path == default_weights() else ""))
    expected = expected_shapes()
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            found = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
            problems = _shape_problems(found, expected)
            if problems:
                raise UserError(f"{path} is not fmnist classifier weights: " + "; ".join(problems))
            tensors = {name: f.get_tensor(name) for name in expected}
    except OSError as exc:
        raise UserError(f"cannot read fmnist classifier weights {path}: {exc.strerror or exc}") from None
    except SafetensorError as exc:  # safetensors' own words ("header too large") do not say what the file is
        raise UserError(f"{path} is not a safetensors file of the fmnist classifier, which the fmnist extractor "
                        f"needs (such as the shipped {WEIGHTS_NAME}; safetensors says: {exc})") from None
    for name, tensor in tensors.items():
        if not tensor.is_floating_point():
            raise UserError(f"{path}: tensor '{name}' is {tensor.dtype}, expected floating point")
        tensors[name] = tensor.float()
        if not torch.isfinite(tensors[name]).all():
            raise UserError(f"{path}: tensor '{name}' contains NaN or infinite values")
    return tensors, metadata


def _shape_problems(found: dict[str, tuple], expected: dict[str, tuple]) -> list[str]:
    """What differs between a file's tensors and the architecture's, one phrase per tensor."""
    problems = [f"tensor '{name}' is missing (expected shape {shape})"
                for name, shape in expected.items() if name not in found]
    problems += [f"tensor '{name}' has shape {found[name]}, expected {shape}"
                 for name, shape in expected.items() if name in found and found[name] != shape]
    problems += [f"unexpected tensor '{name}'" for name in found if name not in expected]
    return problems


def load_network(path: Path, device="cpu") -> tuple[FmnistClassifier, dict[str, str]]:
    """The classifier from a weights file, in eval mode on ``device``, and the file's metadata."""
    tensors, metadata = read_weights(path)
    network = FmnistClassifier()
    network.load_state_dict(tensors)
    return network.to(device).eval(), metadata


def load(device, weights: Path | None = None, batch_size: int = 256, precision: str = "fp32") -> Extractor:
    """The fmnist extractor: the shipped weights, or the file ``weights`` names (``--weights``);
    the network in ``precision`` (autocast), grey conversion, resize and scaling in float32."""
    check_precision(precision)
    path = Path(weights).expanduser() if weights is not None else default_weights()
    device = torch.device(device)
    network, metadata = load_network(path, device)

    def embed(images: torch.Tensor) -> torch.Tensor:
        x = prepare(images)
        with network_precision(device, precision):
            return network.embedding(x)

    def classify(images: torch.Tensor) -> torch.Tensor:
        """Class logits of uint8 images, one batch (for checking the network, not a metric)."""
        x = prepare(images)
        with network_precision(device, precision):
            return network(x)

    def predict(features):
        """The class (0-9, or NOT_FMNIST) of each row of features: the classifier's head on its own feature
        (dropout is off at evaluation), so class-accuracy needs no second pass over the images."""
        with torch.inference_mode():
            logits = network.head(torch.as_tensor(features, dtype=torch.float32, device=device))
        return logits.argmax(1).cpu().numpy()

    return Extractor(
        name="fmnist", input_size=INPUT_SIZE, feature_dim=FEATURE_DIM, resize=RESIZE,
        normalisation=NORMALISATION, weights=path, weights_sha256=sha256_of(path),
        batch_size=batch_size, embed=embed, device=device,
        extra={"metadata": metadata, "classify": classify, "network": network, "predict": predict}, precision=precision,
    )


__all__ = ["FmnistClassifier", "load", "load_network", "prepare", "default_weights", "FEATURE_DIM"]
