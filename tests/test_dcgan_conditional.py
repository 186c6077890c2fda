"""Conditional DCGAN computes the published functions: conditional batch norm in G (de Vries et al. 2017;
Miyato & Koyama 2018, sec. 4) and a projection discriminator (Miyato & Koyama, "cGANs with Projection
Discriminator", ICLR 2018, eq. 3), as PyTorch-StudioGAN's deep_conv DCGAN with cBN and PD; its loss feeds G
and D the same generated labels and D the real images' own; num_classes=0 is DCGAN as before."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ganzoo import registry
from ganzoo.api import ConfigError, LossContext, OneHot, Phase, gaussian_latents, label_distribution
from ganzoo.nn.losses import nonsaturating_d_loss, nonsaturating_g_loss

EPS = 1e-5  # torch's BatchNorm2d default, as pytorch/examples' DCGAN uses it
PD = {"conditioning": "projection"}  # this file's pair; tests/test_dcgan_concat.py checks the default, "concat"


@pytest.fixture(scope="module")
def dcgan():
    return registry.get("dcgan")


def count(module):
    return sum(p.numel() for p in module.parameters())


# The definitions, written from the papers on a state dict (float64), independent of the plugin's modules.

def conditional_batch_norm(x, y, sd, prefix, training):
    """cBN(x | y) = (x - mu) / sqrt(var + eps) * (1 + y W_gain^T) + y W_bias^T, y one-hot (StudioGAN's form:
    the batch norm has no affine parameters; the class gives the scale around 1 and the shift)."""
    if training:
        mean, var = x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=False)
    else:
        mean, var = sd[prefix + "bn.running_mean"], sd[prefix + "bn.running_var"]
    normalised = (x - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + EPS)
    gain = 1 + y @ sd[prefix + "gain.weight"].T
    bias = y @ sd[prefix + "bias.weight"].T
    return normalised * gain[:, :, None, None] + bias[:, :, None, None]


def batch_norm(x, sd, prefix, training):
    if training:
        mean, var = x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=False)
    else:
        mean, var = sd[prefix + "running_mean"], sd[prefix + "running_var"]
    normalised = (x - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + EPS)
    return normalised * sd[prefix + "weight"][None, :, None, None] + sd[prefix + "bias"][None, :, None, None]


def reference_generator(sd, z, y, training):
    """DCGAN's G (project to 4x4, stride-2 transposed convolutions, ReLU, tanh) with every batch norm a cBN."""
    width = sd["main.0.linear.weight"].shape[0] // 16
    x = (z @ sd["main.0.linear.weight"].T).reshape(len(z), width, 4, 4)
    x = torch.relu(conditional_batch_norm(x, y, sd, "main.1.", training))
    i = 3
    while True:
        x = F.conv_transpose2d(x, sd[f"main.{i}.weight"], stride=2, padding=1)
        if f"main.{i + 1}.gain.weight" not in sd:
            return torch.tanh(x)
        x = torch.relu(conditional_batch_norm(x, y, sd, f"main.{i + 1}.", training))
        i += 3


def reference_discriminator(sd, x, label, num_classes, training):
    """f(x, y) = y^T V phi(x) + psi(phi(x)) (Miyato & Koyama eq. 3): phi(x) DCGAN's last hidden features summed
    over positions (StudioGAN's torch.sum(h, dim=[2, 3])), psi DCGAN's final 4x4 convolution of the features."""
    h = F.leaky_relu(F.conv2d(x, sd["main.0.weight"], stride=2, padding=1), 0.2)
    i = 2
    while f"main.{i + 1}.running_mean" in sd:
        h = F.conv2d(h, sd[f"main.{i}.weight"], stride=2, padding=1)
        h = F.leaky_relu(batch_norm(h, sd, f"main.{i + 1}.", training), 0.2)
        i += 3
    psi = F.conv2d(h, sd[f"main.{i}.weight"]).flatten()
    phi = h.sum(dim=(2, 3))
    y = F.one_hot(label, num_classes).to(phi.dtype)
    return psi + ((y @ sd["embedding.weight"]) * phi).sum(1)


def scrambled(module, std=0.3, seed=0):
    """The module in float64 with every parameter and running statistic random, so that a swapped gain and
    bias, a missing "1 +", or a mean in place of the sum would show."""
    module = module.double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * std + (1.0 if name.endswith("bn.weight") else 0))
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g, dtype=b.dtype) * 0.1)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g, dtype=b.dtype) + 0.5)
    return module


