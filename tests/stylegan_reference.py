"""NVlabs/stylegan2-ada-pytorch's networks written plainly for tests, and a writer of its network pickles.

The modules follow `training/networks.py` (names, shapes, registration order,
the attributes they keep, NumPy gains included) with forward passes in fp64
from the definitions: `torch_utils/ops/upfirdn2d.py` `_upfirdn2d_ref` and
`upsample2d`, `torch_utils/ops/conv2d_resample.py` `conv2d_resample`,
`bias_act` (leaky ReLU 0.2, gain sqrt 2, then the clamp at conv_clamp * gain), the fused modulated convolution and
`MinibatchStdLayer`; a label ``c`` (one-hot, by keyword) for conditional networks: the mapping's
``embed``, D's own mapping network and its projection epilogue. `write_network_pickle` pickles them as
`torch_utils/persistence.py` does: each module as
`_reconstruct_persistent_obj(meta)` with the module source, class name and
`__dict__` (tensors as plain pickle stores them). Never part of ganzoo.
"""

from __future__ import annotations

import contextlib
import pickle
import sys
import types

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

SQRT2 = float(np.sqrt(2))


def setup_filter(taps=(1, 3, 3, 1)) -> torch.Tensor:
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = torch.outer(f, f)
    return f / f.sum()


def upfirdn2d(x, f, up=1, down=1, padding=(0, 0, 0, 0), gain=1):
    """`_upfirdn2d_ref`: insert zeros, pad (or crop), convolve with the flipped filter, keep every down-th pixel."""
    n, c, h, w = x.shape
    px0, px1, py0, py1 = padding
    x = F.pad(x.reshape(n, c, h, 1, w, 1), [0, up - 1, 0, 0, 0, up - 1]).reshape(n, c, h * up, w * up)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0):x.shape[2] - max(-py1, 0), max(-px0, 0):x.shape[3] - max(-px1, 0)]
    f = (f * gain ** (f.ndim / 2)).to(x.dtype).flip([0, 1])
    x = F.conv2d(x, f[None, None].repeat(c, 1, 1, 1), groups=c)
    return x[:, :, ::down, ::down]


def upsample2d(x, f):
    return upfirdn2d(x, f, up=2, padding=(2, 1, 2, 1), gain=4)


def _conv(x, w, stride=1, padding=0, transpose=False, flip_weight=True):
    if not flip_weight:
        w = w.flip([2, 3])
    op = F.conv_transpose2d if transpose else F.conv2d
    return op(x, w, stride=stride, padding=padding)


def conv2d_resample(x, w, f=None, up=1, down=1, padding=0, flip_weight=True):
    """`conv2d_resample` for groups=1, the branches the networks use."""
    kh, kw = w.shape[2:]
    px0 = px1 = py0 = py1 = padding
    if up > 1:
        px0, px1, py0, py1 = px0 + 2, px1 + 1, py0 + 2, py1 + 1  # fw=4: (fw+up-1)//2, (fw-up)//2
    if down > 1:
        px0, px1, py0, py1 = px0 + 1, px1 + 1, py0 + 1, py1 + 1  # (fw-down+1)//2, (fw-down)//2
    if kw == 1 and down > 1 and up == 1:
        return _conv(upfirdn2d(x, f, down=down, padding=(px0, px1, py0, py1)), w, flip_weight=flip_weight)
    if down > 1 and up == 1:
        return _conv(upfirdn2d(x, f, padding=(px0, px1, py0, py1)), w, stride=down, flip_weight=flip_weight)
    if up > 1:
        w = w.transpose(0, 1)
        px0, px1, py0, py1 = px0 - (kw - 1), px1 - (kw - up), py0 - (kh - 1), py1 - (kh - up)
        pxt, pyt = max(min(-px0, -px1), 0), max(min(-py0, -py1), 0)
        x = _conv(x, w, stride=up, padding=[pyt, pxt], transpose=True, flip_weight=not flip_weight)
        return upfirdn2d(x, f, padding=(px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt), gain=up**2)
    return _conv(x, w, padding=px0, flip_weight=flip_weight)


def lrelu(x, gain=1.0):
    return F.leaky_relu(x, 0.2) * SQRT2 * gain


def clamp(x, limit):
    """`_bias_act_ref`'s last step: clip to +-clamp when a clamp is given."""
    return x if limit is None else x.clamp(-limit, limit)


