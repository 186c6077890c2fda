"""The plugin contract: what an architecture gives the core.

An entry point in the group ``ganzoo.architectures`` names a subclass of
:class:`Architecture`. The core (registry, trainer, CLI) only ever talks to that
class; it never names an architecture. This module imports no torch, so that
listing plugins stays cheap; plugins should likewise import torch inside their
methods (or in submodules those methods import).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping

from .errors import UserError
from .runtime.images import PIXELS
from .runtime.latents import Constant, Gaussian, Latents, OneHot, Uniform

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

    import numpy as np
    import torch
    from torch import nn

API_VERSION = 1
ENTRY_POINT_GROUP = "ganzoo.architectures"

IMAGES = "images"  # one domain of images: batch = {"image": (B, C, H, W) in [-1, 1]}
UNPAIRED = "unpaired"  # two domains: batch = {"A": ..., "B": ...}
DATA_KINDS = (IMAGES, UNPAIRED)
SMOKE_PRESET = "smoke"  # every architecture's ``smoke`` overrides, usable as ``--preset smoke``


@dataclass(frozen=True)
class DataSpec:
    """What images the architecture consumes; the data pipeline delivers exactly this.

    Augmentation, as pix2pix/CycleGAN do it: images are decoded once at
    ``decode_resolution`` (default: ``resolution``) and each training batch takes
    a random ``resolution`` crop of them, flipped left-right at random when
    ``flip``. The feed draws these from its own seeded generator, so resume
    stays exact.
    """

    kind: str  # IMAGES or UNPAIRED
    resolution: int
    channels: int
    decode_resolution: int | None = None  # None: resolution (no random crops)
    flip: bool = False
    # A conditional run's spec: each batch also holds {"label": int64 (B,)}, the class of each image, drawn
    # with it. Only single-domain images carry labels; the data must have them (a class per image).
    labels: bool = False

    def __post_init__(self):
        if self.kind not in DATA_KINDS:
            raise ValueError(f"DataSpec.kind must be one of {DATA_KINDS}, got {self.kind!r}")
        if self.decode_resolution is None:
            object.__setattr__(self, "decode_resolution", self.resolution)
        if self.decode_resolution < self.resolution:
            raise ValueError(f"DataSpec.decode_resolution {self.decode_resolution} is below resolution {self.resolution}")
        if self.labels and self.kind != IMAGES:
            raise ValueError(f"DataSpec.labels needs kind {IMAGES!r}, got {self.kind!r}")


# The largest square side the core lets any architecture ask for (its DataSpec's decode resolution): the side
# of the largest image ganzoo decodes by default (max_image_pixels, 4096x4096), four times StyleGAN2's largest.
# Past it a batch of images alone outgrows any accelerator, and sizes overflow inside torch (1073741824 did).
# Plugins bound themselves further in validate (StyleGAN-lite: 1024).
MAX_RESOLUTION = 4096


class ConfigError(UserError):
    """A Config value the architecture cannot build: raised by ``Architecture.validate``.

    The core adds where the value came from (a preset, ``--set``, config.json)
    and shows the whole as one ``Error:`` line.
    """

    def __init__(self, key: str, value: Any, allowed: str):
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}={value!r}: {allowed}")


def require(condition: bool, key: str, value: Any, allowed: str) -> None:
    """Raise a ConfigError for ``key`` unless ``condition``; ``allowed`` says what would be accepted."""
    if not condition:
        raise ConfigError(key, value, allowed)


def require_positive(cfg, *keys: str) -> None:
    """Each of ``keys`` (counts, widths, rates) is greater than zero."""
    for key in keys:
        value = getattr(cfg, key)
        require(value > 0, key, value, "must be greater than 0")


def require_fraction(cfg, *keys: str, below_one: bool = False) -> None:
    """Each of ``keys`` (probabilities, Adam betas, decays) lies in [0, 1], or [0, 1) with ``below_one``."""
    for key in keys:
        value = getattr(cfg, key)
        ok = 0 <= value < 1 if below_one else 0 <= value <= 1
        require(ok, key, value, f"must lie in [0, 1{')' if below_one else ']'}")


@dataclass(frozen=True)
class Adam:
    """Optimizer settings of a phase. ``schedule(step, total_steps)`` scales the lr."""

    lr: float
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    schedule: Callable[[int, int], float] | None = None


@dataclass(frozen=True)
class Phase:
    """One optimisation phase: a loss that updates some networks.

    Phases that train the same networks share one optimizer, so a lazy
    regulariser is a phase with ``interval > 1`` and ``optimizer=None`` that
    steps the optimizer of its main phase (as in StyleGAN2-ADA). Its loss should
    be multiplied by ``interval`` by the plugin, as the paper does.
    ``eager`` phases (double backward) never run compiled and always in fp32.
    """

    name: str
    trains: tuple[str, ...]
    optimizer: Adam | None = None
    interval: int = 1
    eager: bool = False


@dataclass(frozen=True)
class Generator:
    """A network that makes images, as ``sample``, ``export`` and ``bench`` use it.

    ``role`` names the network in ``build()``; the EMA copy is used when it exists.
    ``latents(n, seed)`` returns numpy inputs drawn with numpy's PCG64 so that
    the same seed names the same image in PyTorch and in the ONNX runtime.
    Outputs are images in [-1, 1]; ``pixels`` says how they map to uint8.

    Declare ``latents`` as a :class:`~ganzoo.runtime.latents.Latents` (as
    ``gaussian_latents`` does) so that `ganzoo export` can write it into the
    model and the torch-free runtime can sample; any other callable works for
    PyTorch sampling only.

    A generator that translates images between domains (CycleGAN's) sets
    ``translates = ("A", "B")``: its one input is an image in [-1, 1] (mapped
    from pixels the same way), and ``latents`` gives example input images.
    ``size_multiple`` says the network takes any height and width that are
    multiples of it (exported with a dynamic size); None: only the training size.
    """

    role: str
    inputs: tuple[str, ...]
    latents: Callable[[int, int], dict[str, "np.ndarray"]]
    output: str = "image"
    pixels: str = PIXELS
    translates: tuple[str, str] | None = None
    size_multiple: int | None = None


def gaussian_latents(size: int, name: str = "z") -> Latents:
    """``latents`` for a generator fed by N(0, I) vectors of ``size``: numpy PCG64 by seed."""
    return Latents((Gaussian(name, (size,)),))


def image_latents(channels: int, resolution: int, name: str = "image") -> Latents:
    """Example inputs for an image-to-image generator: uniform images in [-1, 1], numpy PCG64 by seed."""
    return Latents((Uniform(name, (channels, resolution, resolution)),))


class LossContext:
    """What the trainer hands to ``Architecture.loss`` besides networks and batch.

    ``cfg`` is the run's Config; ``log`` reports a scalar; ``stash`` is a dict
    that lives for one training step, shared by its phases. ``state`` is a dict
    of tensors that lives for the whole run (CycleGAN's image pools): the
    trainer checkpoints it with its own state and restores it on resume, on the
    run's device.

    Random numbers come from the trainer's seeded generator (its state is
    checkpointed, so resume is exact), and are drawn so that a run computes the
    same thing on one process as on several (torchrun): the batch a loss sees is
    this rank's slice of the global batch, and

    - ``randn(n, ...)`` / ``rand(n, ...)`` draw *per-sample* values: the first
      dimension is this rank's batch; they are drawn for the global batch
      (``n * world_size`` rows) and this rank gets its rows;
    - ``randn_shared(...)`` / ``rand_shared(...)`` draw values for the whole
      batch (a mixing cutoff, a probability), the same on every rank;
    - ``gather(t)`` is the global batch of a per-sample tensor (every rank's
      rows, in rank order; not differentiable) and ``local(t)`` this rank's rows
      of a global-batch tensor, for state that must see the whole batch (an
      image pool);
    - ``labels(n)`` draws class labels for n generated samples (a conditional
      run: its DataSpec has ``labels``) from the training data's label
      distribution, as stylegan2-ada's training loop draws ``gen_c``: per
      sample, for the global batch, like ``rand``.

    With one process (``world_size == 1``) every one of these is the plain draw.
    """

    def __init__(self, *, cfg, device, generator, step: int, total_steps: int, log: Callable[[str, Any], None],
                 state: dict[str, Any] | None = None, rank: int = 0, world_size: int = 1,
                 gather: Callable[["torch.Tensor"], "torch.Tensor"] | None = None,
                 label_cdf: "torch.Tensor | None" = None):
        self.cfg = cfg
        self.device = device
        self.generator = generator
        self.step = step
        self.total_steps = total_steps
        self.log = log
        self.stash: dict[str, Any] = {}
        self.state: dict[str, Any] = {} if state is None else state
        self.rank, self.world_size = rank, world_size
        self._gather = gather
        self.label_cdf = label_cdf  # float (classes,) on the device: the data's cumulative class frequencies

    def labels(self, n: int) -> "torch.Tensor":
        """int64 (n,) class labels for generated samples, this rank's rows of a global-batch draw from the
        training data's label distribution (``label_distribution``)."""
        import torch

        if self.label_cdf is None:
            raise RuntimeError("LossContext.labels: this run is not conditional (its DataSpec has no labels)")
        u = self.rand(n)
        return torch.searchsorted(self.label_cdf, u, right=True).clamp_(max=len(self.label_cdf) - 1)

    def randn(self, n: int, *shape: int) -> "torch.Tensor":
        import torch

        return self.local(torch.randn((n * self.world_size, *shape), generator=self.generator, device=self.device))

    def rand(self, n: int, *shape: int) -> "torch.Tensor":
        import torch

        return self.local(torch.rand((n * self.world_size, *shape), generator=self.generator, device=self.device))

    def randn_shared(self, *shape: int) -> "torch.Tensor":
        import torch

        return torch.randn(shape, generator=self.generator, device=self.device)

    def rand_shared(self, *shape: int) -> "torch.Tensor":
        import torch

        return torch.rand(shape, generator=self.generator, device=self.device)

    def local(self, t: "torch.Tensor") -> "torch.Tensor":
        """This rank's rows of a global-batch tensor."""
        if self.world_size == 1:
            return t
        n = t.shape[0] // self.world_size
        return t[self.rank * n:(self.rank + 1) * n]

    def gather(self, t: "torch.Tensor") -> "torch.Tensor":
        """The global batch of a per-sample tensor: every rank's rows in rank order."""
        if self.world_size == 1:
            return t
        return self._gather(t)


@dataclass
class Imported:
    """What ``Architecture.import_checkpoint`` read from a reference repository's files.

    ``overrides``: Config values the files determine (resolution, widths...),
    applied over the defaults, the preset and ``--set``.
    ``networks``: role (``G``, ``G_ema``, ``D``...) -> ganzoo state-dict keys -> tensors,
    already renamed and reshaped to ganzoo's layout; the core loads them strictly.
    ``source``: the format, as users know it ("pytorch-CycleGAN-and-pix2pix").
    ``files``: each file read and what it held, for config.json's record.
    """

    overrides: dict[str, Any]
    networks: dict[str, dict[str, "torch.Tensor"]]
    source: str
    files: dict[str, str] = dataclasses.field(default_factory=dict)


class ReferenceLoop:
    """A minimal copy of the training loop of the code base an architecture reproduces, for `ganzoo bench`.

    The benchmark's ``reference-loop`` row times it beside ganzoo's trainer, so
    every table has the ratio users care about: ganzoo against the code they
    would otherwise run. It is built by ``Architecture.reference_loop`` on the
    bench's device and copies the reference's order of work as written there:
    its networks (or ganzoo's where they compute the same function), its
    optimizer as the script builds it (torch's default Adam: the multi-tensor
    foreach version on CUDA, the per-parameter loop on the CPU), eager fp32, NCHW,
    its zero_grad/backward/step sequence, its lazy regularisation and EMA.
    What it leaves out is what the reference does outside the timed loop
    (data loading: batches arrive on the device, shaped as the trainer's).
    """

    source: ClassVar[str] = ""  # what it copies: repository and file, e.g. "pytorch/examples dcgan/main.py"

    def step(self, batch: Mapping[str, "torch.Tensor"]) -> None:
        """One training iteration on ``batch`` (the trainer's batch keys, on the device)."""
        raise NotImplementedError


def label_distribution(labels: "torch.Tensor", num_classes: int, device=None) -> "torch.Tensor":
    """The cumulative class frequencies of ``labels`` (int64, N): what ``LossContext.labels`` draws from."""
    import torch

    counts = torch.bincount(labels.long().cpu(), minlength=num_classes).double()
    return (counts.cumsum(0) / counts.sum()).float().to(device)


class Architecture:
    """Subclass this and declare it under the ``ganzoo.architectures`` entry point.

    Class attributes: ``name``, ``summary`` (one line), ``api_version``,
    ``Config`` (a dataclass of every hyperparameter with its default; it must
    have ``batch_size``), ``presets`` (name -> overrides of Config fields).
    A preset named like a dataset (the embedded data's name,
    ``ganzoo.data.DEFAULT_DATASET``) is used by default when that dataset is
    trained on. ``smoke`` holds the overrides of the smallest
    meaningful config: the conformance kit and the benchmark smoke mode use it.

    ``class_count_key`` declares that the architecture can be conditional: it
    names the Config field (an int) that holds the number of classes, 0 for an
    unconditional network. ``ganzoo train --cond`` sets it to the data's class
    count; with it above 0, ``data_spec`` must ask for ``labels``, batches carry
    ``"label"``, ``ctx.labels(n)`` draws labels for generated samples, and each
    generator takes a one-hot input declared as a ``OneHot`` latent part (the
    class a sample is drawn for). None (the default): it cannot be conditional,
    and ``--cond`` is refused.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    api_version: ClassVar[int] = API_VERSION
    Config: ClassVar[type]
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    smoke: ClassVar[Mapping[str, Any]] = {}
    class_count_key: ClassVar[str | None] = None

    def num_classes(self, cfg) -> int:
        """Classes this config is conditioned on (0: unconditional, and always for a non-conditional one)."""
        return int(getattr(cfg, self.class_count_key)) if self.class_count_key else 0

    def data_spec(self, cfg) -> DataSpec:
        raise NotImplementedError

    def build(self, cfg) -> dict[str, "nn.Module"]:
        """Fresh networks by role (``G``, ``D``, ``G_AB``...), initialised for training."""
        raise NotImplementedError

    def phases(self, cfg) -> list[Phase]:
        raise NotImplementedError

    def loss(self, phase: Phase, nets: Mapping[str, "nn.Module"], batch: Mapping[str, "torch.Tensor"], ctx: LossContext) -> "torch.Tensor":
        """A scalar to minimise for ``phase``. Never calls backward() or an optimizer."""
        raise NotImplementedError

    def generators(self, cfg) -> dict[str, Generator]:
        raise NotImplementedError

    # Helpers the core uses; plugins rarely override them.

    def preview(self, nets, cfg, n: int, seed: int, device, real: Mapping[str, "torch.Tensor"] | None = None
                ) -> tuple["torch.Tensor", int]:
        """Images for the training grid (uint8, N x C x H x W) and the grid's row length.

        By default: n samples of the first generator from a fixed seed (a conditional generator: one row per
        class, ``ganzoo.runtime.latents.class_rows``). An
        architecture whose grid should show more (inputs beside translations)
        overrides this; ``real`` is a fixed batch of training data shaped like a
        training batch (up to n images per key, uncropped and unflipped), the same
        at every preview of a run.
        """
        import math

        from .runtime.latents import class_rows
        from .sampling import generate

        spec = next(iter(self.generators(cfg).values()))
        label_part = getattr(spec.latents, "label_part", None)
        if label_part is not None:  # a conditional generator: one full row per class, in class order
            labels, per_row = class_rows(n, label_part.num_classes)
            if n >= label_part.num_classes:  # whole rows only: 64 images of 10 classes are 10 rows of 6
                labels = labels[:per_row * label_part.num_classes]
            return generate(nets[spec.role], spec, len(labels), seed, device, labels=labels), per_row
        return generate(nets[spec.role], spec, n, seed, device), max(1, math.isqrt(n))

    def fit_to_data(self, cfg, num_images: int):
        """The config with settings that depend on the training set fixed (e.g. augmentation for small sets).

        The trainer calls this once the data is loaded, before building the
        networks, and the run's config.json records the result, so a resumed run
        sees the same values. It must not change the DataSpec. Default: unchanged.
        """
        return cfg

    def validate(self, cfg) -> None:
        """Raise a :class:`ConfigError` naming the first value of ``cfg`` that cannot be built.

        The one place an architecture checks its Config (resolutions, channels,
        widths, probabilities, counts): the core calls it for every config it
        resolves (defaults, preset and ``--set`` values; config.json of a run
        directory; the result of ``fit_to_data``) before anything is built or
        written, and shows the error as one line. Use :func:`require`,
        :func:`require_positive` and :func:`require_fraction`. Default: accepts
        everything.
        """

    def validate_world_size(self, cfg, world_size: int) -> None:
        """Raise a :class:`ConfigError` if splitting the global batch over ``world_size`` processes would
        compute something else than one process does (a statistic over groups of samples that a rank's slice
        would cut). The core has already checked that ``batch_size`` divides by ``world_size``. Default:
        accepts every split.
        """

    def with_resolution(self, cfg, resolution: int):
        """The config rescaled to train at ``resolution`` (what `ganzoo bench --resolution` uses).

        Default: the ``resolution`` field replaced. Override when other settings
        scale with it (CycleGAN keeps its crop margin in proportion).
        """
        if not any(f.name == "resolution" for f in dataclasses.fields(cfg)):
            raise UserError(f"{self.name} has no resolution setting to scale")
        return dataclasses.replace(cfg, resolution=resolution)

    def commands(self) -> list:
        """Click commands this architecture adds to ``ganzoo`` (StyleGAN-lite's ``style-mix``).

        Called when the command list is needed; import click and everything
        else inside, so that listing stays cheap. A command raises
        ``ganzoo.errors.UserError`` for bad input, which ``ganzoo`` shows as one
        ``Error:`` line. Default: none.
        """
        return []

    def import_checkpoint(self, files: list["Path"]) -> Imported:
        """Read a reference repository's checkpoint files into ganzoo's layout (``ganzoo import``).

        Nothing read may be executed: state dicts come through
        ``ganzoo.safe_load`` (weights-only); pickles through its restricted
        unpickler. Every mapping is explicit and strict (every source tensor used
        once, shapes checked); a mismatch is a UserError naming the tensor.
        Default: this architecture imports nothing.
        """
        raise UserError(f"{self.name} cannot import checkpoints from other code bases")

    def reference_loop(self, cfg, device) -> ReferenceLoop | None:
        """The reference code base's training loop at ``cfg`` on ``device`` (see :class:`ReferenceLoop`), for the
        benchmark's ``reference-loop`` row. Seeded by the caller. Default: None (no such row).
        """
        return None

    def make_config(self, overrides: Mapping[str, Any] | None = None):
        return dataclasses.replace(self.Config(), **dict(overrides or {}))


__all__ = [
    "API_VERSION",
    "ConfigError",
    "MAX_RESOLUTION",
    "require",
    "require_positive",
    "require_fraction",
    "ENTRY_POINT_GROUP",
    "IMAGES",
    "UNPAIRED",
    "DataSpec",
    "Adam",
    "Phase",
    "Generator",
    "gaussian_latents",
    "image_latents",
    "Latents",
    "Gaussian",
    "Uniform",
    "Constant",
    "OneHot",
    "label_distribution",
    "LossContext",
    "Imported",
    "ReferenceLoop",
    "Architecture",
]