@pytest.mark.parametrize("resolution,channels", [(32, 1), (64, 3)])
@pytest.mark.parametrize("training", [True, False], ids=["batch-statistics", "running-statistics"])
def test_generator_is_dcgan_with_conditional_batch_norm(dcgan, resolution, channels, training):
    cfg = dcgan.make_config({"resolution": resolution, "channels": channels, "nz": 12, "ngf": 8, "num_classes": 5, **PD})
    G = scrambled(dcgan.build(cfg)["G"]).train(training)
    z = torch.randn(6, 12, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 3, 4, 2])
    y = F.one_hot(labels, 5).double()
    sd = {k: v.clone() for k, v in G.state_dict().items()}
    with torch.no_grad():
        got = G(z, y)
    assert got.shape == (6, channels, resolution, resolution)
    torch.testing.assert_close(got, reference_generator(sd, z, y, training), rtol=1e-9, atol=1e-9)
    # Every batch norm of G is conditional, with no affine parameters of its own (StudioGAN's cBN).
    norms = [m for m in G.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(not m.affine for m in norms)
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in G.modules()) == len(norms)


@pytest.mark.parametrize("resolution,channels", [(32, 1), (64, 3)])
@pytest.mark.parametrize("training", [True, False], ids=["batch-statistics", "running-statistics"])
def test_discriminator_is_the_projection_discriminator(dcgan, resolution, channels, training):
    cfg = dcgan.make_config({"resolution": resolution, "channels": channels, "ndf": 8, "num_classes": 5, **PD})
    D = scrambled(dcgan.build(cfg)["D"]).train(training)
    x = torch.randn(6, channels, resolution, resolution, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 3, 4, 2])
    sd = {k: v.clone() for k, v in D.state_dict().items()}
    with torch.no_grad():
        got = D(x, labels)
    assert got.shape == (6,)
    torch.testing.assert_close(got, reference_discriminator(sd, x, labels, 5, training), rtol=1e-9, atol=1e-9)


def test_without_the_embedding_the_discriminator_is_dcgans(dcgan):
    """psi is the unconditional DCGAN's whole function: a conditional D with V = 0 equals DCGAN's D of the
    same weights (the label enters only through the projection)."""
    cfg = dcgan.make_config({"resolution": 32, "channels": 1, "ndf": 8, "num_classes": 4, **PD})
    D = dcgan.build(cfg)["D"]
    plain = dcgan.build(dcgan.make_config({"resolution": 32, "channels": 1, "ndf": 8}))["D"]
    plain.load_state_dict({k: v for k, v in D.state_dict().items() if k != "embedding.weight"})
    with torch.no_grad():
        D.embedding.weight.zero_()
    x = torch.randn(5, 1, 32, 32)
    torch.testing.assert_close(D(x, torch.tensor([0, 1, 2, 3, 0])), plain(x), rtol=0, atol=0)


def test_labels_reach_g_and_d(dcgan):
    cfg = dcgan.make_config({"resolution": 32, "channels": 1, "nz": 16, "ngf": 8, "ndf": 8, "num_classes": 3, **PD})
    torch.manual_seed(0)
    nets = dcgan.build(cfg)
    G, D = nets["G"].eval(), nets["D"].eval()
    z = torch.randn(4, 16)
    with torch.no_grad():
        images = {c: G(z, F.one_hot(torch.full((4,), c), 3).float()) for c in range(3)}
        logits = {c: D(images[0], torch.full((4,), c)) for c in range(3)}
    for a, b in ((0, 1), (0, 2), (1, 2)):
        assert (images[a] - images[b]).flatten(1).abs().amax(1).min() > 1e-4  # every sample changes
        assert (logits[a] - logits[b]).abs().min() > 1e-6


def test_the_conditional_networks_refuse_a_missing_label(dcgan):
    nets = dcgan.build(dcgan.make_config({"resolution": 32, "channels": 1, "ngf": 8, "ndf": 8, "num_classes": 3, **PD}))
    with pytest.raises(TypeError, match="conditional .3 classes.: pass a one-hot label"):
        nets["G"](torch.randn(2, 100))
    with pytest.raises(TypeError, match="conditional .3 classes.: pass the labels"):
        nets["D"](torch.randn(2, 1, 32, 32))


def g_count(nz, widths, channels, classes):
    """From the definition: the projection, the transposed convolutions (4x4, no bias), and per batch norm
    2 * width affine parameters (unconditional) or two bias-free class-to-width maps (cBN)."""
    convs = nz * widths[0] * 16 + sum(a * b * 16 for a, b in zip(widths, widths[1:])) + widths[-1] * channels * 16
    norms = sum(2 * classes * w if classes else 2 * w for w in widths)
    return convs + norms


