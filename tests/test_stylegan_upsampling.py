"""StyleGAN-lite's resampling layers against stylegan2-ada-pytorch's definitions, in float64.

The reference here is written from NVlabs/stylegan2-ada-pytorch's documented
definitions, with explicit zero insertion, padding and a loop over filter taps,
and shares nothing with the plugin:
- ``upfirdn2d`` (torch_utils/ops/upfirdn2d.py, its docstring): upsample by
  inserting up - 1 zeros after each pixel, pad (negative: crop), convolve with
  the FIR filter (a true convolution unless flip_filter), keep every down-th pixel;
  ``setup_filter([1,3,3,1])`` is the outer product normalised to sum 1, times the gain;
- ``conv2d_resample`` (torch_utils/ops/conv2d_resample.py): "padding is performed
  only once at the beginning": the filter's padding ((fw + up - 1) // 2,
  (fw - up) // 2 when up-sampling; (fw - down + 1) // 2, (fw - down) // 2 when
  down-sampling) added to the layer's, then the up-sampling FIR (gain up^2), the
  kernel (flip_weight=False: a true convolution) and the down-sampling, each
  without padding;
- ``upsample2d`` (the skip image): upfirdn2d(up=2) with the filter's padding
  [(fw + up - 1) // 2, (fw - up) // 2] and gain up^2.
The layers are compared at every block resolution the plugin accepts (8 to 1024).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from ganzoo_stylegan_lite.layers import Conv2d, SynthesisLayer, Upsample2x, upsample_conv3x3
from ganzoo_stylegan_lite.networks import Discriminator, StyleGenerator

RESOLUTIONS = [2**i for i in range(3, 11)]  # validate(): a power of two from 8 to 1024
FW = 4  # the [1,3,3,1] filter's taps


def setup_filter() -> torch.Tensor:
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=torch.float64)
    f = taps[:, None] * taps[None, :]
    return f / f.sum()


def correlate_valid(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """out[b, o, i, j] = sum_{c, u, v} kernel[o, c, u, v] x[b, c, i + u, j + v], tap by tap."""
    kh, kw = kernel.shape[2:]
    h, w = x.shape[2] - kh + 1, x.shape[3] - kw + 1
    out = torch.zeros(x.shape[0], kernel.shape[0], h, w, dtype=x.dtype)
    for u in range(kh):
        for v in range(kw):
            out += torch.einsum("oc,bchw->bohw", kernel[:, :, u, v], x[:, :, u:u + h, v:v + w])
    return out


def pad_or_crop(x: torch.Tensor, p: list[int]) -> torch.Tensor:
    """p = [x0, x1, y0, y1]: zeros added (or pixels removed, when negative) on each side."""
    x0, x1, y0, y1 = p
    x = F.pad(x, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    return x[:, :, max(-y0, 0):x.shape[2] - max(-y1, 0), max(-x0, 0):x.shape[3] - max(-x1, 0)]


def upfirdn2d(x: torch.Tensor, f: torch.Tensor, up: int = 1, down: int = 1, padding=(0, 0, 0, 0),
              gain: float = 1.0) -> torch.Tensor:
    n, c, h, w = x.shape
    upsampled = torch.zeros(n, c, h * up, w * up, dtype=x.dtype)
    upsampled[:, :, ::up, ::up] = x  # up - 1 zeros after each pixel
    x = pad_or_crop(upsampled, list(padding))
    kernel = (f * gain).flip([0, 1])  # a true convolution (flip_filter=False)
    per_channel = torch.stack([correlate_valid(x[:, i:i + 1], kernel[None, None]) for i in range(c)], dim=1)[:, :, 0]
    return per_channel[:, :, ::down, ::down]


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, up: int = 1, down: int = 1, padding: int = 0,
                    flip_weight: bool = True) -> torch.Tensor:
    f = setup_filter()
    p0 = p1 = padding
    if up > 1:
        p0, p1 = p0 + (FW + up - 1) // 2, p1 + (FW - up) // 2
    if down > 1:
        p0, p1 = p0 + (FW - down + 1) // 2, p1 + (FW - down) // 2
    x = upfirdn2d(x, f, up=up, padding=[p0, p1, p0, p1], gain=up**2) if up > 1 else pad_or_crop(x, [p0, p1, p0, p1])
    x = correlate_valid(x, w if flip_weight else w.flip([2, 3]))
    return upfirdn2d(x, f, down=down) if down > 1 else x


def upsample2d(x: torch.Tensor) -> torch.Tensor:
    return upfirdn2d(x, setup_filter(), up=2, padding=[(FW + 1) // 2, (FW - 2) // 2] * 2, gain=4)


def lrelu(x: torch.Tensor, gain: float = math.sqrt(2)) -> torch.Tensor:
    return torch.where(x >= 0, x, 0.2 * x) * gain


def fc(layer, x: torch.Tensor, act: bool) -> torch.Tensor:
    """The reference's FullyConnectedLayer: weight and bias scaled by the lr multiplier (and 1/sqrt(fan-in))."""
    gain = layer.weight_gain
    y = x @ (layer.weight.double() * gain).t() + layer.bias.double() * layer.bias_gain
    return lrelu(y) if act else y


