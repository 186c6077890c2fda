"""DCGAN networks for any power-of-two resolution >= 32 (``DCGAN.validate`` checks the config).

Widths follow pytorch/examples: the layer that outputs resolution r has
ngf * R / (2 r) channels in G (R the image size), mirrored in D, so 64x64 gives
512-256-128-64 and 32x32 gives 256-128-64.
"""

import math

import torch
from torch import nn


def _width(base: int, resolution: int, r: int, cap: int) -> int:
    return min(base * resolution // (2 * r), cap)


def init_weights(module: nn.Module) -> None:
    """N(0, 0.02) for convolutions (and the projection), N(1, 0.02) for batch-norm scales (the paper's init)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class Project(nn.Module):
    """z (B, nz) -> (B, C, 4, 4): the paper's first layer, "just a matrix multiplication"
    reshaped to 4x4xC. It equals pytorch/examples' 4x4 transposed convolution of a
    1x1 input (same parameters, same function) and compiles and exports more simply.
    """

    def __init__(self, nz: int, channels: int):
        super().__init__()
        self.channels = channels
        self.linear = nn.Linear(nz, channels * 16, bias=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear(z).view(-1, self.channels, 4, 4)


class Generator(nn.Module):
    """z (B, nz) -> image (B, C, R, R) in [-1, 1]."""

    def __init__(self, cfg):
        super().__init__()
        R, cap = cfg.resolution, cfg.max_channels
        width = _width(cfg.ngf, R, 4, cap)
        layers = [Project(cfg.nz, width), nn.BatchNorm2d(width), nn.ReLU(True)]
        for r in (2**k for k in range(3, int(math.log2(R)))):
            out = _width(cfg.ngf, R, r, cap)
            layers += [nn.ConvTranspose2d(width, out, 4, 2, 1, bias=False), nn.BatchNorm2d(out), nn.ReLU(True)]
            width = out
        layers += [nn.ConvTranspose2d(width, cfg.channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        self.apply(init_weights)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z)


class Discriminator(nn.Module):
    """image (B, C, R, R) -> logits (B,). The sigmoid lives in the loss (softplus)."""

    def __init__(self, cfg):
        super().__init__()
        R, cap = cfg.resolution, cfg.max_channels
        width = _width(cfg.ndf, R, R // 2, cap)
        layers = [nn.Conv2d(cfg.channels, width, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        r = R // 4
        while r >= 4:
            out = _width(cfg.ndf, R, r, cap)
            layers += [nn.Conv2d(width, out, 4, 2, 1, bias=False), nn.BatchNorm2d(out), nn.LeakyReLU(0.2, True)]
            width, r = out, r // 2
        layers += [nn.Conv2d(width, 1, 4, 1, 0, bias=False)]
        self.main = nn.Sequential(*layers)
        self.apply(init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).flatten()
