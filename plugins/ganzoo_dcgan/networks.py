"""DCGAN networks for any power-of-two resolution >= 32 (``DCGAN.validate`` checks the config).

Widths follow pytorch/examples: the layer that outputs resolution r has
ngf * R / (2 r) channels in G (R the image size), mirrored in D, so 64x64 gives
512-256-128-64 and 32x32 gives 256-128-64.

With ``num_classes > 0`` the networks are class-conditional, in one of two published ways
(``conditioning``):

``"concat"`` (the default): the conditional GAN of Mirza & Osindero ("Conditional Generative
Adversarial Nets", arXiv:1411.1784, 2014, sec. 3.2: "y is fed into both the discriminator and
generator as additional input layer") on DCGAN's convolutional networks: G's input is z
concatenated with the one-hot label (its projection reads nz + num_classes numbers), and D's input
is the image concatenated with num_classes label maps, map k all ones for class k and zeros
otherwise (the label replicated over positions, the usual way a convolutional D takes it).
Nothing else changes: the same layers and keys as the unconditional networks, whose first layers
read num_classes more inputs. Measured on the embedded Fashion-MNIST (docs/dcgan.md), it learns the
classes several times faster than the projection pair below at the demo's size.

``"projection"``: as PyTorch-StudioGAN's
``deep_conv`` backbone makes DCGAN conditional with ``g_cond_mtd: "cBN"`` and
``d_cond_mtd: "PD"`` (src/models/deep_conv.py and src/utils/ops.py, commit 947b35e):

- every batch norm of G becomes a conditional batch norm (de Vries et al., "Modulating
  early visual processing by language", NeurIPS 2017; Miyato & Koyama 2018, sec. 4):
  ``bn(x) * (1 + gain(y)) + bias(y)`` with a batch norm without affine parameters and
  ``gain``, ``bias`` bias-free linear maps of the one-hot label y (StudioGAN's
  ``ConditionalBatchNorm2d``);
- D is a projection discriminator (Miyato & Koyama, "cGANs with Projection
  Discriminator", ICLR 2018, eq. 3): ``f(x, y) = psi(phi(x)) + <embed(y), sum_hw phi(x)>``,
  phi(x) the last hidden features (after the activation), summed over positions as
  StudioGAN's ``torch.sum(h, dim=[2, 3])``, embed an ``nn.Embedding(num_classes, width)``.

Where this differs from StudioGAN, to stay pytorch/examples' DCGAN: psi is DCGAN's
final 4x4 convolution over the 4x4 features (StudioGAN: a linear map of the summed
features); G's batch norms, including the one after the first projection (StudioGAN's
deep_conv has none there), keep torch's eps 1e-5 (StudioGAN: 1e-4); weights start
from N(0, 0.02), StudioGAN's "N02" init (its configs default to "ortho").
With ``num_classes == 0`` nothing here changes: same modules, keys, draws and function.
"""

import math

import torch
from torch import nn