def modulated(x, weight, styles, demodulate=True, up=False, padding=1):
    """The reference's modulated_conv2d, fused form: one modulated (and demodulated) kernel per sample."""
    out = []
    for b in range(x.shape[0]):
        wb = weight * styles[b][None, :, None, None]
        if demodulate:
            wb = wb * (wb.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8).rsqrt()
        out.append(conv2d_resample(x[b:b + 1], wb, up=2 if up else 1, padding=padding, flip_weight=not up))
    return torch.cat(out)


def synthesis_layer(layer, x, w):
    """SynthesisLayer, noise_mode='const': modulated conv, noise, bias, lrelu x sqrt(2)."""
    styles = fc(layer.affine, w, act=False)
    x = modulated(x, layer.weight.double(), styles, up=layer.up)
    x = x + layer.noise_const.double() * layer.noise_strength.double()
    return lrelu(x + layer.bias.double().view(1, -1, 1, 1))


def conv_layer(layer, x, gain=1.0):
    """Conv2dLayer: weight x 1/sqrt(fan-in), conv2d_resample (down, correlation), bias, activation."""
    w = layer.weight.double() * layer.weight_gain
    k = w.shape[-1]
    x = conv2d_resample(x, w, down=layer.down, padding=k // 2, flip_weight=True)
    if layer.bias is not None:
        x = x + layer.bias.double().view(1, -1, 1, 1)
    return lrelu(x, math.sqrt(2) * gain) if layer.activation else x * gain


def randomise(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Non-zero biases and noise strengths, so every term of the definition is exercised."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("bias") or name.endswith("noise_strength"):
                p.copy_(0.3 * torch.randn_like(p))
    return module


# -- the definition itself ------------------------------------------------------------------------


def test_the_fp64_definition_upsamples_an_impulse_into_the_filter():
    """upfirdn2d's definition, checked on its own: an impulse at (1, 2) lands at (2, 4) in the zero-inserted
    image, the padding shifts it by 2 and the filter spreads it over the 4x4 footprint, times the gain."""
    x = torch.zeros(1, 1, 3, 4, dtype=torch.float64)
    x[0, 0, 1, 2] = 1.0
    y = upsample2d(x)
    assert y.shape == (1, 1, 6, 8)
    expected = torch.zeros(6, 8, dtype=torch.float64)
    expected[1:5, 3:7] = setup_filter() * 4  # output pixel p reads zero-inserted pixels p - 2 .. p + 1
    torch.testing.assert_close(y[0, 0], expected, rtol=0, atol=1e-15)


# -- layer by layer, at every resolution ----------------------------------------------------------


@pytest.mark.parametrize("resolution", RESOLUTIONS)
def test_upsampling_synthesis_layer_equals_the_reference(resolution, monkeypatch):
    """conv0 of the block at ``resolution`` (input resolution / 2) for the reference's stored weights: the eager
    route and the ONNX route (taken under torch.onnx export; switched on here) equal the definition."""
    torch.manual_seed(resolution)
    layer = randomise(SynthesisLayer(3, 2, 4, resolution, up=True), resolution).double().eval()
    x = torch.randn(2, 3, resolution // 2, resolution // 2, dtype=torch.float64)
    w = torch.randn(2, 4, dtype=torch.float64)
    with torch.no_grad():
        expected = synthesis_layer(layer, x, w)
        eager = layer(x, w)
        monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: True)
        onnx_route = layer(x, w)
    assert eager.shape == expected.shape == (2, 2, resolution, resolution)
    torch.testing.assert_close(eager, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(onnx_route, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("resolution", RESOLUTIONS)
def test_skip_image_upsampling_equals_upsample2d(resolution, monkeypatch):
    torch.manual_seed(resolution)
    img = torch.randn(2, 3, resolution // 2, resolution // 2, dtype=torch.float64)
    expected = upsample2d(img)
    eager = Upsample2x(3).double()(img)
    monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: True)
    onnx_route = Upsample2x(3).double()(img)
    torch.testing.assert_close(eager, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(onnx_route, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("resolution", RESOLUTIONS)
def test_discriminator_downsampling_layers_equal_the_reference(resolution):
    """The residual block's conv1 (3x3, down 2: filter then stride) and skip (1x1, down 2: filter down, then
    the 1x1 conv), as conv2d_resample(down=2) defines them."""
    torch.manual_seed(resolution)
    conv1 = randomise(Conv2d(3, 2, 3, down=2), resolution).double()
    skip = Conv2d(3, 2, 1, bias=False, activation=False, down=2).double()
    x = torch.randn(2, 3, resolution, resolution, dtype=torch.float64)
    with torch.no_grad():
        for layer in (conv1, skip):
            out = layer(x, gain=math.sqrt(0.5))
            assert out.shape == (2, 2, resolution // 2, resolution // 2)
            torch.testing.assert_close(out, conv_layer(layer, x, gain=math.sqrt(0.5)), rtol=0, atol=1e-12)


def test_upsampling_kernel_is_applied_as_a_true_convolution():
    """The stored kernel is the reference's: an asymmetric kernel is not the same layer flipped."""
    torch.manual_seed(0)
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64)
    fir = (setup_filter() * 4).expand(3, 1, 4, 4)
    ours = upsample_conv3x3(x, w, fir)
    torch.testing.assert_close(ours, conv2d_resample(x, w, up=2, padding=1, flip_weight=False), rtol=0, atol=1e-12)
    assert (ours - conv2d_resample(x, w.flip([2, 3]), up=2, padding=1, flip_weight=False)).abs().max() > 0.1


# -- whole networks -------------------------------------------------------------------------------


def reference_generator(G: StyleGenerator, z: torch.Tensor) -> torch.Tensor:
    """MappingNetwork then SynthesisNetwork (architecture 'skip', noise_mode='const'), from the definitions."""
    x = z.double() * (z.double().square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
    for layer in G.mapping.layers:
        x = fc(layer, x, act=True)
    ws = x.unsqueeze(1).repeat(1, G.synthesis.num_ws, 1)
    x = img = None
    index = 0
    for block in G.synthesis.blocks.values():
        if block.first:
            x = block.const.double().unsqueeze(0).repeat(z.shape[0], 1, 1, 1)
            x = synthesis_layer(block.conv1, x, ws[:, index])
        else:
            x = synthesis_layer(block.conv0, x, ws[:, index])
            x = synthesis_layer(block.conv1, x, ws[:, index + 1])
        index += block.num_conv
        torgb = block.torgb
        styles = fc(torgb.affine, ws[:, index], act=False) * torgb.weight_gain
        y = modulated(x, torgb.weight.double(), styles, demodulate=False, padding=0)
        y = y + torgb.bias.double().view(1, -1, 1, 1)
        img = y if img is None else upsample2d(img) + y
    return img


def reference_discriminator(D: Discriminator, img: torch.Tensor) -> torch.Tensor:
    """DiscriminatorBlock ('resnet') and DiscriminatorEpilogue, with the reference's minibatch std: groups of
    G = min(4, N) samples taken with stride N / G (sample i in group i mod N / G)."""
    x = img.double()
    for block in D.blocks.values():
        if block.fromrgb is not None:
            x = conv_layer(block.fromrgb, x)
        y = conv_layer(block.skip, x, gain=math.sqrt(0.5))
        x = y + conv_layer(block.conv1, conv_layer(block.conv0, x), gain=math.sqrt(0.5))
    n, c, h, w = x.shape
    group = min(4, n)
    s = x.reshape(group, -1, 1, c, h, w)
    s = ((s - s.mean(dim=0)).square().mean(dim=0) + 1e-8).sqrt().mean(dim=(2, 3, 4))
    x = torch.cat([x, s.reshape(-1, 1, 1, 1).repeat(group, 1, h, w)], dim=1)
    x = conv_layer(D.conv, x)
    return fc(D.out, fc(D.fc, x.flatten(1), act=True), act=False)


def small_generator(seed: int) -> StyleGenerator:
    torch.manual_seed(seed)
    return randomise(StyleGenerator(8, 8, 32, 3, 128, 8, 2), seed)


def test_whole_generator_at_32_equals_the_reference_definition():
    G = small_generator(1).double().eval()
    z = torch.randn(3, 8, dtype=torch.float64)
    with torch.no_grad():
        ours = G.synthesis(G.mapping(z))  # not G(z): eval mode clamps to [-1, 1]
        expected = reference_generator(G, z)
    assert ours.shape == (3, 3, 32, 32) and expected.abs().max() > 0.1
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-12)


def test_whole_generator_in_fp32_is_within_float_rounding_of_the_definition():
    G = small_generator(2).eval()
    z = torch.randn(3, 8)
    with torch.no_grad():
        ours = G.synthesis(G.mapping(z)).double()
        expected = reference_generator(G, z.double())
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-5)


def test_whole_discriminator_at_32_equals_the_reference_definition():
    """Batch 4 is one group in both rules. At batch 8 the reference's groups are strided ({0,2,4,6}, {1,3,5,7})
    and StyleGAN-lite's consecutive: the same function up to that order of the samples."""
    torch.manual_seed(3)
    D = randomise(Discriminator(32, 3, 128, 8), 3).double()
    img = torch.randn(8, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(D(img[:4]), reference_discriminator(D, img[:4]), rtol=0, atol=1e-12)
        order = torch.tensor([0, 2, 4, 6, 1, 3, 5, 7])
        torch.testing.assert_close(D(img[order]), reference_discriminator(D, img)[order], rtol=0, atol=1e-12)
        for n in (5, 6, 7):  # the reference's min(4, N) cannot split these; gcd(4, N) groups can
            assert D(img[:n]).shape == (n, 1)