def d_count(widths, channels, classes):
    """The convolutions (4x4, no bias), 2 * width per batch norm (all but the first layer's), the final 4x4
    convolution to one logit, and the projection's embedding (classes x last width)."""
    convs = channels * widths[0] * 16 + sum(a * b * 16 for a, b in zip(widths, widths[1:])) + widths[-1] * 16
    return convs + sum(2 * w for w in widths[1:]) + classes * widths[-1]


@pytest.mark.parametrize("resolution,channels,g_widths,d_widths", [
    (32, 1, [256, 128, 64], [64, 128, 256]),             # the fashion-mnist preset
    (64, 3, [512, 256, 128, 64], [64, 128, 256, 512]),   # pytorch/examples' size
])
def test_parameter_counts_follow_from_the_definition(dcgan, resolution, channels, g_widths, d_widths):
    for classes in (0, 10):
        nets = dcgan.build(dcgan.make_config({"resolution": resolution, "channels": channels, "num_classes": classes, **PD}))
        assert count(nets["G"]) == g_count(100, g_widths, channels, classes)
        assert count(nets["D"]) == d_count(d_widths, channels, classes)
    assert g_count(100, [512, 256, 128, 64], 3, 0) == 3_576_704 and d_count([64, 128, 256, 512], 3, 0) == 2_765_568


class Recorder(nn.Module):
    """A network that records the arguments of each call."""

    def __init__(self, module):
        super().__init__()
        self.module, self.calls = module, []

    def forward(self, *args):
        self.calls.append([a.detach().clone() for a in args])
        return self.module(*args)


def context(cfg, label_cdf=None, seed=5):
    return LossContext(cfg=cfg, device=torch.device("cpu"), generator=torch.Generator().manual_seed(seed), step=0,
                       total_steps=1, log=lambda name, value: None, label_cdf=label_cdf)


@pytest.mark.parametrize("phase_name", ["D", "G"])
def test_the_loss_gives_g_and_d_the_same_generated_labels_and_d_the_real_ones(dcgan, phase_name):
    cfg = dcgan.make_config({"resolution": 32, "channels": 1, "nz": 16, "ngf": 8, "ndf": 8, "num_classes": 4, **PD})
    torch.manual_seed(0)
    nets = {role: Recorder(m) for role, m in dcgan.build(cfg).items()}
    real = torch.rand(8, 1, 32, 32) * 2 - 1
    batch = {"image": real, "label": torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])}
    cdf = label_distribution(torch.tensor([0, 1, 1, 2, 2, 2, 3, 3, 3, 3]), 4)
    loss = dcgan.loss(Phase(phase_name, (phase_name,)), nets, batch, context(cfg, cdf))

    expected = context(cfg, cdf)  # the same draws: z for the batch, then the labels of the generated samples
    z, labels = expected.randn(8, 16), expected.labels(8)
    assert len(set(labels.tolist())) > 1
    (g_call,) = nets["G"].calls
    torch.testing.assert_close(g_call[0], z, rtol=0, atol=0)
    assert torch.equal(g_call[1], F.one_hot(labels, 4).float())
    G, D = nets["G"].module, nets["D"].module
    with torch.no_grad():
        fake = G(z, F.one_hot(labels, 4).float())
    if phase_name == "D":
        (real_call, fake_call) = nets["D"].calls
        assert torch.equal(real_call[0], real) and torch.equal(real_call[1], batch["label"])
        assert torch.equal(fake_call[1], labels)
        want = nonsaturating_d_loss(D(real, batch["label"]), D(fake, labels))
    else:
        (fake_call,) = nets["D"].calls
        assert torch.equal(fake_call[1], labels)
        want = nonsaturating_g_loss(D(fake, labels))
    torch.testing.assert_close(loss, want)


@pytest.mark.parametrize("phase_name", ["D", "G"])
def test_unconditional_loss_draws_and_calls_as_before(dcgan, phase_name):
    """num_classes=0: G(z) and D(x) with one argument, one draw of z, and no label draw (ctx.labels would
    refuse: this context has no label distribution)."""
    cfg = dcgan.make_config({"resolution": 32, "channels": 1, "nz": 16, "ngf": 8, "ndf": 8})
    nets = {role: Recorder(m) for role, m in dcgan.build(cfg).items()}
    ctx = context(cfg)
    dcgan.loss(Phase(phase_name, (phase_name,)), nets, {"image": torch.zeros(4, 1, 32, 32)}, ctx)
    assert all(len(call) == 1 for role in nets for call in nets[role].calls)
    after_one_draw = context(cfg)
    after_one_draw.randn(4, 16)
    assert torch.equal(ctx.generator.get_state(), after_one_draw.generator.get_state())


