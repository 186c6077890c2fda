"""DCGAN-shaped generator and a critic without batch norm (layer norm instead)."""

import torch
from torch import nn


class Generator(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        n_up = {32: 3, 64: 4}[cfg.resolution]
        width = cfg.width * 2 ** (n_up - 1)
        self.project = nn.Sequential(nn.Linear(cfg.nz, width * 16), nn.Unflatten(1, (width, 4, 4)),
                                     nn.BatchNorm2d(width), nn.ReLU(True))
        layers = []
        for _ in range(n_up - 1):
            layers += [nn.ConvTranspose2d(width, width // 2, 4, 2, 1), nn.BatchNorm2d(width // 2), nn.ReLU(True)]
            width //= 2
        layers += [nn.ConvTranspose2d(width, cfg.channels, 4, 2, 1), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(self.project(z))


class Critic(nn.Module):
    """image -> a real-valued score per image (no sigmoid: it estimates a Wasserstein distance)."""

    def __init__(self, cfg):
        super().__init__()
        n_down = {32: 3, 64: 4}[cfg.resolution]
        layers, width, size = [nn.Conv2d(cfg.channels, cfg.width, 4, 2, 1), nn.LeakyReLU(0.2)], cfg.width, cfg.resolution // 2
        for _ in range(n_down - 1):
            size //= 2
            layers += [nn.Conv2d(width, width * 2, 4, 2, 1), nn.LayerNorm([width * 2, size, size]), nn.LeakyReLU(0.2)]
            width *= 2
        layers += [nn.Flatten(), nn.Linear(width * 16, 1), nn.Flatten(0)]
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)