def normalize_2nd_moment(x, eps=1e-8):
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class Persistent(nn.Module):
    def keep(self, **kwargs):
        self._init_args = ()
        self._init_kwargs = kwargs


class FullyConnectedLayer(Persistent):
    def __init__(self, in_features, out_features, activation="linear", lr_multiplier=1, bias_init=0):
        super().__init__()
        self.keep(activation=activation, lr_multiplier=lr_multiplier, bias_init=bias_init)
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], np.float32(bias_init)))
        self.weight_gain = lr_multiplier / np.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x):
        x = x @ (self.weight.double() * float(self.weight_gain)).t() + self.bias.double() * self.bias_gain
        return lrelu(x) if self.activation == "lrelu" else x


class Conv2dLayer(Persistent):
    def __init__(self, in_channels, out_channels, kernel_size, bias=True, activation="linear", up=1, down=1,
                 conv_clamp=None):
        super().__init__()
        self.keep()
        self.activation, self.up, self.down, self.conv_clamp = activation, up, down, conv_clamp
        self.register_buffer("resample_filter", setup_filter())
        self.padding = kernel_size // 2
        self.weight_gain = 1 / np.sqrt(in_channels * (kernel_size**2))
        self.act_gain = SQRT2 if activation == "lrelu" else 1
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None

    def forward(self, x, gain=1):
        w = self.weight.double() * float(self.weight_gain)
        x = conv2d_resample(x, w, self.resample_filter.double(), self.up, self.down, self.padding,
                            flip_weight=self.up == 1)
        if self.bias is not None:
            x = x + self.bias.double().view(1, -1, 1, 1)
        x = lrelu(x, gain) if self.activation == "lrelu" else x * gain
        return clamp(x, self.conv_clamp * gain if self.conv_clamp is not None else None)


class MappingNetwork(Persistent):
    """`MappingNetwork`: z and the label embedding, each normalised, concatenated, then the layers; ``num_ws`` None
    and ``w_avg_beta`` None as the discriminator builds it (no broadcast, no w_avg)."""

    def __init__(self, z_dim, c_dim, w_dim, num_ws, num_layers=8, embed_features=None, layer_features=None,
                 activation="lrelu", lr_multiplier=0.01, w_avg_beta=0.995):
        super().__init__()
        self.keep(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=num_ws, num_layers=num_layers,
                  embed_features=embed_features, layer_features=layer_features, activation=activation,
                  lr_multiplier=lr_multiplier, w_avg_beta=w_avg_beta)
        self.z_dim, self.c_dim, self.w_dim, self.num_ws, self.num_layers = z_dim, c_dim, w_dim, num_ws, num_layers
        self.w_avg_beta = w_avg_beta
        embed_features = w_dim if embed_features is None else embed_features
        embed_features = 0 if c_dim == 0 else embed_features
        layer_features = w_dim if layer_features is None else layer_features
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            setattr(self, f"fc{idx}", FullyConnectedLayer(features[idx], features[idx + 1], activation=activation,
                                                          lr_multiplier=lr_multiplier))
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z, truncation_psi=1.0, c=None):  # the reference's (z, c, truncation_psi), c by keyword
        x = None
        if self.z_dim > 0:
            x = normalize_2nd_moment(z.double())
        if self.c_dim > 0:
            y = normalize_2nd_moment(self.embed(c.double()))
            x = torch.cat([x, y], dim=1) if x is not None else y
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        return self.w_avg.double().lerp(x, truncation_psi) if truncation_psi != 1 else x


class SynthesisLayer(Persistent):
    def __init__(self, in_channels, out_channels, w_dim, resolution, up=1, conv_clamp=None):
        super().__init__()
        self.keep()
        self.resolution, self.up, self.use_noise, self.activation = resolution, up, True, "lrelu"
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter())
        self.padding = 1
        self.act_gain = SQRT2
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 3, 3]))
        self.register_buffer("noise_const", torch.randn([resolution, resolution]))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x, w):
        """noise_mode='const', fused modulated convolution, one sample at a time."""
        styles = self.affine(w)
        out = []
        for i in range(x.shape[0]):
            wi = self.weight.double() * styles[i].view(1, -1, 1, 1)
            wi = wi * (wi.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).rsqrt()
            out.append(conv2d_resample(x[i:i + 1], wi, self.resample_filter.double(), self.up, 1, self.padding,
                                       flip_weight=self.up == 1))
        x = torch.cat(out) + self.noise_const.double() * self.noise_strength.double()
        return clamp(lrelu(x + self.bias.double().view(1, -1, 1, 1)), self.conv_clamp)


