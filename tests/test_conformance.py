"""Every registered architecture passes the conformance kit (as a third-party plugin would)."""

import pytest

from ganzoo import registry
from ganzoo.testing import CHECKS

ARCHITECTURES = sorted(e.name for e in registry.discover() if e.usable)


def test_builtin_architectures_are_registered():
    assert {"dcgan", "cyclegan", "stylegan-lite"} <= set(ARCHITECTURES)


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_conformance(arch, check, tmp_path):
    check(arch, tmp_path)


# The kit's conditional checks catch what they promise to catch: DCGAN (conditional, as shipped) made wrong
# in one way each. A check that passed these would not show that a plugin's labels reach its networks.

def _dcgan_variant(loss=None, build=None):
    from ganzoo_dcgan import DCGAN

    class Variant(DCGAN):
        pass

    if loss is not None:
        Variant.loss = loss
    if build is not None:
        Variant.build = build
    return Variant()


def test_conditional_dcgan_is_checked_with_labels():
    from ganzoo.testing import class_counts

    assert class_counts(registry.get("dcgan")) == [0, 3]
    assert class_counts(registry.get("cyclegan")) == [0]  # cannot be conditional: checked as before


def test_the_kit_catches_real_labels_that_never_reach_d():
    from ganzoo.testing import check_labels
    from ganzoo_dcgan import DCGAN

    def loss(self, phase, nets, batch, ctx):  # every real image judged as class 0
        return DCGAN.loss(self, phase, nets, {**batch, "label": batch["label"] * 0}, ctx)

    with pytest.raises(AssertionError, match=r"batch\['label'\] does not reach the networks"):
        check_labels(_dcgan_variant(loss=loss))


def test_the_kit_catches_generated_labels_not_drawn_by_ctx():
    import torch

    from ganzoo.testing import check_labels
    from ganzoo_dcgan import DCGAN

    def loss(self, phase, nets, batch, ctx):  # the plugin draws its own labels: other ranks would not agree
        class OwnLabels:
            def __getattr__(self, name):
                return getattr(ctx, name)

            def labels(self, n):
                return torch.randint(0, ctx.cfg.num_classes, (n,))

        return DCGAN.loss(self, phase, nets, batch, OwnLabels())

    with pytest.raises(AssertionError, match="the generated samples' labels do not reach the networks"):
        check_labels(_dcgan_variant(loss=loss))


def test_the_kit_catches_a_discriminator_phase_that_fakes_one_class():
    from ganzoo.testing import check_labels
    from ganzoo_dcgan import DCGAN

    def loss(self, phase, nets, batch, ctx):  # D's phase makes every fake of class 0, whatever ctx.labels says
        if phase.name == "G":
            return DCGAN.loss(self, phase, nets, batch, ctx)

        class FirstClass:
            def __getattr__(self, name):
                return getattr(ctx, name)

            def labels(self, n):
                return ctx.labels(n) * 0

        return DCGAN.loss(self, phase, nets, batch, FirstClass())

    with pytest.raises(AssertionError, match="the discriminator's phase does not generate its fakes with ctx.labels"):
        check_labels(_dcgan_variant(loss=loss))


def test_the_kit_catches_a_generator_that_ignores_the_class():
    import torch

    from ganzoo.testing import check_generators
    from ganzoo_dcgan import DCGAN

    def build(self, cfg):
        nets = DCGAN.build(self, cfg)
        with torch.no_grad():  # the projection's weights for the label (DCGAN's default conditioning, "concat")
            nets["G"].main[0].linear.weight[:, cfg.nz:] = 0
        return nets

    with pytest.raises(AssertionError, match="conditional .3 classes.: G: classes 0 and 1 give the same images"):
        check_generators(_dcgan_variant(build=build))


def test_the_kit_catches_a_conditional_loss_that_reads_network_attributes():
    from ganzoo.testing import ForwardOnlyViolation, check_forward_only
    from ganzoo_dcgan import DCGAN

    def loss(self, phase, nets, batch, ctx):
        if ctx.cfg.num_classes and nets["G"].num_classes:  # read from the network: it belongs in ctx.cfg
            pass
        return DCGAN.loss(self, phase, nets, batch, ctx)

    with pytest.raises(ForwardOnlyViolation, match="read the attribute 'num_classes' of G"):
        check_forward_only(_dcgan_variant(loss=loss))
