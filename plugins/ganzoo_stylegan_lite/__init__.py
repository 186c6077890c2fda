"""StyleGAN-lite: StyleGAN2 in pure, exportable PyTorch.

Karras, Laine, Aittala, Hellsten, Lehtinen and Aila, "Analyzing and Improving
the Image Quality of StyleGAN", CVPR 2020 (arXiv:1912.04958), with the training
setup of NVlabs/stylegan2-ada-pytorch (Karras et al., "Training Generative
Adversarial Networks with Limited Data", NeurIPS 2020).

Generator: an 8-layer mapping network (lr x0.01, normalised z) with a tracked
average w for the truncation trick, a learned 4x4 constant, modulated and
demodulated 3x3 convolutions with per-pixel noise of learned strength, and
skip-architecture toRGB outputs summed across resolutions. Discriminator:
residual blocks, minibatch standard deviation, and a conv/fc/logit epilogue.
Equalised learning rate everywhere. Training: the non-saturating logistic
loss, lazy R1 (every 16 D steps, gamma by default 0.0002 * resolution^2 /
batch, StyleGAN2-ADA's heuristic), path-length regularisation (every 4 G steps,
weight 2), style mixing with probability 0.9, Adam lr 0.0025, betas (0, 0.99)
adjusted for lazy regularisation as the reference does, and an EMA generator.
DiffAugment (Zhao et al. 2020: colour, translation, cutout) turns on by default
for datasets under 5,000 images.

Class-conditional with ``c_dim`` > 0 (``ganzoo train --cond``), as
stylegan2-ada-pytorch's ``--cond=1``: G embeds the one-hot label (c_dim ->
w_dim) and concatenates it, normalised, with normalised z; D maps the label
with its own mapping network to ``cmap`` and projects its last features on it
(Miyato & Koyama, "cGANs with Projection Discriminator", ICLR 2018); the losses
judge reals with their classes and fakes with classes drawn from the data's.
``d_architecture="orig"`` and the ``cifar`` preset are the reference's CIFAR-10
configuration.

What "lite" changes, so that it needs no custom CUDA kernels and exports to
ONNX with a dynamic batch: the modulated convolution scales activations
instead of building per-sample weights (the reference's non-fused path, always);
no fp16 layers (bf16 autocast covers mixed precision); the reference's conv clamp is
an option (conv_clamp, off by default; imported networks keep theirs). Layer
shapes, and so parameter counts, are the reference's, and its up- and
down-sampling convolutions compute the reference's conv2d_resample for its
stored weights (docs/stylegan-lite.md).

This module imports no torch, so `ganzoo list` stays cheap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ganzoo.api import (IMAGES, Adam, Architecture, Constant, DataSpec, Gaussian, Generator, Latents, OneHot, Phase,
                        require, require_fraction, require_positive)

__version__ = "0.1.0"

D_ARCHITECTURES = ("resnet", "orig")  # the reference's D architectures StyleGAN-lite builds (networks.py)

DIFFAUGMENT_BELOW = 5000  # "auto" turns DiffAugment on for datasets smaller than this
DIFFAUGMENT_POLICIES = ("color", "translation", "cutout")


@dataclass
class StyleGANLiteConfig:
    resolution: int = 256  # a power of two, 8 to 1024
    channels: int = 3  # 1 (grey) or 3 (RGB)
    flip: bool = False  # random left-right flips of the reals (the reference's --mirror)
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 8
    mapping_lr_multiplier: float = 0.01
    channel_base: int = 16384  # feature maps at resolution r: min(channel_base / r, channel_max)
    channel_max: int = 512
    mbstd_group: int = 4
    mbstd_channels: int = 1
    lr: float = 0.0025
    beta1: float = 0.0
    beta2: float = 0.99
    r1_gamma: float | None = None  # None: 0.0002 * resolution^2 / batch_size, fixed when training starts
    r1_interval: int = 16
    pl_weight: float = 2.0  # 0 turns path-length regularisation off
    pl_interval: int = 4
    pl_batch_shrink: int = 2
    pl_decay: float = 0.01
    style_mixing: float = 0.9  # probability of mixing two latents' styles per batch
    diffaugment: str = "auto"  # auto (on below 5,000 images) | on | off
    diffaugment_policy: str = "color,translation,cutout"
    batch_size: int = 16
    conv_clamp: float | None = None  # clip conv outputs to +-this (the reference's conv_clamp, 256 in its configs)
    c_dim: int = 0  # classes (the reference's c_dim): 0 unconditional; `ganzoo train --cond` sets the data's count
    d_mapping_layers: int = 8  # layers of D's label mapping (c_dim > 0): the reference's MappingNetwork default
    d_architecture: str = "resnet"  # resnet | orig (no residual skips: the reference's cifar config)

    def gamma(self) -> float:
        if self.r1_gamma is not None:
            return self.r1_gamma
        return 0.0002 * self.resolution**2 / self.batch_size

    def augment_policy(self) -> tuple[str, ...]:
        from .diffaugment import parse_policy

        return parse_policy(self.diffaugment_policy) if self.diffaugment == "on" else ()


def style_latents(z_dim: int, c_dim: int = 0) -> Latents:
    """z ~ N(0, I) by seed (numpy PCG64) and a truncation psi of 1 per sample (no truncation); a conditional
    generator's one-hot class last, so that z for a seed is the same whatever the class."""
    parts = (Gaussian("z", (z_dim,)), Constant("truncation", (1,), 1.0))
    return Latents(parts + ((OneHot("label", (c_dim,)),) if c_dim > 0 else ()))


