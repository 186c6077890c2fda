"""The inception and dinov2 feature extractors, offline, on randomly initialised weights files.

No pretrained weights can be fetched here, so every test builds a weights
file of the right shapes with a fixed seed. What is checked is everything but
the trained numbers: shapes, batching invariance, determinism, grey-to-RGB,
the reference resizes, where weights are looked for, every bad weights file,
and (the issue's requirement) that ganzoo's Inception features and FID equal
torch-fidelity's own pipeline on the same images and the same file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganzoo.errors import UserError
from ganzoo.metrics import frechet_distance_from_features
from ganzoo.metrics.extractors import dinov2, inception, load_extractor

SMALL = "vit_small_patch14_dinov2"  # DINOv2 ViT-S/14: timm's same definition as ViT-L/14, 1/14 of the work


# --- weights files of the right shapes ---------------------------------------------------------------


def write_inception_weights(path: Path, seed: int = 0) -> Path:
    """torch-fidelity's InceptionV3 state dict, He-normal convolutions so pool3 features are O(1), not 1e-8."""
    state = inception.network().state_dict()
    generator = torch.Generator().manual_seed(seed)
    for name, tensor in state.items():
        if name.endswith("conv.weight"):
            fan_in = tensor[0].numel()
            state[name] = torch.randn(tensor.shape, generator=generator) * math.sqrt(2.0 / fan_in)
        elif name.startswith("fc."):
            state[name] = torch.randn(tensor.shape, generator=generator) * 0.02
    torch.save(state, path)
    return path


def dinov2_state(model_name: str = SMALL, img_size: int = 518, seed: int = 0) -> dict:
    """timm's DINOv2 state dict at the release's 518 input (37x37 position embeddings), layer scales 1 not 1e-5.

    With timm's init_values of 1e-5 every block is nearly the identity and the
    CLS token hardly depends on the image; the release's layer scales are O(1).
    """
    import timm

    torch.manual_seed(seed)
    net = timm.create_model(model_name, pretrained=False, num_classes=0, img_size=img_size)
    state = net.state_dict()
    for name in state:
        if name.endswith(".gamma"):
            state[name] = torch.ones_like(state[name])
    return state


def write_safetensors(path: Path, state: dict) -> Path:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def images(n: int, size: int = 32, channels: int = 3, seed: int = 0) -> torch.Tensor:
    """Smooth random uint8 images (4x4 noise upsampled): natural-ish statistics, not white noise."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand((n, channels, 4, 4), generator=generator) * 255
    fine = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    return fine.round().clamp(0, 255).to(torch.uint8)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on a machine whose cores are shared, two OpenMP threads spin-wait on each other
    (measured 4.8 s instead of 0.14 s for one Inception image); the features do not depend on it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory) -> Path:
    return write_inception_weights(tmp_path_factory.mktemp("inception") / "random-inception.pth")


@pytest.fixture(scope="module")
def inception_extractor(inception_file):
    return load_extractor("inception", "cpu", weights=inception_file, batch_size=64)


@pytest.fixture(scope="module")
def dinov2_file(tmp_path_factory) -> Path:
    return write_safetensors(tmp_path_factory.mktemp("dinov2") / "random-dinov2-small.safetensors", dinov2_state())


@pytest.fixture(scope="module")
def dinov2_extractor(dinov2_file):
    return dinov2.load("cpu", weights=dinov2_file, batch_size=64, model_name=SMALL)


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    """Every weights cache pointed at an empty folder, downloads off."""
    for name in ("GANZOO_HOME", "TORCH_HOME", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GANZOO_OFFLINE", "1")
    return tmp_path


def at_batch_size(extractor, batch_size: int):
    return dataclasses.replace(extractor, batch_size=batch_size)


def assert_same_features(a: np.ndarray, b: np.ndarray, rtol: float = 1e-4) -> None:
    """Equal up to float32 round-off of differently batched kernels, relative to the features' own scale."""
    scale = np.abs(a).max()
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * scale)


# --- inception ----------------------------------------------------------------------------------------


def test_inception_is_torch_fidelitys_file_and_url():
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    assert inception.URL == URL_INCEPTION_V3
    assert inception.URL.rsplit("/", 1)[1] == inception.FILE_NAME
    assert inception.SHA256.startswith(inception.FILE_NAME.rsplit("-", 1)[1].split(".")[0])  # torch hub's convention


