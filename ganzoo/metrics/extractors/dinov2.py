"""`dinov2`: DINOv2 ViT-L/14 CLS-token features (1024-d) from timm's own model definition, for FD-DINOv2.

The reference is dgm-eval (Stein et al. 2023), which runs the DINOv2 hub model
``dinov2_vitl14`` on images that PIL resized to 224x224 (bicubic) and scaled by
the ImageNet mean and std, and takes the CLS token after the final LayerNorm.
Here the network is timm's ``vit_large_patch14_dinov2`` built for 224 input;
its pooled pre-logits output with ``global_pool='token'`` is that CLS token.

Two details make the numbers match the reference rather than merely resemble it:

- resize: dgm-eval's ``Resize((224, 224), BICUBIC)`` runs Pillow on a uint8
  image: two 1-D passes (width, then height) of antialiased bicubic (a = -0.5)
  with integer weights, rounded to uint8 after each pass. ``resize_like_pil``
  does the same arithmetic on the device and gives Pillow's pixels exactly
  (torch's own antialiased bicubic differs by a grey level on some pixels and,
  without the rounding between passes, by over 20 next to sharp edges).
- position embeddings: the released weights are for a 37x37 patch grid (518
  input). The DINOv2 model interpolates them to the 16x16 grid of a 224 input
  at every forward (bicubic, scale factor (16 + 0.1) / 37, no antialias); we do
  exactly that once, at load, instead of timm's own resampling (which is
  antialiased and size-based, so slightly different).
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

from ...errors import UserError
from .base import Extractor, check_precision, network_precision
from .weights import (
    WeightsSource,
    check_fits,
    hf_hub_cache,
    locate,
    read_state_dict,
    sha256_of,
    torch_hub_checkpoints,
)

NAME = "dinov2"
MODEL = "vit_large_patch14_dinov2"
INPUT_SIZE = 224
PATCH = 14
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
INTERPOLATE_OFFSET = 0.1  # DINOv2's interpolate_pos_encoding ("historical kludge", kept for its released numbers)
HF_FILE = "model.safetensors"
# timm name -> the DINOv2 release name (its torch hub checkpoint is dinov2_<name>_pretrain.pth).
RELEASES = {
    "vit_small_patch14_dinov2": "vits14",
    "vit_base_patch14_dinov2": "vitb14",
    "vit_large_patch14_dinov2": "vitl14",
    "vit_giant_patch14_dinov2": "vitg14",
}
RESIZE = ("bicubic to 224x224, Pillow's resize exactly (what dgm-eval's torchvision Resize runs on PIL images): "
          "antialiased, width then height, rounded to uint8 after each pass")
NORMALISATION = "x / 255, then ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225)"


def hf_repo(model_name: str = MODEL) -> str:
    return f"timm/{model_name}.lvd142m"


def weights_source(model_name: str = MODEL) -> WeightsSource:
    """timm's file in the Hugging Face cache, the DINOv2 release in torch hub's cache, else a hub download."""
    release = RELEASES[model_name]
    put_at = torch_hub_checkpoints() / f"dinov2_{release}_pretrain.pth"
    url = f"https://dl.fbaipublicfiles.com/dinov2/dinov2_{release}/dinov2_{release}_pretrain.pth"
    cached = tuple(p for p in (_hf_cached(model_name),) if p is not None) + (put_at,)
    return WeightsSource(what=f"the DINOv2 {release} weights", put_at=put_at,
                         url=f"{url}, or {HF_FILE} of https://huggingface.co/{hf_repo(model_name)}",
                         cached=cached, download=lambda: _hf_download(model_name))


def _hf_cached(model_name: str) -> Path | None:
    """timm's weights if the Hugging Face cache holds them (never asks the network)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(hf_repo(model_name), HF_FILE, cache_dir=hf_hub_cache())
    return Path(found) if isinstance(found, str) else None


def _hf_download(model_name: str) -> Path:
    """timm's weights from the Hugging Face hub into its cache; the hub's sha256 is checked at load.

    HF_ENDPOINT is read now (huggingface_hub reads it only at import), and the
    hub client's retry warnings are kept off the terminal: a failure is one
    UserError. Offline, the client retries for about 25 s before giving up;
    GANZOO_OFFLINE=1 or HF_HUB_OFFLINE=1 skips the attempt.
    """
    import logging

    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    where = f"https://huggingface.co/{hf_repo(model_name)}"
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise UserError("downloads are off (HF_HUB_OFFLINE is set)")
    hub_logger = logging.getLogger("huggingface_hub")
    level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)
    try:
        return Path(hf_hub_download(hf_repo(model_name), HF_FILE, cache_dir=hf_hub_cache(),
                                    endpoint=os.environ.get("HF_ENDPOINT") or None))
    except (OSError, EntryNotFoundError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"download of {HF_FILE} from {where} failed: {first}") from None
    finally:
        hub_logger.setLevel(level)


