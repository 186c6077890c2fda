"""CycleGAN's networks, layer for layer as in the reference implementation.

junyanz/pytorch-CycleGAN-and-pix2pix `models/networks.py`: `ResnetGenerator`
(netG resnet_9blocks / resnet_6blocks) and `NLayerDiscriminator` (netD basic,
the 70x70 PatchGAN), with instance normalisation (no affine parameters, no
running statistics, so convolutions keep their biases), reflection padding,
no dropout, and weights drawn from N(0, 0.02) (init_type normal).
"""

from __future__ import annotations

from torch import nn


def _norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class ResnetBlock(nn.Module):
    """Two reflection-padded 3x3 convolutions with a skip connection."""

    def __init__(self, dim: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), _norm(dim), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), _norm(dim),
        )

    def forward(self, x):
        return x + self.block(x)


class ResnetGenerator(nn.Module):
    """7x7 stem, two stride-2 downsamplings, n residual blocks, two transposed-conv upsamplings, tanh.

    Fully convolutional: any height and width divisible by 4 translates.
    """

    def __init__(self, channels: int = 3, ngf: int = 64, n_blocks: int = 9):
        super().__init__()
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(channels, ngf, 7), _norm(ngf), nn.ReLU(True)]
        for i in range(2):
            mult = 2**i
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1), _norm(ngf * mult * 2), nn.ReLU(True)]
        layers += [ResnetBlock(ngf * 4) for _ in range(n_blocks)]
        for i in range(2):
            mult = 2 ** (2 - i)
            layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1),
                       _norm(ngf * mult // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, image):
        return self.model(image)


class NLayerDiscriminator(nn.Module):
    """PatchGAN: with 3 layers each output sees a 70x70 patch; logits are a (N, 1, H', W') map."""

    def __init__(self, channels: int = 3, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        layers = [nn.Conv2d(channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            previous, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(ndf * previous, ndf * mult, 4, stride=stride, padding=1), _norm(ndf * mult),
                       nn.LeakyReLU(0.2, True)]
        layers += [nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1)]
        self.model = nn.Sequential(*layers)

    def forward(self, image):
        return self.model(image)


def init_weights(module: nn.Module, gain: float = 0.02) -> nn.Module:
    """The reference's init_type 'normal': conv weights from N(0, gain), biases zero."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, gain)
            nn.init.zeros_(m.bias)
    return module


def receptive_field(n_layers: int = 3) -> int:
    """The PatchGAN's receptive field in pixels (70 for 3 layers), walked back from one output.

    Its 4x4 convolutions have strides 2 (n_layers of them) and then 1, 1.
    """
    size = 1
    for stride in reversed([2] * n_layers + [1, 1]):
        size = (size - 1) * stride + 4
    return size
