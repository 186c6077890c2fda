"""WGAN-GP: Gulrajani, Ahmed, Arjovsky, Dumoulin and Courville, "Improved Training
of Wasserstein GANs", NeurIPS 2017 (arXiv:1704.00028).

Algorithm 1 of the paper with its defaults: lambda = 10, n_critic = 5, Adam with
lr 1e-4 and betas (0, 0.9), batch 64. The critic has no batch normalisation (the
penalty is per sample); like the paper's models it uses layer normalisation
instead. The generator is DCGAN-shaped with batch norm.

Imports no torch at module level, so `ganzoo list` stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass

from ganzoo.api import (IMAGES, Adam, Architecture, DataSpec, Generator, Phase, gaussian_latents, require,
                        require_fraction, require_positive)

__version__ = "0.1.0"


@dataclass
class WGANGPConfig:
    resolution: int = 64  # 32 or 64
    channels: int = 3
    nz: int = 128
    width: int = 64  # channels of the widest-resolution layer; doubles as resolution halves
    gp_lambda: float = 10.0
    n_critic: int = 5
    lr: float = 1e-4
    beta1: float = 0.0
    beta2: float = 0.9
    batch_size: int = 64


class WGANGP(Architecture):
    name = "wgan-gp"
    summary = "WGAN-GP (Gulrajani et al. 2017): Wasserstein critic with a gradient penalty"
    Config = WGANGPConfig
    presets = {"fashion-mnist": {"resolution": 32, "channels": 1}}
    smoke = {"resolution": 32, "channels": 1, "nz": 8, "width": 8, "batch_size": 4}

    def validate(self, cfg):
        require(cfg.resolution in (32, 64), "resolution", cfg.resolution, "must be 32 or 64")
        require(cfg.channels in (1, 3), "channels", cfg.channels, "must be 1 (grey) or 3 (RGB)")
        require_positive(cfg, "nz", "width", "n_critic", "lr")
        require(cfg.gp_lambda >= 0, "gp_lambda", cfg.gp_lambda, "must be 0 (no penalty) or more")
        require_fraction(cfg, "beta1", "beta2", below_one=True)

    def data_spec(self, cfg):
        return DataSpec(IMAGES, cfg.resolution, cfg.channels)

    def build(self, cfg):
        from .networks import Critic, Generator

        return {"G": Generator(cfg), "D": Critic(cfg)}

    def phases(self, cfg):
        adam = Adam(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        return [Phase("D", ("D",), adam, eager=True),  # the penalty needs a double backward
                Phase("G", ("G",), adam, interval=cfg.n_critic)]

    def loss(self, phase, nets, batch, ctx):
        import torch

        G, D = nets["G"], nets["D"]
        real = batch["image"]
        z = ctx.randn(real.shape[0], ctx.cfg.nz)
        if phase.name == "G":
            return -D(G(z)).mean()
        with torch.no_grad():
            fake = G(z)
        wasserstein = D(fake).mean() - D(real).mean()
        penalty = gradient_penalty(D, real, fake, ctx.rand(real.shape[0], 1, 1, 1))
        ctx.log("D/wasserstein", -wasserstein.detach())
        ctx.log("D/gp", penalty.detach())
        return wasserstein + ctx.cfg.gp_lambda * penalty

    def generators(self, cfg):
        return {"G": Generator(role="G", inputs=("z",), latents=gaussian_latents(cfg.nz))}


def gradient_penalty(D, real, fake, eps):
    """(||grad_x D(x_hat)||_2 - 1)^2 at x_hat = eps * real + (1 - eps) * fake (Algorithm 1, line 6-7)."""
    import torch

    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
