"""StyleGAN2's building blocks in plain PyTorch: equalised learning rate, FIR resampling, modulated convolution.

Everything here is ordinary convolutions, matmuls and element-wise ops, so it
runs on any device, compiles, double-backwards (R1, path length) and exports to
ONNX with a dynamic batch. Weights are stored N(0, 1) (divided by the
learning-rate multiplier) and scaled at run time by He's constant, as the
paper's equalised learning rate asks; parameter shapes and names follow
NVlabs/stylegan2-ada-pytorch (`training/networks.py`) so counts match it.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

LRELU_GAIN = math.sqrt(2.0)


def lrelu(x: torch.Tensor, gain: float = LRELU_GAIN) -> torch.Tensor:
    """Leaky ReLU 0.2 scaled by sqrt(2), StyleGAN's activation (keeps the signal's magnitude)."""
    return F.leaky_relu(x, 0.2) * gain


def clamp(x: torch.Tensor, limit: float | None) -> torch.Tensor:
    """stylegan2-ada-pytorch's ``conv_clamp``: ``bias_act(..., clamp=limit)`` ends by clipping to +-limit.

    None (StyleGAN-lite's default) returns ``x`` itself, adding no operation.
    """
    return x if limit is None else x.clamp(-limit, limit)


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class FullyConnected(nn.Module):
    """Equalised-lr linear layer; ``lr_multiplier`` slows it (the mapping network uses 0.01)."""

    def __init__(self, in_features: int, out_features: int, activation: bool = False, bias_init: float = 0.0,
                 lr_multiplier: float = 1.0):
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init)))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.bias_gain)
        return lrelu(x) if self.activation else x


def fir_filter(channels: int, gain: float) -> torch.Tensor:
    """StyleGAN2's [1, 3, 3, 1] binomial filter in 2-D, one per channel, summing to ``gain``."""
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
    kernel = torch.outer(taps, taps)
    return (kernel / kernel.sum() * gain).expand(channels, 1, 4, 4).contiguous()


def bilinear_zero_border(x: torch.Tensor) -> torch.Tensor:
    """Upsample2x by another route: zero-pad 1, bilinear x2 (half-pixel), crop 2. Equal to it exactly."""
    return F.interpolate(F.pad(x, (1, 1, 1, 1)), scale_factor=2.0, mode="bilinear", align_corners=False)[:, :, 2:-2, 2:-2]


class Upsample2x(nn.Module):
    """Zero insertion then the [1,3,3,1] filter (gain 4): stylegan2-ada-pytorch's
    ``upfirdn2d.upsample2d(x, f)`` (padding [2, 1] on each axis), which the skip
    generator applies to the image before adding the next toRGB. Equal to
    bilinear x2 with zero borders.

    The filter is a fixed (non-persistent) buffer sized for ``channels``, so
    checkpoints do not hold it. ONNX export takes the Pad + Resize + Slice
    route instead: ONNX Runtime's CPU kernels run it 1.6-1.9x faster than a
    depthwise ConvTranspose at 64-128 px (docs/export.md), while eager PyTorch
    is fastest with the transposed convolution at the small sizes.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.register_buffer("filter", fir_filter(channels, gain=4.0), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():
            return bilinear_zero_border(x)
        return F.conv_transpose2d(x, self.filter.to(x.dtype), stride=2, padding=1, groups=self.channels)


def bilinear_with_overhang(x: torch.Tensor) -> torch.Tensor:
    """upfirdn2d(x, [1,3,3,1], up=2, padding=[3, 2], gain=4) by another route: 2n + 2 pixels, the
    filtered zero-inserted image with one pixel of the filter's overhang kept on each side."""
    return F.interpolate(F.pad(x, (1, 1, 1, 1)), scale_factor=2.0, mode="bilinear", align_corners=False)[:, :, 1:-1, 1:-1]


def upsample_conv3x3(x: torch.Tensor, weight: torch.Tensor, fir: torch.Tensor) -> torch.Tensor:
    """stylegan2-ada-pytorch's ``conv2d_resample(x, weight, f=[1,3,3,1], up=2, padding=1, flip_weight=False)``.

    By its definition (padding once, at the start): insert zeros (2x), pad,
    filter with the [1,3,3,1] FIR (gain 4), then a true convolution (not a
    cross-correlation) with the 3x3 ``weight`` (out, in, 3, 3), stored as the
    reference stores it. Eagerly it runs the reference's own order: a stride-2
    transposed convolution (2n + 1 pixels, the kernel applied as a true
    convolution) and then the filter with padding 1 on every side (``fir``:
    the gain-4 filter, one per output channel), so the outer ring reads the
    transposed convolution's overhang. For ONNX the equal route upsamples
    first (Pad + Resize + Slice, keeping the overhang) and cross-correlates
    with the flipped kernel, with no ConvTranspose (docs/export.md).
    """
    if torch.onnx.is_in_onnx_export():
        return F.conv2d(bilinear_with_overhang(x), weight.flip([2, 3]))
    x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
    return F.conv2d(F.pad(x, (1, 1, 1, 1)), fir.to(x.dtype), groups=fir.shape[0])


class Blur(nn.Module):
    """The [1,3,3,1] low-pass before a stride-2 layer (upfirdn2d's down path); ``stride=2`` also decimates."""

    def __init__(self, channels: int, padding: int, stride: int = 1):
        super().__init__()
        self.channels, self.padding, self.stride = channels, padding, stride
        self.register_buffer("filter", fir_filter(channels, gain=1.0), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.filter.to(x.dtype), stride=self.stride, padding=self.padding, groups=self.channels)


class Conv2d(nn.Module):
    """Equalised-lr convolution for the discriminator, optionally halving the resolution.

    ``down=2`` low-passes first and then strides, as StyleGAN2 does, so that
    downsampling does not alias. ``conv_clamp`` clips the output to
    +-conv_clamp * gain, as the reference's ``Conv2dLayer`` (its clamp scales
    with the call's gain, e.g. sqrt(0.5) for a residual branch).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: bool = True, down: int = 1, conv_clamp: float | None = None):
        super().__init__()
        if down not in (1, 2):
            raise ValueError(f"down must be 1 or 2, got {down}")
        self.activation, self.down, self.kernel_size = activation, down, kernel_size
        self.conv_clamp = conv_clamp
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size**2)
        if down == 2 and kernel_size == 1:  # filter and decimate, then the 1x1 conv
            self.blur = Blur(in_channels, padding=1, stride=2)
        elif down == 2:  # pad so that the stride-2 kernel covers the border as upfirdn2d's does
            self.blur = Blur(in_channels, padding=(4 - 2 + kernel_size - 1) // 2)

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        weight = self.weight * self.weight_gain
        if self.down == 2:
            x = F.conv2d(self.blur(x), weight, stride=1 if self.kernel_size == 1 else 2)
        else:
            x = F.conv2d(x, weight, padding=self.kernel_size // 2)
        if self.bias is not None:
            x = x + self.bias.view(1, -1, 1, 1)
        x = lrelu(x, LRELU_GAIN * gain) if self.activation else x * gain
        return x if self.conv_clamp is None else clamp(x, self.conv_clamp * gain)


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True,
                     padding: int = 0, up_filter: torch.Tensor | None = None) -> torch.Tensor:
    """StyleGAN2's modulated convolution, written so that the batch stays a free dimension.

    Scaling the input channels by the style, convolving with the one shared
    weight and scaling the outputs by the demodulation coefficients equals
    convolving each sample with its own modulated, demodulated weight, but
    needs no grouped convolution over the batch: ONNX export keeps a dynamic
    batch and every backend runs an ordinary convolution. With ``up_filter``
    (the gain-4 FIR, one per output channel) the convolution is the
    reference's 2x up-sampling one, ``upsample_conv3x3``; demodulation scales
    output channels, so it commutes with the filter that follows.
    """
    x = x * styles.to(x.dtype)[:, :, None, None]
    if up_filter is not None:
        x = upsample_conv3x3(x, weight.to(x.dtype), up_filter)
    else:
        x = F.conv2d(x, weight.to(x.dtype), padding=padding)
    if demodulate:
        # d[b, o] = 1 / sqrt(sum_i s[b, i]^2 * sum_kk w[o, i, kk]^2): one matmul for the whole batch.
        coefficients = (styles.square() @ weight.square().sum(dim=(2, 3)).t() + 1e-8).rsqrt()
        x = x * coefficients.to(x.dtype)[:, :, None, None]
    return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (the reference's 2x up-sampling one when ``up``), per-pixel noise, bias and leaky ReLU.

    As stylegan2-ada-pytorch's ``SynthesisLayer``: the stored weight (N(0, 1))
    enters the modulated convolution unscaled, since demodulation divides any
    scale out, and with ``up`` the kernel is applied as a true convolution after
    zero insertion (its ``flip_weight = (up == 1)``), so the reference's
    weights copy over unchanged.

    Noise is random while training and, in eval mode, a fixed buffer
    (StyleGAN2-ADA's ``noise_mode='const'``), so sampling and export are
    deterministic given the latents. A caller may hand the noise in instead
    (``noise``, (N, 1, H, W)): the training losses do, drawing it per sample
    from the trainer's generator so that it does not depend on how many
    processes share the batch.

    ``conv_clamp`` clips the activated output to +-conv_clamp, as the
    reference's ``bias_act(..., clamp=conv_clamp)`` (its gain is 1 here).
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: bool = False,
                 conv_clamp: float | None = None):
        super().__init__()
        self.up, self.conv_clamp = up, conv_clamp
        if up:  # the gain-4 FIR after the transposed convolution, on the output channels; not in checkpoints
            self.register_buffer("up_filter", fir_filter(out_channels, gain=4.0), persistent=False)
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        styles = self.affine(w)
        x = modulated_conv2d(x, self.weight, styles, padding=1, up_filter=self.up_filter if self.up else None)
        if noise is not None:
            noise = noise.to(x.dtype)
        elif self.training:
            noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
        else:
            noise = self.noise_const.to(x.dtype)
        x = x + noise * self.noise_strength.to(x.dtype)
        return clamp(lrelu(x + self.bias.to(x.dtype).view(1, -1, 1, 1)), self.conv_clamp)


class ToRGB(nn.Module):
    """Modulated 1x1 conv to image channels, without demodulation (the skip architecture's outputs).

    ``conv_clamp`` clips the biased output to +-conv_clamp, as the reference's ``ToRGBLayer``.
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: float | None = None):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1.0 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False)
        return clamp(x + self.bias.to(x.dtype).view(1, -1, 1, 1), self.conv_clamp)
