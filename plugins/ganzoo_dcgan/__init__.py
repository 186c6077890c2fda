"""DCGAN: Radford, Metz and Chintala, "Unsupervised Representation Learning with
Deep Convolutional Generative Adversarial Networks", ICLR 2016 (arXiv:1511.06434).

Faithful to the paper and to pytorch/examples `dcgan/main.py`: a generator of
stride-2 transposed convolutions with batch norm and ReLU and a tanh output; a
discriminator of stride-2 convolutions with batch norm (none on the first layer)
and LeakyReLU 0.2; weights from N(0, 0.02); nz = 100, ngf = ndf = 64; Adam with
lr 2e-4 and betas (0.5, 0.999); the non-saturating loss; batch size 128.
At 64x64 RGB, G has 3,576,704 parameters and D 2,765,568, as in pytorch/examples.

``num_classes > 0`` (``ganzoo train dcgan --cond``) makes it class-conditional. ``conditioning``
says how: "concat" (the default), Mirza & Osindero's conditional GAN ("Conditional Generative
Adversarial Nets", 2014): the one-hot label joins z at G's input and label maps join the image at
D's input; or "projection": conditional batch norm in G and a projection discriminator (Miyato &
Koyama, "cGANs with Projection Discriminator", ICLR 2018), as PyTorch-StudioGAN's deep_conv DCGAN
with g_cond_mtd "cBN" and d_cond_mtd "PD" (networks.py says what is followed and where it
differs). The default is the one that learns the classes at the demo's size (docs/dcgan.md has the
figures). D sees real images
with their labels and generated images with the labels G was given, drawn by ``ctx.labels``
from the data's class frequencies; the loss stays non-saturating.

This module imports no torch, so `ganzoo list` stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass

from ganzoo.api import (IMAGES, Adam, Architecture, DataSpec, Gaussian, Generator, Latents, OneHot, Phase,
                        gaussian_latents, require, require_fraction, require_positive)

__version__ = "0.1.0"


CONDITIONING = ("concat", "projection")


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
    num_classes: int = 0  # classes to condition on (`--cond` sets it from the data); 0: unconditional
    conditioning: str = "concat"  # with classes: "concat" (Mirza & Osindero 2014) or "projection" (cBN + PD)


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
    class_count_key = "num_classes"

    def validate(self, cfg):
        r = cfg.resolution
        require(r >= 32 and r & (r - 1) == 0, "resolution", r, "must be a power of two, 32 or more")
        require(cfg.channels in (1, 3), "channels", cfg.channels, "must be 1 (grey) or 3 (RGB)")
        require_positive(cfg, "nz", "ngf", "ndf", "max_channels", "lr")
        require_fraction(cfg, "beta1", "beta2", below_one=True)
        require(cfg.conditioning in CONDITIONING, "conditioning", cfg.conditioning,
                f"must be {' or '.join(map(repr, CONDITIONING))}")
        require(cfg.num_classes >= 0, "num_classes", cfg.num_classes,
                "must be 0 (unconditional) or the number of classes (--cond sets it from the data)")

    def data_spec(self, cfg):
        return DataSpec(IMAGES, cfg.resolution, cfg.channels, labels=cfg.num_classes > 0)

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
        n = real.shape[0]
        z = ctx.randn(n, ctx.cfg.nz)
        g_in, d_real, d_fake = (z,), (), ()
        if ctx.cfg.num_classes:  # G draws the class it is given; D judges each image against its class
            import torch.nn.functional as F

            labels = ctx.labels(n)
            g_in, d_real, d_fake = (z, F.one_hot(labels, ctx.cfg.num_classes).float()), (batch["label"],), (labels,)
        if phase.name == "D":
            with _no_grad():
                fake = G(*g_in)
            real_logits, fake_logits = D(real, *d_real), D(fake, *d_fake)
            ctx.log("D/real", real_logits.detach().float().mean())
            ctx.log("D/fake", fake_logits.detach().float().mean())
            return nonsaturating_d_loss(real_logits, fake_logits)
        return nonsaturating_g_loss(D(G(*g_in), *d_fake))

    def import_checkpoint(self, files):
        """pytorch/examples dcgan's netG_epoch_N.pth and netD_epoch_N.pth."""
        from .importer import import_checkpoint

        return import_checkpoint(files)

    def generators(self, cfg):
        if cfg.num_classes:
            latents = Latents((Gaussian("z", (cfg.nz,)), OneHot("label", (cfg.num_classes,))))
            return {"G": Generator(role="G", inputs=("z", "label"), latents=latents)}
        return {"G": Generator(role="G", inputs=("z",), latents=gaussian_latents(cfg.nz))}

    def reference_loop(self, cfg, device):
        """pytorch/examples dcgan/main.py's training loop (see reference_loop.py); it has no conditional
        version, so a conditional config has no reference row."""
        if cfg.num_classes:
            return None
        from .reference_loop import DCGANReferenceLoop

        return DCGANReferenceLoop(cfg, device)


def _no_grad():
    import torch

    return torch.no_grad()
