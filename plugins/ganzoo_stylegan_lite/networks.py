"""StyleGAN2's mapping, synthesis (skip outputs) and residual discriminator, optionally class-conditional.

Layer for layer as NVlabs/stylegan2-ada-pytorch's `training/networks.py`
(`architecture='skip'` for G, `'resnet'` or `'orig'` for D; its label embedding
and projection discriminator for c_dim > 0), so parameter counts match its
printed tables; see layers.py for how each layer stays exportable.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from . import D_ARCHITECTURES
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
    """(z, label) -> w: normalised z and label embedding through ``num_layers`` leaky-ReLU layers at lr x0.01.

    As stylegan2-ada-pytorch's ``MappingNetwork``: with ``c_dim`` classes an
    ``embed`` layer (c_dim -> w_dim, lr x1) maps the one-hot label, and
    normalize_2nd_moment(z) and normalize_2nd_moment(embed(c)) are concatenated
    into the first layer (z_dim + w_dim inputs); ``z_dim`` 0 takes the label
    alone. While training it tracks the average w (``w_avg``, one over all
    classes), which the truncation trick pulls styles towards. ``num_ws`` None
    returns w itself, and ``w_avg_beta`` None tracks nothing: the discriminator's
    label mapping (``cmap``).
    """

    def __init__(self, z_dim: int, w_dim: int, num_ws: int | None, num_layers: int = 8, lr_multiplier: float = 0.01,
                 w_avg_beta: float | None = 0.995, c_dim: int = 0):
        super().__init__()
        self.z_dim, self.c_dim, self.num_ws, self.w_avg_beta = z_dim, c_dim, num_ws, w_avg_beta
        if c_dim > 0:
            self.embed = FullyConnected(c_dim, w_dim)
        dims = [z_dim + (w_dim if c_dim > 0 else 0)] + [w_dim] * num_layers
        self.layers = nn.ModuleList(FullyConnected(a, b, activation=True, lr_multiplier=lr_multiplier)
                                    for a, b in zip(dims[:-1], dims[1:]))
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor | None, truncation: torch.Tensor | None = None, update_w_avg: bool = True,
                label: torch.Tensor | None = None) -> torch.Tensor:
        """``label``: one-hot (N, c_dim) floats, needed exactly when the network is conditional."""
        parts = []
        if self.z_dim > 0:
            parts.append(normalize_2nd_moment(z))
        if self.c_dim > 0:
            if label is None:
                raise ValueError(f"this mapping network is conditional on {self.c_dim} classes: pass label")
            parts.append(normalize_2nd_moment(self.embed(label.to(self.embed.weight.dtype))))
        x = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        for layer in self.layers:
            x = layer(x)
        if self.num_ws is None:
            return x
        if self.w_avg_beta is not None and self.training and update_w_avg:
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
                 conv_clamp: float | None = None, c_dim: int = 0):
        super().__init__()
        self.c_dim = c_dim
        self.synthesis = SynthesisNetwork(w_dim, resolution, img_channels, channel_base, channel_max, conv_clamp)
        self.mapping = MappingNetwork(z_dim, w_dim, self.synthesis.num_ws, mapping_layers, mapping_lr_multiplier,
                                      c_dim=c_dim)

    def styles(self, z: torch.Tensor | None, truncation: torch.Tensor | None = None, mix_z: torch.Tensor | None = None,
               mix_mask: torch.Tensor | None = None, label: torch.Tensor | None = None) -> torch.Tensor:
        """ws (N, num_ws, w_dim); with ``mix_z``, the layers where ``mix_mask`` is true take mix_z's styles,
        mapped with the same ``label`` (the reference's style mixing)."""
        ws = self.mapping(z, truncation, label=label)
        if mix_z is not None:
            mixed = self.mapping(mix_z, truncation, update_w_avg=False, label=label)
            ws = torch.where(mix_mask.view(1, -1, 1), mixed, ws)
        return ws

    def forward(self, z: torch.Tensor | None = None, truncation: torch.Tensor | None = None,
                label: torch.Tensor | None = None, mix_z: torch.Tensor | None = None,
                mix_mask: torch.Tensor | None = None, ws: torch.Tensor | None = None, styles_only: bool = False,
                noise: list[torch.Tensor] | None = None) -> torch.Tensor:
        """``label``: a conditional generator's one-hot classes (N, c_dim), third so that export passes
        (z, truncation, label) positionally; an unconditional one takes (z, truncation) as before."""
        if ws is None:
            ws = self.styles(z, truncation, mix_z, mix_mask, label)
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
    skip: the reference's ``DiscriminatorBlock``. ``resnet=False`` is its ``architecture='orig'`` (the
    ``cifar`` config): no skip layer, conv1 at gain 1.
    """

    def __init__(self, in_channels: int, out_channels: int, img_channels: int, first: bool,
                 conv_clamp: float | None = None, resnet: bool = True):
        super().__init__()
        self.fromrgb = Conv2d(img_channels, in_channels, 1, conv_clamp=conv_clamp) if first else None
        self.conv0 = Conv2d(in_channels, in_channels, 3, conv_clamp=conv_clamp)
        self.conv1 = Conv2d(in_channels, out_channels, 3, down=2, conv_clamp=conv_clamp)
        self.skip = Conv2d(in_channels, out_channels, 1, bias=False, activation=False, down=2) if resnet else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fromrgb is not None:
            x = self.fromrgb(x)
        if self.skip is None:
            return self.conv1(self.conv0(x))
        y = self.skip(x, gain=math.sqrt(0.5))
        return y + self.conv1(self.conv0(x), gain=math.sqrt(0.5))


class Discriminator(nn.Module):
    """Residual D from the image's resolution down to 4x4, then minibatch std, conv, fc and a logit.

    ``conv_clamp`` (None: off) clips every block's convs and the epilogue's conv, not the skips or fc
    layers, as stylegan2-ada-pytorch's ``Discriminator(conv_clamp=...)``. ``architecture`` "orig" drops the
    residual skips (its ``cifar`` config).

    Conditional (``c_dim`` classes), as the reference's projection: its own mapping network (z_dim 0, the
    label embedded and normalised, ``mapping_layers`` layers at lr x0.01, no w_avg) maps the one-hot
    label to ``cmap`` (cmap_dim = the feature maps at 4x4), the last layer gives cmap_dim outputs, and the
    logit is (x * cmap).sum(1) / sqrt(cmap_dim) (Miyato & Koyama 2018's projection discriminator).
    """

    def __init__(self, resolution: int, img_channels: int, channel_base: int, channel_max: int,
                 mbstd_group: int = 4, mbstd_channels: int = 1, conv_clamp: float | None = None, c_dim: int = 0,
                 mapping_layers: int = 8, architecture: str = "resnet"):
        super().__init__()
        if architecture not in D_ARCHITECTURES:
            raise ValueError(f"architecture must be one of {D_ARCHITECTURES}, got {architecture!r}")
        resolutions = block_resolutions(resolution)[::-1][:-1]  # resolution ... 8
        self.blocks = nn.ModuleDict({
            f"b{res}": DiscriminatorBlock(channels_at(res, channel_base, channel_max),
                                          channels_at(res // 2, channel_base, channel_max), img_channels,
                                          first=res == resolution, conv_clamp=conv_clamp,
                                          resnet=architecture == "resnet")
            for res in resolutions})
        c = channels_at(4, channel_base, channel_max)
        self.c_dim, self.cmap_dim = c_dim, c if c_dim > 0 else 0
        if c_dim > 0:
            self.mapping = MappingNetwork(0, self.cmap_dim, None, mapping_layers, w_avg_beta=None, c_dim=c_dim)
        self.mbstd = MinibatchStd(mbstd_group, mbstd_channels) if mbstd_channels > 0 else None
        self.conv = Conv2d(c + mbstd_channels, c, 3, conv_clamp=conv_clamp)
        self.fc = FullyConnected(c * 16, c, activation=True)
        self.out = FullyConnected(c, self.cmap_dim or 1)

    def forward(self, img: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (N, 1); ``label``: one-hot (N, c_dim), needed exactly when D is conditional."""
        x = img
        for block in self.blocks.values():
            x = block(x)
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = self.out(self.fc(x.flatten(1)))
        if self.c_dim == 0:
            return x
        if label is None:
            raise ValueError(f"this discriminator is conditional on {self.c_dim} classes: pass label")
        cmap = self.mapping(None, label=label)
        return (x * cmap.to(x.dtype)).sum(dim=1, keepdim=True) * (1 / math.sqrt(self.cmap_dim))