class ToRGBLayer(Persistent):
    def __init__(self, in_channels, out_channels, w_dim, conv_clamp=None):
        super().__init__()
        self.keep()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 1, 1]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / np.sqrt(in_channels)

    def forward(self, x, w):
        styles = self.affine(w) * float(self.weight_gain)
        x = torch.einsum("oi,ni,nihw->nohw", self.weight.double()[:, :, 0, 0], styles, x)
        return clamp(x + self.bias.double().view(1, -1, 1, 1), self.conv_clamp)


class SynthesisBlock(Persistent):
    def __init__(self, in_channels, out_channels, w_dim, resolution, img_channels, is_last, conv_clamp=None):
        super().__init__()
        self.keep()
        self.in_channels, self.resolution, self.is_last, self.architecture = in_channels, resolution, is_last, "skip"
        self.register_buffer("resample_filter", setup_filter())
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2, conv_clamp=conv_clamp)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp)
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.num_conv = 1 if in_channels == 0 else 2

    def forward(self, x, img, ws):
        if self.in_channels == 0:
            x = self.conv1(self.const.double().unsqueeze(0).repeat([ws.shape[0], 1, 1, 1]), ws[:, 0])
        else:
            x = self.conv1(self.conv0(x, ws[:, 0]), ws[:, 1])
        y = self.torgb(x, ws[:, self.num_conv])
        img = y if img is None else upsample2d(img, self.resample_filter.double()) + y
        return x, img


class SynthesisNetwork(Persistent):
    def __init__(self, w_dim, img_resolution, img_channels, channel_base, channel_max, conv_clamp=None):
        super().__init__()
        self.keep()
        self.block_resolutions = [2**i for i in range(2, int(np.log2(img_resolution)) + 1)]
        ch = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        self.num_ws = 0
        for res in self.block_resolutions:
            block = SynthesisBlock(ch[res // 2] if res > 4 else 0, ch[res], w_dim, res, img_channels,
                                   res == img_resolution, conv_clamp)
            self.num_ws += block.num_conv
            setattr(self, f"b{res}", block)
        self.num_ws += 1

    def forward(self, ws):
        x = img = None
        index = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            x, img = block(x, img, ws[:, index:index + block.num_conv + 1])
            index += block.num_conv
        return img


class Generator(Persistent):
    def __init__(self, z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs, synthesis_kwargs):
        super().__init__()
        self.keep(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                  mapping_kwargs=EasyDict(mapping_kwargs), synthesis_kwargs=EasyDict(synthesis_kwargs))
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, synthesis_kwargs["channel_base"],
                                          synthesis_kwargs["channel_max"], synthesis_kwargs.get("conv_clamp"))
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, self.num_ws, **mapping_kwargs)

    def forward(self, z, truncation_psi=1.0, c=None):
        return self.synthesis(self.mapping(z, truncation_psi, c))


class DiscriminatorBlock(Persistent):
    def __init__(self, in_channels, tmp_channels, out_channels, resolution, img_channels, conv_clamp=None,
                 architecture="resnet"):
        super().__init__()
        self.keep()
        self.in_channels, self.resolution, self.architecture = in_channels, resolution, architecture
        self.register_buffer("resample_filter", setup_filter())
        if in_channels == 0:
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, 1, activation="lrelu", conv_clamp=conv_clamp)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, 3, activation="lrelu", conv_clamp=conv_clamp)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, 3, activation="lrelu", down=2, conv_clamp=conv_clamp)
        if architecture == "resnet":
            self.skip = Conv2dLayer(tmp_channels, out_channels, 1, bias=False, down=2)  # the reference clamps no skip

    def forward(self, x, img):
        if self.in_channels == 0:
            x = self.fromrgb(img.double())
        if self.architecture == "resnet":
            y = self.skip(x, gain=np.sqrt(0.5))
            return y + self.conv1(self.conv0(x), gain=np.sqrt(0.5))
        return self.conv1(self.conv0(x))  # 'orig'


