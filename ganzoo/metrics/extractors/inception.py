"""`inception`: the standard FID network, pool3 features (2048-d), run by torch-fidelity's own module.

FID numbers only compare when network, weights and resize are the reference
ones, so nothing here is re-implemented: ``FeatureExtractorInceptionV3`` of
torch-fidelity (the pytorch-fid port of the 2015-12-05 TensorFlow graph) does
the TF1-compatible bilinear resize to 299x299, ``(x - 128) / 128`` and the
network. Its constructor reads weights with ``torch.load(weights_only=False)``,
which could execute code from a file, so it never gets to read one: it is handed
an empty in-memory dict, and we load the real file ourselves, weights-only,
after checking that every tensor fits.

The weights file is torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth``
(byte-identical to pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``).
"""

from __future__ import annotations

import io
from pathlib import Path

from .base import Extractor, check_precision, network_precision
from .weights import WeightsSource, check_fits, locate, read_state_dict, sha256_of, torch_hub_checkpoints

NAME = "inception"
FILE_NAME = "weights-inception-2015-12-05-6726825d.pth"  # torch-fidelity's name, in torch hub's checkpoints folder
PYTORCH_FID_FILE_NAME = "pt_inception-2015-12-05-6726825d.pth"  # pytorch-fid's copy of the same file
URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
BYTES = 95_628_359
INPUT_SIZE = 299
FEATURE_DIM = 2048
RESIZE = "bilinear to 299x299 as TensorFlow 1.x does it (torch-fidelity's interpolate_bilinear_2d_like_tensorflow1x)"
NORMALISATION = "(x - 128) / 128 on [0, 255] pixels (torch-fidelity, as in the TF graph)"


def weights_source() -> WeightsSource:
    """torch hub's checkpoints folder (torch-fidelity's name, then pytorch-fid's), else a verified download there."""
    checkpoints = torch_hub_checkpoints()
    put_at = checkpoints / FILE_NAME

    def download() -> Path:
        from ...data.download import download as fetch

        return fetch(URL, put_at, expected_bytes=BYTES, sha256=SHA256, progress=True).path

    return WeightsSource(what="the inception (FID) weights", put_at=put_at, url=URL,
                         cached=(put_at, checkpoints / PYTORCH_FID_FILE_NAME), download=download)


def network():
    """torch-fidelity's InceptionV3 (feature '2048') with its own random initialisation: no file is read."""
    import torch
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class _InceptionV3(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, *args, **kwargs):
            if not state_dict:  # the empty placeholder given to torch-fidelity's constructor below
                return None
            return super().load_state_dict(state_dict, *args, **kwargs)

    empty = io.BytesIO()
    torch.save({}, empty)
    empty.seek(0)
    return _InceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=empty)


def load(device, weights: Path | None = None, batch_size: int = 64, precision: str = "fp32") -> Extractor:
    """The FID Inception on ``device``, from ``weights`` or the torch hub cache (downloaded there when online)."""
    check_precision(precision)
    path = locate(weights_source(), weights)
    return wrap(load_network(path), device, path, sha256_of(path), batch_size, precision)


def load_network(path: Path):
    """torch-fidelity's InceptionV3 with the weights of ``path`` (weights-only), checked to fit."""
    state = read_state_dict(path, NAME)
    net = network()
    expected = net.state_dict()
    for name, tensor in expected.items():  # unused in eval mode; files converted before they existed lack them
        if name.endswith("num_batches_tracked"):
            state.setdefault(name, tensor)
    check_fits(state, expected, path, NAME)
    net.load_state_dict(state, strict=True)
    return net


def random_network(seed: int = 0):
    """The same network with random weights (no file): He-normal convolutions, so pool3 features are O(1)
    as with the real weights (torch-fidelity's own initialisation leaves them near 1e-8). For speed
    measurements and tests where no weights file is on the machine."""
    import math

    import torch

    net = network()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if name.endswith("conv.weight"):
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * math.sqrt(2.0 / tensor[0].numel()))
            elif name.startswith("fc."):
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.02)
    return net


def wrap(net, device, path: Path | None, digest: str, batch_size: int = 64, precision: str = "fp32") -> Extractor:
    """An Extractor around a loaded network. Autocast wraps torch-fidelity's forward, whose TF1 bilinear
    resize (indexing and elementwise arithmetic) and ``(x - 128) / 128`` are no autocast ops, so they stay
    float32; the convolutions run in ``precision``."""
    import torch

    check_precision(precision)
    net.eval().to(device)

    def embed(images: torch.Tensor) -> torch.Tensor:
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        elif images.shape[1] != 3:
            raise ValueError(f"{NAME}: expected 1 or 3 channels, got {images.shape[1]}")
        with network_precision(device, precision):
            return net(images)[0]

    return Extractor(name=NAME, input_size=INPUT_SIZE, feature_dim=FEATURE_DIM, resize=RESIZE,
                     normalisation=NORMALISATION, weights=path, weights_sha256=digest, batch_size=batch_size,
                     embed=embed, device=torch.device(device), extra={"reference_weights": digest == SHA256},
                     precision=precision)