def test_unconditional_networks_have_pytorch_examples_keys(dcgan):
    """Weight-compatible with pytorch/examples: the same state-dict keys (its first layer renamed as the importer
    maps it), no label layers, affine batch norms."""
    from ganzoo_dcgan.reference_loop import RefDCGANDiscriminator, RefDCGANGenerator

    nets = dcgan.build(dcgan.make_config({"resolution": 64, "channels": 3}))
    ref_g = RefDCGANGenerator(100, 64, 3).state_dict()
    ref_d = RefDCGANDiscriminator(64, 3).state_dict()
    assert list(nets["G"].state_dict()) == ["main.0.linear.weight" if k == "main.0.weight" else k for k in ref_g]
    assert list(nets["D"].state_dict()) == list(ref_d)


def test_conditional_keys_add_only_label_layers(dcgan):
    """The conditional networks keep DCGAN's layer indices: each G batch norm's scale and shift become the
    class maps main.N.gain / main.N.bias beside its statistics (main.N.bn.*), and D adds embedding.weight."""
    plain = dcgan.build(dcgan.make_config({"resolution": 32, "channels": 1}))
    cond = dcgan.build(dcgan.make_config({"resolution": 32, "channels": 1, "num_classes": 10, **PD}))
    norms = [k.removesuffix(".running_mean") for k in plain["G"].state_dict() if k.endswith(".running_mean")]
    expected_g = [k for k in plain["G"].state_dict() if not any(k.startswith(n + ".") for n in norms)]
    expected_g += [f"{n}.{part}" for n in norms
                   for part in ("gain.weight", "bias.weight", "bn.running_mean", "bn.running_var",
                                "bn.num_batches_tracked")]
    assert sorted(cond["G"].state_dict()) == sorted(expected_g)
    assert list(cond["D"].state_dict()) == list(plain["D"].state_dict()) + ["embedding.weight"]
    assert cond["D"].state_dict()["embedding.weight"].shape == (10, 256)


def test_config_spec_and_generator_declare_the_classes(dcgan):
    assert dcgan.class_count_key == "num_classes" and dcgan.Config().num_classes == 0
    plain = dcgan.make_config({"resolution": 32, "channels": 1})
    cond = dcgan.make_config({"resolution": 32, "channels": 1, "num_classes": 10, **PD})
    assert dcgan.num_classes(plain) == 0 and dcgan.num_classes(cond) == 10
    assert not dcgan.data_spec(plain).labels and dcgan.data_spec(cond).labels
    g_plain, g_cond = dcgan.generators(plain)["G"], dcgan.generators(cond)["G"]
    assert g_plain.inputs == ("z",) and g_plain.latents == gaussian_latents(100)
    assert g_cond.inputs == ("z", "label") and g_cond.latents.label_part == OneHot("label", (10,))
    a, b = g_plain.latents(5, 9), g_cond.latents(5, 9, labels=[0, 1, 2, 3, 9])
    assert np.array_equal(a["z"], b["z"])  # a seed names the same z with or without classes
    assert np.array_equal(b["label"].argmax(1), [0, 1, 2, 3, 9])
    assert dcgan.reference_loop(cond, torch.device("cpu")) is None  # pytorch/examples has no conditional loop


def test_conditional_weights_start_as_the_unconditional_ones(dcgan):
    """N(0, 0.02) for the class maps and the embedding (StudioGAN's "N02"), so every class's batch-norm scale
    1 + gain(y) starts N(1, 0.02) as DCGAN's does, and its shift near 0."""
    torch.manual_seed(0)
    nets = dcgan.build(dcgan.make_config({"resolution": 64, "channels": 3, "num_classes": 10, **PD}))
    gains = torch.cat([m.gain.weight.flatten() for m in nets["G"].modules() if hasattr(m, "gain")])
    biases = torch.cat([m.bias.weight.flatten() for m in nets["G"].modules() if hasattr(m, "gain")])
    embedding = nets["D"].embedding.weight
    for values in (gains, biases, embedding.flatten()):
        assert abs(values.mean().item()) < 2e-3 and abs(values.std().item() - 0.02) < 1e-3


def test_a_negative_class_count_is_refused(dcgan):
    with pytest.raises(ConfigError) as error:
        dcgan.validate(dcgan.make_config({"num_classes": -1}))
    assert str(error.value) == ("num_classes=-1: must be 0 (unconditional) or the number of classes "
                                "(--cond sets it from the data)")