def test_inception_shapes_batching_and_determinism(inception_extractor):
    batch = images(8)
    whole = inception_extractor.features(batch)
    assert whole.shape == (8, 2048) and whole.dtype == np.float64
    assert np.isfinite(whole).all() and whole.std(axis=0).max() > 1e-3  # features depend on the image
    assert np.array_equal(whole, inception_extractor.features(batch))  # deterministic
    for size in (1, 7):
        assert_same_features(whole, at_batch_size(inception_extractor, size).features(batch))
    described = inception_extractor.describe()
    assert described["extractor"] == "inception" and described["input_size"] == 299
    assert described["weights_sha256"] == hashlib.sha256(Path(described["weights"]).read_bytes()).hexdigest()


def test_inception_grey_images_are_replicated_to_rgb(inception_extractor):
    grey = images(3, channels=1, seed=1)
    assert_same_features(inception_extractor.features(grey),
                         inception_extractor.features(grey.repeat(1, 3, 1, 1)), rtol=1e-6)


def test_inception_features_equal_torch_fidelitys_extractor(inception_extractor, inception_file):
    """torch-fidelity's own extractor, built its own way from the same file (it unpickles our file, which is safe)."""
    from torch_fidelity.utils import create_feature_extractor

    theirs = create_feature_extractor("inception-v3-compat", ["2048"], cuda=False,
                                      feature_extractor_weights_path=str(inception_file), verbose=False)
    batch = images(4, size=40, seed=2)
    with torch.no_grad():
        expected = theirs(batch)[0].double().numpy()
    ours = inception_extractor.features(batch)
    assert np.abs(ours - expected).max() <= 1e-3 * np.abs(expected).max()


