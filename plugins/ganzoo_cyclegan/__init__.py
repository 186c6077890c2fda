"""CycleGAN: Zhu, Park, Isola and Efros, "Unpaired Image-to-Image Translation using
Cycle-Consistent Adversarial Networks", ICCV 2017 (arXiv:1703.10593).

Faithful to the paper and to the defaults of junyanz/pytorch-CycleGAN-and-pix2pix
(`train.py --model cycle_gan`): two ResNet generators (9 residual blocks at
256x256, 6 at 128x128 or less; ngf 64), two 70x70 PatchGAN discriminators
(3 layers, ndf 64), instance normalisation, reflection padding, no dropout;
the least-squares GAN loss; cycle loss weight 10 per direction and identity
loss 0.5 of it; an image pool of 50 fakes per discriminator; Adam lr 2e-4,
betas (0.5, 0.999), constant for the first half of training and then decaying
linearly to zero; batch size 1; images loaded at 286, randomly cropped to 256
and flipped. At these sizes each generator has 11,378,179 parameters and each
discriminator 2,764,737.

One deliberate difference: the reference steps its learning rate once per
epoch; here it decays every step (the same line, without the stairs). Train
for a number of epochs with `--epochs` (the reference's 100 + 100 is
`--epochs 200`) or of steps with `--steps`.

Naming: G_AB translates A to B, G_BA B to A; D_A judges domain A images and
D_B domain B images (the reference calls these G_A, G_B, D_B and D_A).

This module imports no torch, so `ganzoo list` stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ganzoo.api import (UNPAIRED, Adam, Architecture, DataSpec, Generator, Phase, image_latents, require,
                        require_fraction, require_positive)

__version__ = "0.1.0"


@dataclass
class CycleGANConfig:
    resolution: int = 256  # crop size (the reference's --crop_size); a multiple of 4
    load_resolution: int = 286  # images are decoded at this size, then randomly cropped (--load_size)
    flip: bool = True  # random left-right flips (the reference's default; --no_flip turns them off)
    channels: int = 3  # 1 (grey) or 3 (RGB), both domains
    ngf: int = 64  # generator width after the stem
    ndf: int = 64  # discriminator width at the first layer
    n_blocks: int | None = None  # residual blocks; None: 9 at 256 px and above, else 6 (as the paper)
    n_layers_d: int = 3  # PatchGAN depth; 3 gives 70x70 patches
    lambda_a: float = 10.0  # cycle loss weight A -> B -> A
    lambda_b: float = 10.0  # cycle loss weight B -> A -> B
    lambda_identity: float = 0.5  # identity loss, as a fraction of the cycle weights; 0 turns it off
    pool_size: int = 50  # fakes kept per discriminator; 0 turns the pool off
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    lr_decay_start: float = 0.5  # fraction of the run after which the lr falls linearly to zero
    init_gain: float = 0.02
    batch_size: int = 1

    def blocks(self) -> int:
        return self.n_blocks if self.n_blocks is not None else (9 if self.resolution >= 256 else 6)


def linear_decay(start: float):
    """lr factor: 1 until ``start`` of the run, then linearly to 0 at its end (the reference's 'linear' policy)."""

    def schedule(step: int, total: int) -> float:
        begin = start * total
        if step < begin or total <= begin:
            return 1.0
        return max(0.0, (total - step) / (total - begin))

    return schedule


class CycleGAN(Architecture):
    name = "cyclegan"
    summary = "CycleGAN (Zhu et al. 2017): unpaired image-to-image translation with cycle consistency"
    Config = CycleGANConfig
    presets = {
        # The embedded pair: Fashion-MNIST sneakers (A) and ankle boots (B), 28x28 grey padded to 32x32,
        # loaded at 36 and cropped to 32 (the reference's 286/256 ratio).
        "fashion-mnist": {"resolution": 32, "load_resolution": 36, "channels": 1},
        # The paper's 128x128 experiments (Cityscapes labels <-> photos): 6 residual blocks.
        "cyclegan-128": {"resolution": 128, "load_resolution": 143},
    }
    smoke = {"resolution": 24, "load_resolution": 28, "channels": 1, "ngf": 4, "ndf": 4, "n_blocks": 1,
             "pool_size": 3, "batch_size": 2}

    def validate(self, cfg):
        r, layers = cfg.resolution, cfg.n_layers_d
        require(layers >= 1, "n_layers_d", layers, "must be at least 1")
        smallest = 3 * 2**layers  # the PatchGAN's last normalised map must be larger than 1x1
        require(r % 4 == 0 and r >= smallest, "resolution", r,
                f"must be a multiple of 4 (two stride-2 downsamplings in G) and at least {smallest} for a "
                f"{layers}-layer PatchGAN (lower n_layers_d for smaller images)")
        require(cfg.load_resolution >= r, "load_resolution", cfg.load_resolution,
                f"must be at least resolution ({r}): random crops of resolution are taken from it")
        require(cfg.channels in (1, 3), "channels", cfg.channels, "must be 1 (grey) or 3 (RGB)")
        require_positive(cfg, "ngf", "ndf", "lr", "init_gain")
        require(cfg.n_blocks is None or cfg.n_blocks >= 0, "n_blocks", cfg.n_blocks,
                "must be 0 or more (or none for the paper's 9 at 256 px and above, else 6)")
        for key in ("lambda_a", "lambda_b", "lambda_identity", "pool_size"):
            require(getattr(cfg, key) >= 0, key, getattr(cfg, key), "must be 0 (off) or more")
        require_fraction(cfg, "beta1", "beta2", below_one=True)
        require_fraction(cfg, "lr_decay_start")

    def with_resolution(self, cfg, resolution):
        """Crops of ``resolution`` from images loaded at the same proportion as before (286/256)."""
        load = max(resolution, round(resolution * cfg.load_resolution / cfg.resolution))
        return replace(cfg, resolution=resolution, load_resolution=load)

    def data_spec(self, cfg):
        return DataSpec(UNPAIRED, cfg.resolution, cfg.channels, decode_resolution=cfg.load_resolution, flip=cfg.flip)

    def build(self, cfg):
        from .networks import NLayerDiscriminator, ResnetGenerator, init_weights

        def generator():
            return init_weights(ResnetGenerator(cfg.channels, cfg.ngf, cfg.blocks()), cfg.init_gain)

        def discriminator():
            return init_weights(NLayerDiscriminator(cfg.channels, cfg.ndf, cfg.n_layers_d), cfg.init_gain)

        return {"G_AB": generator(), "G_BA": generator(), "D_A": discriminator(), "D_B": discriminator()}

    def phases(self, cfg):
        adam = Adam(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), schedule=linear_decay(cfg.lr_decay_start))
        # The reference's order: both generators step, then both discriminators on (pooled) fakes.
        return [Phase("G", trains=("G_AB", "G_BA"), optimizer=adam),
                Phase("D", trains=("D_A", "D_B"), optimizer=adam)]

    def loss(self, phase, nets, batch, ctx):
        from .losses import discriminator_loss, generator_loss

        if phase.name == "G":
            return generator_loss(nets, batch, ctx)
        return discriminator_loss(nets, batch, ctx)

    def generators(self, cfg):
        example = image_latents(cfg.channels, cfg.resolution)
        return {
            "a2b": Generator(role="G_AB", inputs=("image",), latents=example, output="translation",
                             translates=("A", "B"), size_multiple=4),
            "b2a": Generator(role="G_BA", inputs=("image",), latents=example, output="translation",
                             translates=("B", "A"), size_multiple=4),
        }

    def import_checkpoint(self, files):
        """junyanz/pytorch-CycleGAN-and-pix2pix's *_net_G_A/G_B/D_A/D_B.pth and its pretrained generators."""
        from .importer import import_checkpoint

        return import_checkpoint(files)

    def reference_loop(self, cfg, device):
        """junyanz/pytorch-CycleGAN-and-pix2pix's optimize_parameters (see reference_loop.py)."""
        from .reference_loop import CycleGANReferenceLoop

        return CycleGANReferenceLoop(cfg, device)

    def preview(self, nets, cfg, n, seed, device, real=None):
        """Rows of: real A, A -> B, back to A, real B, B -> A, back to B (the reference's visuals)."""
        from .losses import preview_rows

        return preview_rows(nets, real, n)
