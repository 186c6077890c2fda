"""Conditional DCGAN's default, "concat", is Mirza & Osindero's conditional GAN ("Conditional Generative
Adversarial Nets", 2014, sec. 3.2) on DCGAN: y joins z at G's input and joins the image at D's input, replicated
over positions. From that definition, a conditional network is the unconditional DCGAN that reads num_classes
more inputs, with the same weights: that is what these tests hold it to."""

import pytest
import torch
import torch.nn.functional as F

from ganzoo import registry
from ganzoo.api import ConfigError

CLASSES = 4
SMALL = {"resolution": 32, "channels": 1, "nz": 12, "ngf": 8, "ndf": 8}


@pytest.fixture(scope="module")
def dcgan():
    return registry.get("dcgan")


def count(module):
    return sum(p.numel() for p in module.parameters())


def label_maps(labels, classes, size):
    """y replicated over the image: map k is all ones where the label is k, zeros elsewhere."""
    return F.one_hot(labels, classes).float()[:, :, None, None].expand(-1, -1, size, size)


def conditional_and_wider(dcgan, role, resolution, channels, training, wider):
    """The conditional network and the unconditional one whose ``wider`` input reads CLASSES more, with its
    weights (same keys and shapes: nothing but the wider input differs)."""
    sizes = {**SMALL, "resolution": resolution, "channels": channels}
    torch.manual_seed(0)
    net = dcgan.build(dcgan.make_config({**sizes, "num_classes": CLASSES}))[role]
    plain = dcgan.build(dcgan.make_config({**sizes, wider: sizes[wider] + CLASSES}))[role]
    plain.load_state_dict(net.state_dict())
    return net.train(training), plain.train(training)


@pytest.mark.parametrize("resolution,channels", [(32, 1), (64, 3)])
@pytest.mark.parametrize("training", [True, False])
def test_generator_is_dcgan_reading_z_and_the_one_hot_label(dcgan, resolution, channels, training):
    G, plain = conditional_and_wider(dcgan, "G", resolution, channels, training, wider="nz")
    z, labels = torch.randn(5, SMALL["nz"]), torch.tensor([0, 3, 1, 2, 3])
    y = F.one_hot(labels, CLASSES).float()
    with torch.no_grad():
        torch.testing.assert_close(G(z, y), plain(torch.cat([z, y], 1)), rtol=0, atol=0)


@pytest.mark.parametrize("resolution,channels", [(32, 1), (64, 3)])
@pytest.mark.parametrize("training", [True, False])
def test_discriminator_is_dcgan_reading_the_image_and_label_maps(dcgan, resolution, channels, training):
    D, plain = conditional_and_wider(dcgan, "D", resolution, channels, training, wider="channels")
    x, labels = torch.rand(5, channels, resolution, resolution) * 2 - 1, torch.tensor([0, 3, 1, 2, 3])
    with torch.no_grad():
        want = plain(torch.cat([x, label_maps(labels, CLASSES, resolution)], 1))
        torch.testing.assert_close(D(x, labels), want, rtol=0, atol=0)


@pytest.mark.parametrize("resolution,channels", [(32, 1), (64, 3)])
def test_parameters_are_dcgans_plus_the_label_inputs(dcgan, resolution, channels):
    """G's projection reads num_classes more numbers (num_classes x 16 x its width more weights), D's first
    convolution num_classes more channels (num_classes x 16 x its width); the state-dict keys stay
    pytorch/examples' (the wider first layers import as they are)."""
    plain = dcgan.build(dcgan.make_config({"resolution": resolution, "channels": channels}))
    cond = dcgan.build(dcgan.make_config({"resolution": resolution, "channels": channels, "num_classes": 10}))
    g_first = plain["G"].main[0].channels  # the 4x4 layer's width
    d_first = plain["D"].main[0].out_channels
    assert count(cond["G"]) == count(plain["G"]) + 10 * 16 * g_first
    assert count(cond["D"]) == count(plain["D"]) + 10 * 16 * d_first
    for role in ("G", "D"):
        assert list(cond[role].state_dict()) == list(plain[role].state_dict())


def test_the_class_changes_every_image_and_every_logit(dcgan):
    torch.manual_seed(0)
    nets = dcgan.build(dcgan.make_config({**SMALL, "num_classes": 3}))
    G, D = nets["G"].train(), nets["D"].eval()  # batch statistics: an untrained G's images are not ~0
    z = torch.randn(4, SMALL["nz"])
    with torch.no_grad():
        images = {c: G(z, F.one_hot(torch.tensor([c, 0, 1, 2]), 3).float())[:1] for c in range(3)}
        logits = {c: D(images[0], torch.full((1,), c)) for c in range(3)}
    for a, b in ((0, 1), (0, 2), (1, 2)):
        assert (images[a] - images[b]).abs().amax() > 1e-3 * images[a].abs().amax()
        assert (logits[a] - logits[b]).abs().min() > 1e-3 * logits[a].abs().amax()


def test_missing_labels_and_an_unknown_conditioning_are_refused(dcgan):
    nets = dcgan.build(dcgan.make_config({**SMALL, "num_classes": 3}))
    with pytest.raises(TypeError, match="conditional .3 classes.: pass a one-hot label"):
        nets["G"](torch.randn(2, SMALL["nz"]))
    with pytest.raises(TypeError, match="conditional .3 classes.: pass the labels"):
        nets["D"](torch.randn(2, 1, 32, 32))
    with pytest.raises(ConfigError) as error:
        dcgan.validate(dcgan.make_config({"conditioning": "hybrid"}))
    assert str(error.value) == "conditioning='hybrid': must be 'concat' or 'projection'"