def _check_hub_hash(path: Path, digest: str) -> None:
    """A Hugging Face cache file links to blobs/<sha256 the hub published>: a different hash is a damaged file."""
    path = Path(path)
    if not path.is_symlink():
        return  # not the hub cache's layout (or a copy without links): nothing published to compare with
    blob = path.parent / os.readlink(path)
    if blob.parent.name == "blobs" and re.fullmatch(r"[0-9a-f]{64}", blob.name) and blob.name != digest:
        raise UserError(f"weights file {path} is damaged: its sha256 is {digest}, the Hugging Face hub published "
                        f"{blob.name}; delete {os.path.normpath(blob)} and run again")


_PRECISION_BITS = 22  # Pillow's fixed-point weights for 8-bit images (Resample.c: 32 - 8 - 2)


def _bicubic(x: float, a: float = -0.5) -> float:
    """Pillow's bicubic kernel (a = -0.5; torch's plain bicubic uses -0.75)."""
    x = abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


@functools.lru_cache(maxsize=32)
def pil_bicubic_weights(in_size: int, out_size: int):
    """(out_size, in_size) float64 matrix of Pillow's integer resampling weights (precompute_coeffs, then
    normalize_coeffs_8bpc): antialiased (the kernel widens by the scale when shrinking), each row summing to ~2**22."""
    import torch

    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 2.0 * filterscale
    weights = torch.zeros((out_size, in_size), dtype=torch.float64)
    for out in range(out_size):
        center = (out + 0.5) * scale
        first = max(int(center - support + 0.5), 0)
        count = min(int(center + support + 0.5), in_size) - first
        taps = [_bicubic((i + first - center + 0.5) * (1.0 / filterscale)) for i in range(count)]  # as Pillow
        total = sum(taps)
        for i, tap in enumerate(taps):
            tap = tap / total if total != 0.0 else tap
            weights[out, first + i] = int(tap * (1 << _PRECISION_BITS) + (0.5 if tap >= 0 else -0.5))
    return weights


def _fixed_point_to_uint8(x):
    """Pillow's clip8: round half up from the fixed-point sum, clipped to [0, 255] (values stay float64)."""
    return ((x + (1 << (_PRECISION_BITS - 1))) / (1 << _PRECISION_BITS)).floor_().clamp_(0, 255)


def resize_like_pil(images, size: int = INPUT_SIZE):
    """uint8 (n, C, H, W) -> float64 (n, C, size, size): exactly the pixels of PIL's ``resize((size, size), BICUBIC)``.

    Pillow resizes 8-bit images in two 1-D passes, width then height, each a
    sum of integer weights with the result rounded and clipped to uint8; the
    sums are integers below 2**53, so float64 matrix products give them exactly.
    """
    import torch

    work = torch.device("cpu") if images.device.type == "mps" else images.device  # mps has no float64
    x = images.to(work, torch.float64)
    if x.shape[-1] != size:
        x = _fixed_point_to_uint8(x @ pil_bicubic_weights(x.shape[-1], size).to(work).T)
    if x.shape[-2] != size:
        x = _fixed_point_to_uint8(pil_bicubic_weights(x.shape[-2], size).to(work) @ x)
    return x.to(images.device)


def interpolate_pos_embed(pos_embed, grid: int, num_prefix: int = 1):
    """DINOv2's interpolate_pos_encoding for a ``grid`` x ``grid`` patch grid, computed once (float32)."""
    import math

    import torch
    import torch.nn.functional as F

    prefix, patches = pos_embed[:, :num_prefix], pos_embed[:, num_prefix:].float()
    old = int(math.sqrt(patches.shape[1]))
    if old * old != patches.shape[1]:
        raise ValueError(f"position embeddings of {patches.shape[1]} patches are not a square grid")
    if old == grid:
        return pos_embed
    dim = patches.shape[-1]
    scale = (grid + INTERPOLATE_OFFSET) / old
    patches = F.interpolate(patches.reshape(1, old, old, dim).permute(0, 3, 1, 2), scale_factor=(scale, scale),
                            mode="bicubic", antialias=False)
    patches = patches.permute(0, 2, 3, 1).reshape(1, grid * grid, dim)
    return torch.cat([prefix.float(), patches], dim=1).to(pos_embed.dtype)