def generator_input_names(cfg) -> tuple[str, ...]:
    """G's positional inputs as export passes them: (z, truncation), then the label of a conditional one."""
    return ("z", "truncation", "label") if cfg.c_dim > 0 else ("z", "truncation")


def lazy_adam(cfg, interval: int) -> Adam:
    """Adam for a main phase whose regulariser runs every ``interval`` steps: lr and betas scaled as the reference."""
    ratio = interval / (interval + 1)
    return Adam(lr=cfg.lr * ratio, betas=(cfg.beta1**ratio, cfg.beta2**ratio), eps=1e-8)


class StyleGANLite(Architecture):
    name = "stylegan-lite"
    summary = "StyleGAN2 (Karras et al. 2020) in plain PyTorch: style-modulated G, residual D, R1, path length"
    Config = StyleGANLiteConfig
    class_count_key = "c_dim"
    presets = {
        # The embedded Fashion-MNIST test split at 32x32 grey, sized for a CPU: 32 feature maps at every
        # resolution, a 64-d latent and 2 mapping layers (the reference's 'auto' and CIFAR configs use 2).
        # Path length is off, as in the reference's CIFAR config; the EMA half-life follows its rule
        # (batch x 10 / 32 kimg).
        "fashion-mnist": {"resolution": 32, "channels": 1, "z_dim": 64, "w_dim": 64, "mapping_layers": 2,
                          "channel_base": 1024, "channel_max": 32, "batch_size": 32, "pl_weight": 0.0,
                          "ema_kimg": 10.0},
        # 256x256 RGB folders (FFHQ-like) on one GPU: StyleGAN2-ADA's 'auto' config at 256 (batch 16,
        # gamma 0.8192, EMA 5 kimg), with the paper's 8 mapping layers.
        "ffhq-256": {"resolution": 256, "channels": 3, "channel_base": 16384, "channel_max": 512,
                     "batch_size": 16, "ema_kimg": 5.0, "flip": True},
        # stylegan2-ada-pytorch's `--cfg=cifar` (train.py, its CIFAR-10 record, FID 2.42 with --cond=1): 32x32 RGB,
        # fmaps 1, 2 mapping layers, batch 64, minibatch-std groups of 32, gamma 0.01, EMA 500 kimg with ramp-up
        # 0.05, no path length, no style mixing, D without residual skips ('orig'), conv_clamp 256. Add --cond for
        # its class-conditional network.
        "cifar": {"resolution": 32, "channels": 3, "z_dim": 512, "w_dim": 512, "mapping_layers": 2,
                  "channel_base": 32768, "channel_max": 512, "batch_size": 64, "mbstd_group": 32, "lr": 0.0025,
                  "r1_gamma": 0.01, "pl_weight": 0.0, "style_mixing": 0.0, "d_architecture": "orig",
                  "conv_clamp": 256.0, "ema_kimg": 500.0, "ema_rampup": 0.05},
    }
    smoke = {"resolution": 16, "channels": 1, "z_dim": 16, "w_dim": 16, "mapping_layers": 2, "channel_base": 128,
             "channel_max": 16, "batch_size": 4, "diffaugment": "on", "pl_weight": 2.0}

    def validate(self, cfg):
        r = cfg.resolution
        require(8 <= r <= 1024 and r & (r - 1) == 0, "resolution", r, "must be a power of two from 8 to 1024 "
                "(1024, FFHQ's, is the largest stylegan2-ada-pytorch builds)")
        require(cfg.channels in (1, 3), "channels", cfg.channels, "must be 1 (grey) or 3 (RGB)")
        require_positive(cfg, "w_dim", "mapping_layers", "mapping_lr_multiplier", "channel_max", "mbstd_group",
                         "lr", "r1_interval", "pl_interval", "pl_batch_shrink")
        require(type(cfg.c_dim) is int and cfg.c_dim >= 0, "c_dim", cfg.c_dim,
                "must be 0 (unconditional) or the number of classes")
        require(cfg.z_dim > 0, "z_dim", cfg.z_dim, "must be greater than 0 (the reference's label-only "
                "generator, z_dim 0, has no latent for a seed to name, and its export would have no z input)")
        require(cfg.d_mapping_layers >= 0, "d_mapping_layers", cfg.d_mapping_layers,
                "must be 0 (the label embedding alone) or more")
        require(cfg.d_architecture in D_ARCHITECTURES, "d_architecture", cfg.d_architecture,
                f"must be {' or '.join(D_ARCHITECTURES)}")
        require(cfg.channel_base >= r, "channel_base", cfg.channel_base,
                f"must be at least resolution ({r}): feature maps at resolution r are channel_base / r")
        widest = min(cfg.channel_base // 4, cfg.channel_max)  # the 4x4 features minibatch std splits
        require(cfg.mbstd_channels >= 0 and (cfg.mbstd_channels == 0 or widest % cfg.mbstd_channels == 0),
                "mbstd_channels", cfg.mbstd_channels, f"must be 0 (off) or divide the {widest} feature maps at 4x4")
        require(cfg.r1_gamma is None or cfg.r1_gamma >= 0, "r1_gamma", cfg.r1_gamma,
                "must be 0 (off) or more, or none for 0.0002 * resolution^2 / batch_size")
        clamp = cfg.conv_clamp
        require(clamp is None or (isinstance(clamp, (int, float)) and not isinstance(clamp, bool) and clamp > 0),
                "conv_clamp", clamp, "must be more than 0, or none for no clamping")
        require(cfg.pl_weight >= 0, "pl_weight", cfg.pl_weight, "must be 0 (off) or more")
        require_fraction(cfg, "beta1", "beta2", below_one=True)
        require_fraction(cfg, "pl_decay", "style_mixing")
        require(cfg.diffaugment in ("auto", "on", "off"), "diffaugment", cfg.diffaugment, "must be auto, on or off")
        names = [p.strip() for p in cfg.diffaugment_policy.split(",") if p.strip()]
        require(all(p in DIFFAUGMENT_POLICIES for p in names), "diffaugment_policy", cfg.diffaugment_policy,
                f"must be a comma-separated list of {', '.join(DIFFAUGMENT_POLICIES)}")

    def validate_world_size(self, cfg, world_size: int):
        """Refuse a split of the global batch over ``world_size`` processes that would compute something else
        than one process does: D's minibatch-std groups and the path-length batch must split evenly too.

        The core checks that batch_size divides by world_size; every D call sees the per-rank batch.
        """
        batch, per_rank = cfg.batch_size, cfg.batch_size // world_size
        group = math.gcd(cfg.mbstd_group, batch)  # the group one process uses (MinibatchStd)
        require(cfg.mbstd_channels == 0 or math.gcd(cfg.mbstd_group, per_rank) == group, "mbstd_group",
                cfg.mbstd_group, f"with {world_size} processes each rank's discriminator sees {per_rank} images, "
                f"which its minibatch-std groups of {group} must divide (choose a batch_size that is a multiple of "
                f"{world_size * group}, or a smaller mbstd_group)")
        shrink = cfg.pl_batch_shrink
        require(cfg.pl_weight == 0 or max(1, batch // shrink) == world_size * max(1, per_rank // shrink),
                "pl_batch_shrink", shrink, f"must divide each rank's batch ({per_rank} = batch_size {batch} / "
                f"{world_size} processes), so that path length sees batch_size / pl_batch_shrink samples in all")

    def data_spec(self, cfg):
        return DataSpec(IMAGES, cfg.resolution, cfg.channels, flip=cfg.flip, labels=cfg.c_dim > 0)

    def fit_to_data(self, cfg, num_images: int):
        """Fix the settings that depend on the data: DiffAugment for small sets, R1's gamma."""
        if cfg.diffaugment == "auto":
            cfg = replace(cfg, diffaugment="on" if num_images < DIFFAUGMENT_BELOW else "off")
        if cfg.r1_gamma is None:
            cfg = replace(cfg, r1_gamma=cfg.gamma())
        return cfg

    def build(self, cfg):
        from .networks import Discriminator, StyleGenerator

        G = StyleGenerator(cfg.z_dim, cfg.w_dim, cfg.resolution, cfg.channels, cfg.channel_base, cfg.channel_max,
                           cfg.mapping_layers, cfg.mapping_lr_multiplier, cfg.conv_clamp, c_dim=cfg.c_dim)
        D = Discriminator(cfg.resolution, cfg.channels, cfg.channel_base, cfg.channel_max, cfg.mbstd_group,
                          cfg.mbstd_channels, cfg.conv_clamp, c_dim=cfg.c_dim, mapping_layers=cfg.d_mapping_layers,
                          architecture=cfg.d_architecture)
        return {"G": G, "D": D}

    def phases(self, cfg):
        phases = [Phase("G", trains=("G",), optimizer=lazy_adam(cfg, cfg.pl_interval))]
        if cfg.pl_weight > 0:
            phases.append(Phase("G_pl", trains=("G",), interval=cfg.pl_interval, eager=True))
        phases.append(Phase("D", trains=("D",), optimizer=lazy_adam(cfg, cfg.r1_interval)))
        if cfg.gamma() > 0:
            phases.append(Phase("D_r1", trains=("D",), interval=cfg.r1_interval, eager=True))
        return phases

    def loss(self, phase, nets, batch, ctx):
        from . import losses

        cfg, real = ctx.cfg, batch["image"]
        real_c = losses.one_hot(batch["label"], cfg.c_dim) if cfg.c_dim > 0 else None  # the reals' classes
        policy = cfg.augment_policy()
        if phase.name == "G":
            return losses.generator_loss(nets, real.shape[0], ctx, cfg.style_mixing, policy)
        if phase.name == "G_pl":
            return losses.path_length_loss(nets, real.shape[0], ctx, cfg)
        if phase.name == "D":
            return losses.discriminator_loss(nets, real, ctx, cfg.style_mixing, policy, real_c)
        return losses.r1_loss(nets, real, ctx, cfg.gamma(), cfg.r1_interval, policy, real_c)

    def reference_loop(self, cfg, device):
        """stylegan2-ada-pytorch's training loop on these networks and this config (reference_loop.py); none for
        a conditional config, as the copy draws no labels."""
        if cfg.c_dim > 0:
            return None
        from .reference_loop import StyleGAN2ADALoop

        return StyleGAN2ADALoop(self, cfg, device)

    def generators(self, cfg):
        latents = style_latents(cfg.z_dim, cfg.c_dim)
        return {"G": Generator(role="G", inputs=generator_input_names(cfg), latents=latents)}

    def commands(self):
        from .cli import style_mix

        return [style_mix]

    def import_checkpoint(self, files):
        """A stylegan2-ada-pytorch network pickle (G, D, G_ema), read without running its embedded code."""
        from .importer import import_pickle

        return import_pickle(self, files)


def default_coarse_layers(resolution: int) -> int:
    """Style layers read by the 4x4 and 8x8 blocks (and their toRGB): StyleGAN's 'coarse' styles."""
    return min(4, 2 * int(math.log2(resolution)) - 2)
