"""DCGAN: Radford, Metz and Chintala, "Unsupervised Representation Learning with
Deep Convolutional Generative Adversarial Networks", ICLR 2016 (arXiv:1511.06434).

Faithful to the paper and to pytorch/examples `dcgan/main.py`: a generator of
stride-2 transposed convolutions with batch norm and ReLU and a tanh output; a
discriminator of stride-2 convolutions with batch norm (none on the first layer)
and LeakyReLU 0.2; weights from N(0, 0.02); nz = 100, ngf = ndf = 64; Adam with
lr 2e-4 and betas (0.5, 0.999); the non-saturating loss; batch size 128.
At 64x64 RGB, G has 3,576,704 parameters and D 2,765,568, as in pytorch/examples.

This module imports no torch, so `ganzoo list` stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass

from ganzoo.api import (IMAGES, Adam, Architecture, DataSpec, Generator, Phase, gaussian_latents, require,
                        require_fraction, require_positive)

__version__ = "0.1.0"


@dataclass
class DCGANConfig:
    resolution: int = 64  # a power of two >= 32
    channels: int = 3  # 1 (grey) or 3 (RGB)
    nz: int = 100  # latent size
    ngf: int = 64  # generator width at the last hidden layer
    ndf: int = 64  # discriminator width at the first layer
    max_channels: int = 1024  # cap on widths at 128x128 and above
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    batch_size: int = 128


class DCGAN(Architecture):
    name = "dcgan"
    summary = "DCGAN (Radford et al. 2015): all-convolutional G and D with batch norm"
    Config = DCGANConfig
    presets = {
        # The embedded Fashion-MNIST test split, 28x28 grey padded to 32x32.
        "fashion-mnist": {"resolution": 32, "channels": 1, "batch_size": 128},
        # 64x64 RGB folders such as aligned CelebA, as pytorch/examples trains them.
        "celeba-64": {"resolution": 64, "channels": 3, "batch_size": 128},
    }
    smoke = {"resolution": 32, "channels": 1, "nz": 16, "ngf": 8, "ndf": 8, "batch_size": 8}

    def validate(self, cfg):
        r = cfg.resolution
        require(r >= 32 and r & (r - 1) == 0, "resolution", r, "must be a power of two, 32 or more")
        require(cfg.channels in (1, 3), "channels", cfg.channels, "must be 1 (grey) or 3 (RGB)")
        require_positive(cfg, "nz", "ngf", "ndf", "max_channels", "lr")
        require_fraction(cfg, "beta1", "beta2", below_one=True)

    def data_spec(self, cfg):
        return DataSpec(IMAGES, cfg.resolution, cfg.channels)

    def build(self, cfg):
        from .networks import Discriminator, Generator

        return {"G": Generator(cfg), "D": Discriminator(cfg)}

    def phases(self, cfg):
        adam = Adam(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        return [Phase("D", trains=("D",), optimizer=adam), Phase("G", trains=("G",), optimizer=adam)]

    def loss(self, phase, nets, batch, ctx):
        from ganzoo.nn.losses import nonsaturating_d_loss, nonsaturating_g_loss

        G, D = nets["G"], nets["D"]
        real = batch["image"]
        z = ctx.randn(real.shape[0], ctx.cfg.nz)
        if phase.name == "D":
            with _no_grad():
                fake = G(z)
            real_logits, fake_logits = D(real), D(fake)
            ctx.log("D/real", real_logits.detach().float().mean())
            ctx.log("D/fake", fake_logits.detach().float().mean())
            return nonsaturating_d_loss(real_logits, fake_logits)
        return nonsaturating_g_loss(D(G(z)))

    def import_checkpoint(self, files):
        """pytorch/examples dcgan's netG_epoch_N.pth and netD_epoch_N.pth."""
        from .importer import import_checkpoint

        return import_checkpoint(files)

    def generators(self, cfg):
        return {"G": Generator(role="G", inputs=("z",), latents=gaussian_latents(cfg.nz))}

    def reference_loop(self, cfg, device):
        """pytorch/examples dcgan/main.py's training loop (see reference_loop.py)."""
        from .reference_loop import DCGANReferenceLoop

        return DCGANReferenceLoop(cfg, device)


def _no_grad():
    import torch

    return torch.no_grad()