@pytest.mark.slow
def test_inception_fid_equals_torch_fidelity_on_png_folders(inception_extractor, inception_file, tmp_path):
    """The issue's agreement test: torch_fidelity.calculate_metrics on two PNG folders vs ganzoo, 0.1%."""
    import torch_fidelity

    real, fake = images(40, seed=3), images(40, seed=4)
    fake = (fake.int() * 3 // 4 + 50).to(torch.uint8)  # another distribution: darker range, shifted
    for name, batch in (("real", real), ("fake", fake)):
        (tmp_path / name).mkdir()
        for i, image in enumerate(batch):
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(tmp_path / name / f"{i:03d}.png")
    theirs = torch_fidelity.calculate_metrics(
        input1=str(tmp_path / "real"), input2=str(tmp_path / "fake"), fid=True, cuda=False, cache=False,
        verbose=False, save_cpu_ram=True, feature_extractor_weights_path=str(inception_file),
    )["frechet_inception_distance"]
    ours = frechet_distance_from_features(inception_extractor.features(real), inception_extractor.features(fake))
    assert theirs > 0
    assert abs(ours - theirs) <= 1e-3 * theirs, (ours, theirs)


# --- where weights come from, and bad weights files -----------------------------------------------------


def test_missing_inception_weights_offline_is_one_error_naming_the_path(empty_caches):
    expected = empty_caches / "torch_home" / "hub" / "checkpoints" / inception.FILE_NAME
    with pytest.raises(UserError) as caught:
        load_extractor("inception", "cpu")
    message = str(caught.value)
    assert str(expected) in message and inception.URL in message and "--weights" in message
    assert "\n" not in message
    assert not expected.parent.exists() or not any(expected.parent.iterdir())


def test_missing_dinov2_weights_offline_is_one_error_naming_the_path(empty_caches):
    expected = empty_caches / "torch_home" / "hub" / "checkpoints" / "dinov2_vitl14_pretrain.pth"
    with pytest.raises(UserError) as caught:
        load_extractor("dinov2", "cpu")
    message = str(caught.value)
    assert str(expected) in message and "huggingface.co/timm/vit_large_patch14_dinov2.lvd142m" in message
    assert "dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth" in message
    assert "\n" not in message


def closed_port() -> int:
    """A localhost port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_failed_inception_download_is_one_error_and_leaves_nothing(empty_caches, monkeypatch):
    monkeypatch.delenv("GANZOO_OFFLINE")
    monkeypatch.setattr(inception, "URL", f"http://127.0.0.1:{closed_port()}/{inception.FILE_NAME}")
    expected = empty_caches / "torch_home" / "hub" / "checkpoints" / inception.FILE_NAME
    with pytest.raises(UserError) as caught:
        load_extractor("inception", "cpu")
    message = str(caught.value)
    assert str(expected) in message and "connection refused" in message and "\n" not in message
    assert list(expected.parent.iterdir()) == []  # no partial download left behind


def test_download_into_a_path_through_a_file_is_one_error(empty_caches, monkeypatch):
    """TORCH_HOME below a regular file: the checkpoints folder cannot exist; said, not a NotADirectoryError."""
    monkeypatch.delenv("GANZOO_OFFLINE")
    monkeypatch.setattr(inception, "URL", f"http://127.0.0.1:{closed_port()}/{inception.FILE_NAME}")
    blocker = empty_caches / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("TORCH_HOME", str(blocker / "torch"))
    with pytest.raises(UserError, match=f"into {blocker / 'torch' / 'hub' / 'checkpoints'}: Not a directory"):
        load_extractor("inception", "cpu")


def test_inception_weights_are_found_in_the_torch_hub_cache(empty_caches, inception_file):
    for name in (inception.PYTORCH_FID_FILE_NAME, inception.FILE_NAME):  # either tool's copy; torch-fidelity's first
        cached = empty_caches / "torch_home" / "hub" / "checkpoints" / name
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.symlink_to(inception_file)
        extractor = load_extractor("inception", "cpu")
        assert extractor.weights == cached
        assert extractor.extra == {"reference_weights": False}  # random weights are not the reference file


def hf_cache_entry(hub: Path, model_name: str, blob_name: str, source: Path) -> Path:
    """The Hugging Face cache layout: refs/main -> a snapshot whose model.safetensors links to blobs/<sha256>."""
    repo = hub / f"models--timm--{model_name}.lvd142m"
    revision = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    (repo / "blobs").mkdir()
    (repo / "blobs" / blob_name).symlink_to(source)
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").symlink_to(Path("../../blobs") / blob_name)
    return snapshot / "model.safetensors"


def test_dinov2_weights_are_found_in_the_hugging_face_cache(empty_caches, dinov2_file):
    from ganzoo.metrics.extractors.weights import sha256_of

    digest = sha256_of(dinov2_file)
    cached = hf_cache_entry(empty_caches / "hf_home" / "hub", SMALL, digest, dinov2_file)
    extractor = dinov2.load("cpu", model_name=SMALL)
    assert extractor.weights == cached and extractor.weights_sha256 == digest


def test_damaged_hugging_face_cache_file_is_named(empty_caches, dinov2_file):
    published = "f" * 64  # the hub's sha256 for the file, which this one does not have
    cached = hf_cache_entry(empty_caches / "hf_home" / "hub", SMALL, published, dinov2_file)
    with pytest.raises(UserError, match="is damaged") as caught:
        dinov2.load("cpu", model_name=SMALL)
    assert str(cached) in str(caught.value) and published in str(caught.value)


def test_missing_weights_file_given_is_named(tmp_path):
    missing = tmp_path / "nope.pth"
    for name in ("inception", "dinov2"):
        with pytest.raises(UserError, match=f"weights file {missing} does not exist"):
            load_extractor(name, "cpu", weights=missing)


def test_wrong_shape_inception_weights_name_file_and_tensor(inception_file, tmp_path):
    state = torch.load(inception_file, weights_only=True)
    state["Mixed_6b.branch7x7_2.conv.weight"] = torch.zeros(128, 128, 7, 1)  # (1, 7) kernel transposed
    wrong = tmp_path / "wrong.pth"
    torch.save(state, wrong)
    with pytest.raises(UserError) as caught:
        load_extractor("inception", "cpu", weights=wrong)
    message = str(caught.value)
    assert str(wrong) in message and "Mixed_6b.branch7x7_2.conv.weight" in message
    assert "(128, 128, 7, 1)" in message and "(128, 128, 1, 7)" in message


def test_wrong_size_dinov2_weights_name_file_and_tensor(dinov2_file):
    """ViT-S weights given to the ViT-L extractor: the first tensor that differs is the CLS token."""
    with pytest.raises(UserError) as caught:
        load_extractor("dinov2", "cpu", weights=dinov2_file)
    message = str(caught.value)
    assert str(dinov2_file) in message and "cls_token" in message
    assert "(1, 1, 384)" in message and "(1, 1, 1024)" in message


def test_dinov2_position_embeddings_of_no_square_grid_are_named(tmp_path):
    state = dinov2_state()
    state["pos_embed"] = state["pos_embed"][:, :1000]
    path = write_safetensors(tmp_path / "odd.safetensors", state)
    with pytest.raises(UserError, match=r"tensor pos_embed has shape \(1, 1000, 384\) in the file, "
                                        r"the network needs \(1, 257, 384\)"):
        dinov2.load("cpu", weights=path, model_name=SMALL)


def test_missing_and_unexpected_tensors_are_named(inception_file, tmp_path):
    state = torch.load(inception_file, weights_only=True)
    del state["fc.bias"]
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(UserError, match=r"tensor fc\.bias \(1008\) is missing"):
        load_extractor("inception", "cpu", weights=tmp_path / "missing.pth")
    state = torch.load(inception_file, weights_only=True)
    state["aux.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "extra.pth")
    with pytest.raises(UserError, match=r"a tensor aux\.weight \(3\) the network does not"):
        load_extractor("inception", "cpu", weights=tmp_path / "extra.pth")


class _Payload:
    """Unpickling this would create a file: proof that a weights file never runs code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_weights_file_holding_objects_is_refused_without_running_them(tmp_path):
    marker = tmp_path / "code-ran"
    hostile = tmp_path / "hostile.pth"
    torch.save({"Conv2d_1a_3x3.conv.weight": torch.zeros(1), "x": _Payload(marker)}, hostile)
    for name in ("inception", "dinov2"):
        with pytest.raises(UserError, match="Python objects besides tensors") as caught:
            load_extractor(name, "cpu", weights=hostile)
        assert str(hostile) in str(caught.value)
    assert not marker.exists()


def test_unreadable_weights_files_are_named(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a weights file at all")
    not_a_dict = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], not_a_dict)
    truncated = tmp_path / "truncated.safetensors"
    write_safetensors(truncated, {"a": torch.zeros(1000)})
    truncated.write_bytes(truncated.read_bytes()[:-100])
    for path in (garbage, not_a_dict, truncated):
        with pytest.raises(UserError, match=f"cannot read weights file {path}"):
            load_extractor("inception", "cpu", weights=path)


