"""StyleGAN2's mapping, synthesis (skip outputs) and residual discriminator.

Layer for layer as NVlabs/stylegan2-ada-pytorch's `training/networks.py`
(`architecture='skip'` for G, `'resnet'` for D), so parameter counts match
its printed tables; see layers.py for how each layer stays exportable.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .layers import Conv2d, FullyConnected, SynthesisLayer, ToRGB, Upsample2x, normalize_2nd_moment


def channels_at(resolution: int, channel_base: int, channel_max: int) -> int:
    """Feature maps at a resolution: channel_base / resolution, capped (StyleGAN2's fmaps rule)."""
    return min(channel_base // resolution, channel_max)


def block_resolutions(resolution: int) -> list[int]:
    return [2**i for i in range(2, int(math.log2(resolution)) + 1)]


def noise_resolutions(resolution: int) -> list[int]:
    """The size of each synthesis layer's noise map, in the order the layers run (one at 4x4, two above)."""
    return [res for res in block_resolutions(resolution) for _ in range(1 if res == 4 else 2)]


def num_ws(resolution: int) -> int:
    """Style vectors the synthesis network reads: one per conv (1 at 4x4, 2 above) plus the last toRGB."""
    return 2 * len(block_resolutions(resolution))


class MappingNetwork(nn.Module):
    """z -> w: normalised z through ``num_layers`` leaky-ReLU layers at lr x0.01.

    While training it tracks the average w (``w_avg``), which the truncation
    trick pulls styles towards.
    """

    def __init__(self, z_dim: int, w_dim: int, num_ws: int, num_layers: int = 8, lr_multiplier: float = 0.01,
                 w_avg_beta: float = 0.995):
        super().__init__()
        self.num_ws, self.w_avg_beta = num_ws, w_avg_beta
        dims = [z_dim] + [w_dim] * num_layers
        self.layers = nn.ModuleList(FullyConnected(a, b, activation=True, lr_multiplier=lr_multiplier)
                                    for a, b in zip(dims[:-1], dims[1:]))
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor, truncation: torch.Tensor | None = None, update_w_avg: bool = True
                ) -> torch.Tensor:
        x = normalize_2nd_moment(z)
        for layer in self.layers:
            x = layer(x)
        if self.training and update_w_avg:
            self.w_avg.copy_(x.detach().float().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        ws = x.unsqueeze(1).expand(-1, self.num_ws, -1)
        if truncation is not None:  # psi per sample, (N, 1): w_avg + psi * (w - w_avg)
            ws = self.w_avg.to(ws.dtype) + truncation.to(ws.dtype).view(-1, 1, 1) * (ws - self.w_avg.to(ws.dtype))
        return ws


class SynthesisBlock(nn.Module):
    """One resolution: (2x up) conv, conv, and a toRGB whose output is added to the upsampled image.

    ``conv_clamp`` reaches both convs and the toRGB, as the reference's ``SynthesisBlock`` passes it.
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 conv_clamp: float | None = None):
        super().__init__()
        self.first = in_channels == 0
        if self.first:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=True, conv_clamp=conv_clamp)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp)
        self.torgb = ToRGB(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.upsample_image = None if self.first else Upsample2x(img_channels)
        self.num_conv = 1 if self.first else 2

    def forward(self, x, img, ws: torch.Tensor, noise=(None, None)):
        """``ws`` holds this block's styles: one per conv and one for toRGB (shared with the next block);
        ``noise`` one map per conv (None: the layer's own)."""
        if self.first:
            x = self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1).to(ws.dtype)
            x = self.conv1(x, ws[:, 0], noise[0])
        else:
            x = self.conv0(x, ws[:, 0], noise[0])
            x = self.conv1(x, ws[:, 1], noise[1])
        rgb = self.torgb(x, ws[:, self.num_conv])
        img = rgb if img is None else self.upsample_image(img).to(rgb.dtype) + rgb
        return x, img


class SynthesisNetwork(nn.Module):
    def __init__(self, w_dim: int, resolution: int, img_channels: int, channel_base: int, channel_max: int,
                 conv_clamp: float | None = None):
        super().__init__()
        self.resolutions = block_resolutions(resolution)
        self.num_ws = num_ws(resolution)
        blocks = {}
        for res in self.resolutions:
            in_channels = channels_at(res // 2, channel_base, channel_max) if res > 4 else 0
            out_channels = channels_at(res, channel_base, channel_max)
            blocks[f"b{res}"] = SynthesisBlock(in_channels, out_channels, w_dim, res, img_channels, conv_clamp)
        self.blocks = nn.ModuleDict(blocks)

    def forward(self, ws: torch.Tensor, noise: list[torch.Tensor] | None = None) -> torch.Tensor:
        """``noise``: one (N, 1, r, r) map per layer, sized as ``noise_resolutions``; None: the layers' own."""
        x = img = None
        index = 0
        for block in self.blocks.values():
            maps = (None, None) if noise is None else noise[index:index + block.num_conv]
            x, img = block(x, img, ws[:, index:index + block.num_conv + 1], maps)
            index += block.num_conv
        return img


class StyleGenerator(nn.Module):
    """z (and an optional per-sample truncation psi) -> image.

    Its two halves are reached through ``forward`` alone, so a wrapped generator
    (DDP, ``torch.compile``) serves them too: ``styles_only=True`` returns the
    styles ws (N, num_ws, w_dim) instead of the image, and ``ws=`` renders given
    styles. Path-length regularisation differentiates the image by its ws; the
    style-mixing grid mixes ws of two latents. ``noise`` (a list of per-layer
    maps, see ``noise_resolutions``) replaces the synthesis noise: the training
    losses draw it per sample through the LossContext; without it noise is
    random in training and constant in eval mode, as StyleGAN2-ADA's.

    Training images are unbounded, as in StyleGAN2; in eval mode (sampling,
    export) they are clamped to [-1, 1], the range every ganzoo generator declares.
    ``conv_clamp`` (None: off) clips every synthesis conv and toRGB output, as
    stylegan2-ada-pytorch's ``synthesis_kwargs.conv_clamp``.
    """

    def __init__(self, z_dim: int, w_dim: int, resolution: int, img_channels: int, channel_base: int,
                 channel_max: int, mapping_layers: int, mapping_lr_multiplier: float = 0.01,
                 conv_clamp: float | None = None):
        super().__init__()
        self.synthesis = SynthesisNetwork(w_dim, resolution, img_channels, channel_base, channel_max, conv_clamp)
        self.mapping = MappingNetwork(z_dim, w_dim, self.synthesis.num_ws, mapping_layers, mapping_lr_multiplier)

    def styles(self, z: torch.Tensor, truncation: torch.Tensor | None = None, mix_z: torch.Tensor | None = None,
               mix_mask: torch.Tensor | None = None) -> torch.Tensor:
        """ws (N, num_ws, w_dim); with ``mix_z``, the layers where ``mix_mask`` is true take mix_z's styles."""
        ws = self.mapping(z, truncation)
        if mix_z is not None:
            mixed = self.mapping(mix_z, truncation, update_w_avg=False)
            ws = torch.where(mix_mask.view(1, -1, 1), mixed, ws)
        return ws

    def forward(self, z: torch.Tensor | None = None, truncation: torch.Tensor | None = None,
                mix_z: torch.Tensor | None = None, mix_mask: torch.Tensor | None = None,
                ws: torch.Tensor | None = None, styles_only: bool = False,
                noise: list[torch.Tensor] | None = None) -> torch.Tensor:
        if ws is None:
            ws = self.styles(z, truncation, mix_z, mix_mask)
            if styles_only:
                return ws
        img = self.synthesis(ws, noise)
        return img if self.training else img.clamp(-1.0, 1.0)


class MinibatchStd(nn.Module):
    """Appends the std of features across groups of samples: lets D see a batch's lack of variety.

    A group is a run of gcd(``group_size``, N) consecutive samples. (StyleGAN2
    takes min(group_size, N) samples strided across the batch instead, which
    cannot split a batch of 5 to 7; where it can, the group sizes are equal
    and on a shuffled batch the two are the same statistic: docs/stylegan-lite.md.)
    Consecutive groups keep every group inside one rank's slice of a global
    batch when the group divides the per-rank batch, so D computes the same on
    one process as on several.
    """

    def __init__(self, group_size: int = 4, num_channels: int = 1):
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        group = math.gcd(self.group_size, n)  # StyleGAN2 needs n % group == 0; gcd keeps odd batches working
        f = self.num_channels
        y = x.reshape(-1, group, f, c // f, h, w)  # (n / group, group, ...): consecutive samples
        y = (y - y.mean(dim=1, keepdim=True)).square().mean(dim=1)
        y = (y + 1e-8).sqrt().mean(dim=(2, 3, 4))  # (n / group, f)
        y = y.reshape(-1, 1, f, 1, 1).expand(-1, group, f, h, w).reshape(n, f, h, w)
        return torch.cat([x, y], dim=1)


class DiscriminatorBlock(nn.Module):
    """Residual block: two 3x3 convs (the second halves the size) plus a 1x1 skip, each scaled by sqrt(1/2).

    ``conv_clamp`` reaches fromrgb, conv0 and conv1 (whose clamp scales by its sqrt(1/2) too), not the
    skip: the reference's ``DiscriminatorBlock``.
    """

    def __init__(self, in_channels: int, out_channels: int, img_channels: int, first: bool,
                 conv_clamp: float | None = None):
        super().__init__()
        self.fromrgb = Conv2d(img_channels, in_channels, 1, conv_clamp=conv_clamp) if first else None
        self.conv0 = Conv2d(in_channels, in_channels, 3, conv_clamp=conv_clamp)
        self.conv1 = Conv2d(in_channels, out_channels, 3, down=2, conv_clamp=conv_clamp)
        self.skip = Conv2d(in_channels, out_channels, 1, bias=False, activation=False, down=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fromrgb is not None:
            x = self.fromrgb(x)
        y = self.skip(x, gain=math.sqrt(0.5))
        return y + self.conv1(self.conv0(x), gain=math.sqrt(0.5))


class Discriminator(nn.Module):
    """Residual D from the image's resolution down to 4x4, then minibatch std, conv, fc and a logit.

    ``conv_clamp`` (None: off) clips every block's convs and the epilogue's conv, not the skips or fc
    layers, as stylegan2-ada-pytorch's ``Discriminator(conv_clamp=...)``.
    """

    def __init__(self, resolution: int, img_channels: int, channel_base: int, channel_max: int,
                 mbstd_group: int = 4, mbstd_channels: int = 1, conv_clamp: float | None = None):
        super().__init__()
        resolutions = block_resolutions(resolution)[::-1][:-1]  # resolution ... 8
        self.blocks = nn.ModuleDict({
            f"b{res}": DiscriminatorBlock(channels_at(res, channel_base, channel_max),
                                          channels_at(res // 2, channel_base, channel_max), img_channels,
                                          first=res == resolution, conv_clamp=conv_clamp)
            for res in resolutions})
        c = channels_at(4, channel_base, channel_max)
        self.mbstd = MinibatchStd(mbstd_group, mbstd_channels) if mbstd_channels > 0 else None
        self.conv = Conv2d(c + mbstd_channels, c, 3, conv_clamp=conv_clamp)
        self.fc = FullyConnected(c * 16, c, activation=True)
        self.out = FullyConnected(c, 1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = img
        for block in self.blocks.values():
            x = block(x)
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        return self.out(self.fc(x.flatten(1)))