class MinibatchStdLayer(Persistent):
    def __init__(self, group_size, num_channels=1):
        super().__init__()
        self.keep()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x):
        n, c, h, w = x.shape
        g, f = min(self.group_size, n), self.num_channels
        y = x.reshape(g, -1, f, c // f, h, w)
        y = (y - y.mean(dim=0)).square().mean(dim=0)
        y = (y + 1e-8).sqrt().mean(dim=[2, 3, 4]).reshape(-1, f, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)


class DiscriminatorEpilogue(Persistent):
    def __init__(self, in_channels, cmap_dim, resolution, mbstd_group_size, mbstd_num_channels, conv_clamp=None):
        super().__init__()
        self.keep()
        self.cmap_dim = cmap_dim
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels)
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, 3, activation="lrelu",
                                conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * resolution**2, in_channels, activation="lrelu")
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x, cmap):
        x = self.out(self.fc(self.conv(self.mbstd(x)).flatten(1)))
        if self.cmap_dim > 0:  # the projection: (x * cmap).sum(1) / sqrt(cmap_dim)
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / np.sqrt(self.cmap_dim))
        return x


class Discriminator(Persistent):
    def __init__(self, c_dim, img_resolution, img_channels, architecture="resnet", channel_base=32768,
                 channel_max=512, num_fp16_res=0, conv_clamp=None, cmap_dim=None, block_kwargs=None,
                 mapping_kwargs=None, epilogue_kwargs=None):
        super().__init__()
        epilogue_kwargs = EasyDict(epilogue_kwargs or {})
        mapping_kwargs = EasyDict(mapping_kwargs or {})
        self.keep(c_dim=c_dim, img_resolution=img_resolution, img_channels=img_channels, architecture=architecture,
                  channel_base=channel_base, channel_max=channel_max, num_fp16_res=num_fp16_res,
                  conv_clamp=conv_clamp, cmap_dim=cmap_dim, block_kwargs=EasyDict(block_kwargs or {}),
                  mapping_kwargs=mapping_kwargs, epilogue_kwargs=epilogue_kwargs)
        self.c_dim = c_dim
        self.block_resolutions = [2**i for i in range(int(np.log2(img_resolution)), 2, -1)]
        ch = {res: min(channel_base // res, channel_max) for res in self.block_resolutions + [4]}
        cmap_dim = ch[4] if cmap_dim is None else cmap_dim
        cmap_dim = 0 if c_dim == 0 else cmap_dim
        for res in self.block_resolutions:
            setattr(self, f"b{res}", DiscriminatorBlock(ch[res] if res < img_resolution else 0, ch[res],
                                                        ch[res // 2], res, img_channels, conv_clamp, architecture))
        if c_dim > 0:
            self.mapping = MappingNetwork(z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None,
                                          **mapping_kwargs)
        self.b4 = DiscriminatorEpilogue(ch[4], cmap_dim, 4, epilogue_kwargs.get("mbstd_group_size", 4),
                                        epilogue_kwargs.get("mbstd_num_channels", 1), conv_clamp)

    def forward(self, img, c=None):
        x = None
        for res in self.block_resolutions:
            x = getattr(self, f"b{res}")(x, img)
        cmap = self.mapping(None, c=c) if self.c_dim > 0 else None
        return self.b4(x, cmap)


def randomize(net: nn.Module, seed: int, lr_scaled: bool = False) -> nn.Module:
    """Every parameter and buffer drawn at random (zero biases and strengths would hide mistakes); filters kept.

    ``lr_scaled``: the weights of layers with a learning-rate multiplier divided by it, as the reference stores
    them, so that a label still reaches the output through D's 8 mapping layers at lr x0.01.
    """
    g = torch.Generator().manual_seed(seed)
    scale = {f"{name}.weight": 1 / m.bias_gain for name, m in net.named_modules()
             if lr_scaled and isinstance(m, FullyConnectedLayer)}
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if not name.endswith("resample_filter"):
                t.copy_(torch.randn(t.shape, generator=g) * (0.3 if "bias" in name or "strength" in name else 1.0)
                        * scale.get(name, 1.0))
    return net


# --- the pickle ---------------------------------------------------------------------------------------------------


class EasyDict(dict):
    """Stands for dnnlib.util.EasyDict while pickling (its __module__ is set below)."""


def _reconstruct_persistent_obj(meta):  # what the reference does on load: run the pickled source
    exec(meta["module_src"], {})  # noqa: S102 - only ever reached if an unpickler trusts the pickle


EasyDict.__module__, EasyDict.__qualname__ = "dnnlib.util", "EasyDict"
_reconstruct_persistent_obj.__module__ = "torch_utils.persistence"


@contextlib.contextmanager
def _reference_modules():
    """torch_utils.persistence and dnnlib.util as importable names, so pickle can name them as the reference does."""
    made = {}
    for name, attrs in (("torch_utils", {}), ("torch_utils.persistence", {"_reconstruct_persistent_obj":
                                                                          _reconstruct_persistent_obj}),
                        ("dnnlib", {}), ("dnnlib.util", {"EasyDict": EasyDict})):
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        made[name] = module
    saved = {name: sys.modules.get(name) for name in made}
    sys.modules.update(made)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old


class _PersistencePickler(pickle.Pickler):
    def __init__(self, file, module_src: str):
        super().__init__(file, protocol=3)  # Python 3.7's default, what stylegan2-ada-pytorch ran on
        self.module_src = module_src

    def reducer_override(self, obj):
        if isinstance(obj, Persistent):
            meta = dict(type="class", version=6, module_src=self.module_src, class_name=type(obj).__name__,
                        state=dict(obj.__dict__))
            return _reconstruct_persistent_obj, (meta,), None
        return NotImplemented


def network_pickle_bytes(data: dict, module_src: str) -> bytes:
    import io

    buffer = io.BytesIO()
    with _reference_modules():
        _PersistencePickler(buffer, module_src).dump(data)
    return buffer.getvalue()


def small_networks(resolution=32, channels=3, c_dim=0, seed=0, d_conv_clamp=256, *, z_dim=8, w_dim=8,
                   channel_base=256, channel_max=16, mapping_layers=2, d_architecture="resnet", mbstd_group=4,
                   d_mapping_kwargs=None, **g_extra):
    """G, D, G_ema as stylegan2-ada-pytorch would build them for a small config, random weights.

    ``conv_clamp`` (among ``g_extra``, 256 by default) is G's; ``d_conv_clamp`` D's. ``c_dim`` > 0: conditional
    networks (G's label embedding, D's mapping network with ``d_mapping_kwargs``, the reference's default {}).
    """
    mapping = {"num_layers": mapping_layers}
    synthesis = {"channel_base": channel_base, "channel_max": channel_max, "num_fp16_res": 4, "conv_clamp": 256,
                 **g_extra}
    torch.manual_seed(seed)
    scaled = c_dim > 0  # unconditional networks keep the draws their tests were written with
    G = randomize(Generator(z_dim, c_dim, w_dim, resolution, channels, mapping, synthesis), seed, scaled)
    G_ema = randomize(Generator(z_dim, c_dim, w_dim, resolution, channels, mapping, synthesis), seed + 1, scaled)
    D = randomize(Discriminator(c_dim, resolution, channels, architecture=d_architecture, channel_base=channel_base,
                                channel_max=channel_max, num_fp16_res=4, conv_clamp=d_conv_clamp,
                                mapping_kwargs=d_mapping_kwargs or {},
                                epilogue_kwargs={"mbstd_group_size": mbstd_group, "mbstd_num_channels": 1}),
                  seed + 2, scaled)
    return {"G": G, "D": D, "G_ema": G_ema}


def cifar_networks(c_dim=10, seed=0, **extra):
    """train.py's ``--cfg=cifar --cond=1`` networks made small: 32x32 RGB, 2 mapping layers, D
    ``architecture='orig'`` with minibatch-std groups of 32, and fmaps 1 (channel_base 32768: every layer at
    channel_max up to 64x64), here with channel_max 16 and channel_base 512 (16 at every resolution), z and w 16."""
    kwargs = dict(resolution=32, channels=3, c_dim=c_dim, seed=seed, z_dim=16, w_dim=16, channel_base=512,
                  channel_max=16, mapping_layers=2, d_architecture="orig", mbstd_group=32)
    return small_networks(**{**kwargs, **extra})


# What legacy.py's convert_tf_discriminator gives D's mapping_kwargs (NVIDIA's published pickles, cifar10.pkl
# among them, were trained with the TensorFlow stylegan2-ada, whose D maps the label with no layers).
LEGACY_D_MAPPING = {"num_layers": 0, "embed_features": None, "layer_features": None, "activation": "lrelu",
                    "lr_multiplier": 0.1}


__all__ = ["Generator", "Discriminator", "network_pickle_bytes", "small_networks", "cifar_networks", "LEGACY_D_MAPPING"]