def _width(base: int, resolution: int, r: int, cap: int) -> int:
    return min(base * resolution // (2 * r), cap)


def init_weights(module: nn.Module) -> None:
    """N(0, 0.02) for convolutions, the projection and the label maps (StudioGAN's "N02" for embeddings too),
    N(1, 0.02) for batch-norm scales (the paper's init). A conditional batch norm's gain map starts at
    N(0, 0.02), so its scale 1 + gain(y) is N(1, 0.02) per class, as the unconditional scale is."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d) and module.affine:
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class ConditionalBatchNorm2d(nn.Module):
    """Batch norm whose scale and shift come from the class (de Vries et al. 2017; StudioGAN's
    ``ConditionalBatchNorm2d``): ``bn(x) * (1 + gain(y)) + bias(y)``, y one-hot (B, num_classes)."""

    def __init__(self, num_classes: int, channels: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Linear(num_classes, channels, bias=False)
        self.bias = nn.Linear(num_classes, channels, bias=False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        gain = (1 + self.gain(y)).view(y.shape[0], -1, 1, 1)
        bias = self.bias(y).view(y.shape[0], -1, 1, 1)
        return self.bn(x) * gain + bias


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
    """z (B, nz) [, one-hot label (B, num_classes)] -> image (B, C, R, R) in [-1, 1].

    Conditional: ``main`` reads z and the label concatenated ("concat"), or each batch norm is a
    ConditionalBatchNorm2d at the same index of ``main`` ("projection").
    """

    def __init__(self, cfg):
        super().__init__()
        R, cap = cfg.resolution, cfg.max_channels
        self.num_classes = getattr(cfg, "num_classes", 0)
        self.concat = bool(self.num_classes) and cfg.conditioning == "concat"

        def norm(channels: int) -> nn.Module:
            if self.num_classes and not self.concat:
                return ConditionalBatchNorm2d(self.num_classes, channels)
            return nn.BatchNorm2d(channels)

        width = _width(cfg.ngf, R, 4, cap)
        layers = [Project(cfg.nz + (self.num_classes if self.concat else 0), width), norm(width), nn.ReLU(True)]
        for r in (2**k for k in range(3, int(math.log2(R)))):
            out = _width(cfg.ngf, R, r, cap)
            layers += [nn.ConvTranspose2d(width, out, 4, 2, 1, bias=False), norm(out), nn.ReLU(True)]
            width = out
        layers += [nn.ConvTranspose2d(width, cfg.channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        self.apply(init_weights)

    def forward(self, z: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        if not self.num_classes:
            return self.main(z)
        if label is None:
            raise TypeError(f"this generator is conditional ({self.num_classes} classes): pass a one-hot label")
        if self.concat:
            return self.main(torch.cat([z, label.to(z.dtype)], 1))
        x = z
        for layer in self.main:
            x = layer(x, label) if isinstance(layer, ConditionalBatchNorm2d) else layer(x)
        return x


class Discriminator(nn.Module):
    """image (B, C, R, R) [, int64 label (B,)] -> logits (B,). The sigmoid lives in the loss (softplus).

    Conditional, "concat": ``main`` reads the image and num_classes label maps (one-hot, constant over
    positions) concatenated on the channels. "projection": a projection discriminator,
    logits = main(x) + <embedding(label), sum over positions of the
    features main's last convolution reads> (Miyato & Koyama 2018, eq. 3; StudioGAN's "PD").
    """

    def __init__(self, cfg):
        super().__init__()
        R, cap = cfg.resolution, cfg.max_channels
        self.num_classes = getattr(cfg, "num_classes", 0)
        self.concat = bool(self.num_classes) and cfg.conditioning == "concat"
        width = _width(cfg.ndf, R, R // 2, cap)
        reads = cfg.channels + (self.num_classes if self.concat else 0)
        layers = [nn.Conv2d(reads, width, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        r = R // 4
        while r >= 4:
            out = _width(cfg.ndf, R, r, cap)
            layers += [nn.Conv2d(width, out, 4, 2, 1, bias=False), nn.BatchNorm2d(out), nn.LeakyReLU(0.2, True)]
            width, r = out, r // 2
        layers += [nn.Conv2d(width, 1, 4, 1, 0, bias=False)]
        self.main = nn.Sequential(*layers)
        if self.num_classes and not self.concat:
            self.embedding = nn.Embedding(self.num_classes, width)
        self.apply(init_weights)

    def forward(self, x: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        if not self.num_classes:
            return self.main(x).flatten()
        if label is None:
            raise TypeError(f"this discriminator is conditional ({self.num_classes} classes): pass the labels")
        if self.concat:
            maps = nn.functional.one_hot(label, self.num_classes).to(x.dtype)[:, :, None, None]
            return self.main(torch.cat([x, maps.expand(-1, -1, *x.shape[2:])], 1)).flatten()
        *body, head = self.main
        h = x
        for layer in body:
            h = layer(h)
        return head(h).flatten() + (self.embedding(label) * h.sum(dim=(2, 3))).sum(1)