def network(model_name: str = MODEL, device="meta"):
    """timm's DINOv2 ViT for 224 input, CLS-token output; on the meta device (no memory, no init) by default."""
    import timm
    import torch

    if model_name not in RELEASES:
        raise UserError(f"unknown DINOv2 model {model_name!r}; models: {', '.join(RELEASES)}")
    with torch.device(device):
        return timm.create_model(model_name, pretrained=False, num_classes=0, img_size=INPUT_SIZE,
                                 global_pool="token")


def _fit_state(state: dict, net, path: Path) -> dict:
    """A timm or original DINOv2 state dict in the layout of ``net``, position embeddings as DINOv2 interpolates them."""
    import torch
    from timm.models.vision_transformer import checkpoint_filter_fn

    grid = INPUT_SIZE // PATCH
    pos = state.get("pos_embed")
    odd = None  # position embeddings that are no square grid: kept away from timm, named by check_fits
    if torch.is_tensor(pos) and pos.ndim == 3 and pos.shape[1] > 1 and pos.shape[1] != 1 + grid * grid:
        try:
            state["pos_embed"] = interpolate_pos_embed(pos, grid)
        except ValueError:
            odd = state.pop("pos_embed")
    try:
        state = checkpoint_filter_fn(state, net)  # the original release's key names -> timm's (mask_token dropped)
    except Exception as error:  # noqa: BLE001 - timm's converter on a malformed file can raise anything
        text = str(error).strip()
        raise UserError(f"weights file {path} does not fit the {NAME} network: timm cannot convert it "
                        f"({type(error).__name__}{': ' + text.splitlines()[0] if text else ''})") from None
    if odd is not None:
        state["pos_embed"] = odd
    return {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}


def load(device, weights: Path | None = None, batch_size: int = 64, model_name: str = MODEL,
         precision: str = "fp32") -> Extractor:
    """DINOv2 (ViT-L/14 unless ``model_name`` says another size) on ``device``, its network in ``precision``.

    Weights: ``weights`` (safetensors or a torch state dict, timm's layout or
    the original release's), else timm's file in the Hugging Face cache, else
    the release file in torch hub's cache, else a Hugging Face download.
    """
    check_precision(precision)
    if model_name not in RELEASES:
        raise UserError(f"unknown DINOv2 model {model_name!r}; models: {', '.join(RELEASES)}")
    path = locate(weights_source(model_name), weights)
    digest = sha256_of(path)
    _check_hub_hash(path, digest)
    return wrap(load_network(path, model_name), device, path, digest, batch_size, precision, model_name)


def load_network(path: Path, model_name: str = MODEL):
    """timm's network with the weights of ``path`` (weights-only), position embeddings fitted to 224 input."""
    net = network(model_name)
    state = _fit_state(read_state_dict(path, NAME), net, path)
    check_fits(state, net.state_dict(), path, NAME)
    net.load_state_dict(state, strict=True, assign=True)
    left = [name for name, t in [*net.named_parameters(), *net.named_buffers()] if t.is_meta]
    if left:
        raise RuntimeError(f"{model_name}: tensors not in the state dict stayed uninitialised: {left[:3]}")
    return net


def random_network(model_name: str = MODEL, device="cpu", seed: int = 0):
    """The same network with timm's random initialisation (no file), built on ``device``, layer scales 1
    instead of timm's 1e-5 (with 1e-5 every block is nearly the identity and the CLS token hardly depends
    on the image; the release's are O(1)). For speed measurements where no weights file is on the machine."""
    import torch

    torch.manual_seed(seed)
    net = network(model_name, device=device)
    with torch.no_grad():
        for name, tensor in net.named_parameters():
            if name.endswith(".gamma"):
                tensor.fill_(1.0)
    return net


def wrap(net, device, path: Path | None, digest: str, batch_size: int = 64, precision: str = "fp32",
         model_name: str = MODEL) -> Extractor:
    """An Extractor around a loaded network: Pillow's resize and the ImageNet scaling in float64/float32,
    the ViT under autocast in ``precision``."""
    import torch

    check_precision(precision)
    net.requires_grad_(False).eval().to(device)
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1)

    def embed(images: torch.Tensor) -> torch.Tensor:
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        elif images.shape[1] != 3:
            raise ValueError(f"{NAME}: expected 1 or 3 channels, got {images.shape[1]}")
        x = (resize_like_pil(images).float() / 255 - mean) / std  # torchvision's ToTensor, then Normalize
        with network_precision(device, precision):
            return net.forward_head(net.forward_features(x), pre_logits=True)

    return Extractor(name=NAME, input_size=INPUT_SIZE, feature_dim=net.num_features, resize=RESIZE,
                     normalisation=NORMALISATION, weights=path, weights_sha256=digest, batch_size=batch_size,
                     embed=embed, device=torch.device(device), extra={"model": model_name}, precision=precision)
