"""DCGAN matches Radford et al. 2015 and pytorch/examples: shapes, counts, init, optimizer, loss."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ganzoo import registry
from ganzoo.api import ConfigError
from ganzoo.nn.losses import nonsaturating_d_loss, nonsaturating_g_loss


@pytest.fixture(scope="module")
def dcgan():
    return registry.get("dcgan")


def count(module):
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_match_pytorch_examples_at_64x64_rgb(dcgan):
    nets = dcgan.build(dcgan.make_config({"resolution": 64, "channels": 3}))
    assert count(nets["G"]) == 3_576_704
    assert count(nets["D"]) == 2_765_568


def test_defaults_are_the_papers(dcgan):
    cfg = dcgan.Config()
    assert (cfg.nz, cfg.ngf, cfg.ndf, cfg.batch_size) == (100, 64, 64, 128)
    (d_phase, g_phase) = dcgan.phases(cfg)
    assert [d_phase.name, g_phase.name] == ["D", "G"]
    for phase in (d_phase, g_phase):
        assert phase.optimizer.lr == 2e-4 and phase.optimizer.betas == (0.5, 0.999)


@pytest.mark.parametrize("resolution,channels", [(32, 1), (32, 3), (64, 1), (128, 3)])
def test_shapes_and_layers(dcgan, resolution, channels):
    cfg = dcgan.make_config({"resolution": resolution, "channels": channels})
    nets = dcgan.build(cfg)
    G, D = nets["G"], nets["D"]
    images = G(torch.randn(2, cfg.nz))
    assert images.shape == (2, channels, resolution, resolution)
    assert images.abs().max() <= 1
    assert D(images).shape == (2,)
    convs_t = [m for m in G.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert all(m.stride == (2, 2) for m in convs_t) and isinstance(list(G.modules())[-1], nn.Tanh)
    d_layers = list(D.main)
    assert isinstance(d_layers[0], nn.Conv2d) and isinstance(d_layers[1], nn.LeakyReLU)  # no BN on D's input layer
    assert all(m.negative_slope == 0.2 for m in D.modules() if isinstance(m, nn.LeakyReLU))
    assert sum(isinstance(m, nn.BatchNorm2d) for m in G.modules()) == len(convs_t)  # all but the output layer


def test_widths_at_32_follow_the_examples_pattern(dcgan):
    G = dcgan.build(dcgan.make_config({"resolution": 32, "channels": 1}))["G"]
    widths = [G.main[0].channels] + [m.out_channels for m in G.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert widths == [256, 128, 64, 1]


def test_projection_equals_the_examples_transposed_convolution(dcgan):
    """The first layer is pytorch/examples' ConvTranspose2d(nz, C, 4, 1, 0) on a 1x1 input."""
    G = dcgan.build(dcgan.make_config({"resolution": 64, "channels": 3}))["G"]
    project = G.main[0]
    conv = nn.ConvTranspose2d(100, 512, 4, 1, 0, bias=False)
    with torch.no_grad():
        conv.weight.copy_(project.linear.weight.T.reshape(100, 512, 4, 4))
    z = torch.randn(5, 100)
    torch.testing.assert_close(project(z), conv(z[:, :, None, None]))


def test_weights_drawn_from_normal_0_002(dcgan):
    torch.manual_seed(0)
    nets = dcgan.build(dcgan.make_config({"resolution": 64, "channels": 3}))
    weights = torch.cat([m.weight.flatten() for net in nets.values() for m in net.modules()
                         if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))])
    assert abs(weights.mean().item()) < 1e-3 and abs(weights.std().item() - 0.02) < 5e-4
    bn_scales = torch.cat([m.weight for net in nets.values() for m in net.modules() if isinstance(m, nn.BatchNorm2d)])
    assert abs(bn_scales.mean().item() - 1.0) < 5e-3 and abs(bn_scales.std().item() - 0.02) < 5e-3


@pytest.mark.parametrize("resolution,channels,message", [(48, 3, "resolution=48: must be a power of two, 32 or more"),
                                                         (16, 3, "resolution=16: must be a power of two, 32 or more"),
                                                         (64, 2, "channels=2: must be 1 (grey) or 3 (RGB)")])
def test_bad_sizes_are_refused(dcgan, resolution, channels, message):
    with pytest.raises(ConfigError) as error:
        dcgan.validate(dcgan.make_config({"resolution": resolution, "channels": channels}))
    assert str(error.value) == message


def test_nonsaturating_losses_equal_bce_on_sigmoid():
    real, fake = torch.randn(16), torch.randn(16)
    ones, zeros = torch.ones(16), torch.zeros(16)
    expected_d = F.binary_cross_entropy(real.sigmoid(), ones) + F.binary_cross_entropy(fake.sigmoid(), zeros)
    torch.testing.assert_close(nonsaturating_d_loss(real, fake), expected_d)
    torch.testing.assert_close(nonsaturating_g_loss(fake), F.binary_cross_entropy(fake.sigmoid(), ones))
