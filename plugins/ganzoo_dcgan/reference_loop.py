"""pytorch/examples ``dcgan/main.py``'s training loop, for the benchmark's ``reference-loop`` row.

What a user who did not use ganzoo would run: the example's ``Generator`` and
``Discriminator`` (one ``nn.Sequential`` called ``main`` each, the sigmoid in D,
``weights_init`` with N(0, 0.02)), ``nn.BCELoss``, ``label.fill_`` with
real_label = 1 and fake_label = 0, torch's default Adam (lr 2e-4, betas
(0.5, 0.999), nothing else set), eager fp32 NCHW with cuDNN autotuning on
(``cudnn.benchmark = True``, as the example sets it), and per iteration the
example's order of work: D on reals, D on ``fake.detach()``, D steps; G through
the same ``fake``, G steps; and the five ``.item()`` reads of its progress line
(D(x), D(G(z)) twice, Loss_D, Loss_G), which it makes every iteration.
Left out, as the bench does for every row: the data loader (batches arrive on
the device), the print itself, the sample images every 100 iterations and the
per-epoch checkpoints.

The example's networks are for 64x64 RGB. They are generalised here as ganzoo's
DCGAN generalises them (the same layer count and widths per resolution, the
same ``max_channels`` cap), so at 64x64 their state-dict keys and shapes are the
example's, and at any resolution their parameter counts are ganzoo's.
"""

from __future__ import annotations

import math

import torch
from torch import nn, optim

from ganzoo.api import ReferenceLoop


def _width(base: int, resolution: int, r: int, cap: int | None) -> int:
    """The example's width rule (ngf * 8 at 4x4 for 64x64 images), as ganzoo's networks.py applies it."""
    width = base * resolution // (2 * r)
    return width if cap is None else min(width, cap)


def weights_init(m: nn.Module) -> None:
    """The example's custom init, by class name: N(0, 0.02) convolutions, N(1, 0.02) batch-norm scales."""
    classname = m.__class__.__name__
    if classname.find("Conv") != -1:
        nn.init.normal_(m.weight.data, 0.0, 0.02)
    elif classname.find("BatchNorm") != -1:
        nn.init.normal_(m.weight.data, 1.0, 0.02)
        nn.init.constant_(m.bias.data, 0)


class RefDCGANGenerator(nn.Module):
    """The example's Generator: z (B, nz, 1, 1) -> image (B, nc, R, R), transposed convolutions throughout."""

    def __init__(self, nz: int, ngf: int, nc: int, resolution: int = 64, max_channels: int | None = None):
        super().__init__()
        width = _width(ngf, resolution, 4, max_channels)
        layers = [nn.ConvTranspose2d(nz, width, 4, 1, 0, bias=False), nn.BatchNorm2d(width), nn.ReLU(True)]
        for r in (2**k for k in range(3, int(math.log2(resolution)))):
            out = _width(ngf, resolution, r, max_channels)
            layers += [nn.ConvTranspose2d(width, out, 4, 2, 1, bias=False), nn.BatchNorm2d(out), nn.ReLU(True)]
            width = out
        layers += [nn.ConvTranspose2d(width, nc, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z):
        return self.main(z)


class RefDCGANDiscriminator(nn.Module):
    """The example's Discriminator: image -> probability (B,), the sigmoid inside."""

    def __init__(self, ndf: int, nc: int, resolution: int = 64, max_channels: int | None = None):
        super().__init__()
        width = _width(ndf, resolution, resolution // 2, max_channels)
        layers = [nn.Conv2d(nc, width, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)]
        r = resolution // 4
        while r >= 4:
            out = _width(ndf, resolution, r, max_channels)
            layers += [nn.Conv2d(width, out, 4, 2, 1, bias=False), nn.BatchNorm2d(out),
                       nn.LeakyReLU(0.2, inplace=True)]
            width, r = out, r // 2
        layers += [nn.Conv2d(width, 1, 4, 1, 0, bias=False), nn.Sigmoid()]
        self.main = nn.Sequential(*layers)

    def forward(self, x):
        return self.main(x).view(-1, 1).squeeze(1)


class DCGANReferenceLoop(ReferenceLoop):
    """The example's ``for i, data in enumerate(dataloader)`` body at a DCGAN config, on ``device``."""

    source = "pytorch/examples dcgan/main.py"
    real_label = 1.0
    fake_label = 0.0

    def __init__(self, cfg, device: torch.device):
        torch.backends.cudnn.benchmark = True  # set at the example's start (the bench puts it back afterwards)
        self.device, self.nz = device, cfg.nz
        self.netG = RefDCGANGenerator(cfg.nz, cfg.ngf, cfg.channels, cfg.resolution, cfg.max_channels).to(device)
        self.netG.apply(weights_init)
        self.netD = RefDCGANDiscriminator(cfg.ndf, cfg.channels, cfg.resolution, cfg.max_channels).to(device)
        self.netD.apply(weights_init)
        self.criterion = nn.BCELoss()
        self.optimizerD = optim.Adam(self.netD.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        self.optimizerG = optim.Adam(self.netG.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        self.progress: dict[str, float] = {}  # the example's printed values of the last step

    def step(self, batch):
        netD, netG, criterion = self.netD, self.netG, self.criterion
        # (1) Update D network: maximize log(D(x)) + log(1 - D(G(z)))
        netD.zero_grad()
        real_cpu = batch["image"]  # the example's data[0].to(device)
        batch_size = real_cpu.size(0)
        label = torch.full((batch_size,), self.real_label, dtype=real_cpu.dtype, device=self.device)
        output = netD(real_cpu)
        errD_real = criterion(output, label)
        errD_real.backward()
        D_x = output.mean().item()

        noise = torch.randn(batch_size, self.nz, 1, 1, device=self.device)
        fake = netG(noise)
        label.fill_(self.fake_label)
        output = netD(fake.detach())
        errD_fake = criterion(output, label)
        errD_fake.backward()
        D_G_z1 = output.mean().item()
        errD = errD_real + errD_fake
        self.optimizerD.step()

        # (2) Update G network: maximize log(D(G(z)))
        netG.zero_grad()
        label.fill_(self.real_label)  # fake labels are real for generator cost
        output = netD(fake)
        errG = criterion(output, label)
        errG.backward()
        D_G_z2 = output.mean().item()
        self.optimizerG.step()
        self.progress = {"Loss_D": errD.item(), "Loss_G": errG.item(), "D(x)": D_x, "D(G(z)) before": D_G_z1,
                         "D(G(z)) after": D_G_z2}