# --- dinov2 -------------------------------------------------------------------------------------------


def test_dinov2_shapes_batching_and_determinism(dinov2_extractor):
    batch = images(8, seed=5)
    whole = dinov2_extractor.features(batch)
    assert whole.shape == (8, 384) and whole.dtype == np.float64
    assert np.isfinite(whole).all() and whole.std(axis=0).max() > 1e-3
    assert np.array_equal(whole, dinov2_extractor.features(batch))
    for size in (1, 7):
        assert_same_features(whole, at_batch_size(dinov2_extractor, size).features(batch))
    assert dinov2_extractor.describe()["input_size"] == 224


def test_dinov2_grey_images_are_replicated_to_rgb(dinov2_extractor):
    grey = images(2, size=28, channels=1, seed=6)
    assert_same_features(dinov2_extractor.features(grey), dinov2_extractor.features(grey.repeat(1, 3, 1, 1)),
                         rtol=1e-6)


def test_dinov2_feature_is_timms_cls_token_on_imagenet_normalised_input(tmp_path):
    """224x224 input (no resize): ganzoo's features == timm's own forward == the normed CLS token of its features."""
    import timm
    import torchvision.transforms.functional as TF

    state = dinov2_state(img_size=224)
    extractor = dinov2.load("cpu", weights=write_safetensors(tmp_path / "s224.safetensors", state), model_name=SMALL)
    net = timm.create_model(SMALL, pretrained=False, num_classes=0, img_size=224)
    net.load_state_dict(state)
    net.eval()
    batch = images(2, size=224, seed=7)
    x = TF.normalize(batch.float() / 255, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    with torch.no_grad():
        forward = net(x).double().numpy()
        cls_token = net.forward_features(x)[:, 0].double().numpy()
    ours = extractor.features(batch)
    assert_same_features(ours, forward, rtol=1e-5)
    assert_same_features(ours, cls_token, rtol=1e-5)


def test_dinov2_loads_the_original_release_layout(dinov2_extractor, tmp_path):
    """The DINOv2 release's own file (what dgm-eval loads through torch hub) has a mask_token timm does not."""
    state = dinov2_state()
    state["mask_token"] = torch.zeros(1, 384)
    release = tmp_path / "dinov2_vits14_pretrain.pth"
    torch.save(state, release)
    extractor = dinov2.load("cpu", weights=release, model_name=SMALL)
    batch = images(2, seed=8)
    assert np.array_equal(extractor.features(batch), dinov2_extractor.features(batch))


@pytest.mark.parametrize("height,width,channels", [(28, 28, 1), (32, 32, 3), (64, 64, 3), (224, 224, 3),
                                                    (256, 256, 3), (300, 300, 3), (50, 90, 3)])
def test_dinov2_resize_is_pils_bicubic_exactly(height, width, channels):
    """dgm-eval resizes with torchvision's Resize((224, 224), BICUBIC) on a PIL image, i.e. Pillow's uint8 bicubic."""
    import torchvision.transforms as T

    generator = torch.Generator().manual_seed(height * width)
    batch = torch.nn.functional.interpolate(images(3, size=8, channels=channels, seed=height).float(),
                                            size=(height, width), mode="bilinear").round().to(torch.uint8)
    batch[0] = torch.randint(0, 256, batch[0].shape, generator=generator, dtype=torch.uint8)  # noise: overshoot
    resize = T.Resize((224, 224), T.InterpolationMode.BICUBIC)
    reference = np.stack([
        np.asarray(resize(Image.fromarray(image.permute(1, 2, 0).squeeze(-1).numpy(), "L" if channels == 1 else "RGB")))
        .reshape(224, 224, channels) for image in batch
    ])
    ours = dinov2.resize_like_pil(batch).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(ours, reference.astype(np.float64))


def keys_cubic_matrix(old: int, new: int, scale_factor: float) -> torch.Tensor:
    """(new, old) weights of torch's bicubic (Keys, a = -0.75, align_corners=False, borders clamped), written out:
    output i samples source coordinate (i + 0.5) / scale_factor - 0.5."""
    def kernel(t: float) -> float:
        a, t = -0.75, abs(t)
        if t <= 1:
            return ((a + 2) * t - (a + 3)) * t * t + 1
        return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a if t < 2 else 0.0

    weights = torch.zeros((new, old), dtype=torch.float64)
    for i in range(new):
        x = (i + 0.5) / scale_factor - 0.5
        base = math.floor(x)
        for tap in range(base - 1, base + 3):
            weights[i, min(max(tap, 0), old - 1)] += kernel(x - tap)
    return weights


def test_dinov2_position_embeddings_are_interpolated_as_dinov2_does():
    """37x37 -> 16x16 as DINOv2's interpolate_pos_encoding does it: scale factor (16 + 0.1) / 37, not 16 / 37."""
    old, new, dim = 37, 16, 3
    field = torch.randn(1, old * old, dim, generator=torch.Generator().manual_seed(0))
    cls = torch.tensor([[[7.0, -7.0, 0.5]]])
    out = dinov2.interpolate_pos_embed(torch.cat([cls, field], dim=1), new)
    assert out.shape == (1, 1 + new * new, dim) and torch.equal(out[:, :1], cls)
    grid = field[0].reshape(old, old, dim).double()
    for scale, should_match in (((new + 0.1) / old, True), (new / old, False)):
        weights = keys_cubic_matrix(old, new, scale)
        expected = torch.einsum("ia,abd,jb->ijd", weights, grid, weights).reshape(new * new, dim)
        assert torch.allclose(out[0, 1:].double(), expected, atol=1e-4) == should_match


@pytest.mark.slow
def test_dinov2_vit_large_shapes(tmp_path):
    """The real size, ViT-L/14 (random weights, 1.2 GB file): 1024-d features for one image."""
    state = dinov2_state("vit_large_patch14_dinov2")
    path = write_safetensors(tmp_path / "vitl.safetensors", state)
    del state
    extractor = load_extractor("dinov2", "cpu", weights=path, batch_size=1)
    features = extractor.features(images(1, seed=9))
    assert features.shape == (1, 1024) and np.isfinite(features).all()
    assert extractor.describe()["feature_dim"] == 1024 and extractor.extra == {"model": "vit_large_patch14_dinov2"}
