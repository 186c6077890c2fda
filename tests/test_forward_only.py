"""The conformance kit's forward-only check: a loss may only call the networks it is handed.

Every registered architecture passes it (tests/test_conformance.py runs all of
CHECKS); here plugins that read attributes of their networks, as losses once
read ``G.nz`` and ``G.num_ws``, fail it with the attribute named.
"""

from __future__ import annotations

import pytest
import torch

from ganzoo import registry
from ganzoo.api import LossContext
from ganzoo.testing import CHECKS, ForwardOnly, ForwardOnlyViolation, check_forward_only


def leaky(read):
    """DCGAN whose loss first does ``read(nets)``, as a plugin that reaches into its networks would."""
    base = type(registry.get("dcgan"))

    class Leaky(base):
        def loss(self, phase, nets, batch, ctx):
            read(nets)
            return super().loss(phase, nets, batch, ctx)

    return Leaky()


def test_the_check_is_part_of_the_kit():
    assert check_forward_only in CHECKS


@pytest.mark.parametrize("read,what", [
    (lambda nets: nets["G"].nz, "read the attribute 'nz' of G"),
    (lambda nets: getattr(nets["D"], "main", None), "read the attribute 'main' of D"),
    (lambda nets: hasattr(nets["G"], "num_ws"), "read the attribute 'num_ws' of G"),
    (lambda nets: nets["G"].main[0](torch.zeros(1, 16)), "read the attribute 'main' of G"),
    (lambda nets: setattr(nets["G"], "nz", 3), "set the attribute 'nz' of G"),
])
def test_a_loss_that_reads_a_network_attribute_fails_naming_it(read, what):
    with pytest.raises(ForwardOnlyViolation) as failure:
        check_forward_only(leaky(read))
    message = str(failure.value)
    assert message.startswith(f"the loss of phase 'D' {what};"), message
    assert "read sizes from ctx.cfg" in message


def test_a_loss_that_only_calls_its_networks_passes():
    check_forward_only(leaky(lambda nets: [p.numel() for p in nets["G"].parameters()]))


def test_the_proxy_calls_forward_with_every_argument():
    module = torch.nn.Linear(3, 2)
    proxy = ForwardOnly(module, "G", "G")
    x = torch.randn(4, 3)
    assert torch.equal(proxy(x), module(x)) and torch.equal(proxy.forward(input=x), module(x))
    assert list(proxy.parameters()) == list(module.parameters())


def test_stylegan_lite_losses_reach_both_halves_of_g_through_forward():
    """Path length differentiates the image by its styles: two forward calls, styles_only and ws=."""
    arch = registry.get("stylegan-lite")
    from ganzoo.testing import smoke_resolved

    cfg = smoke_resolved(arch).config
    torch.manual_seed(0)
    G = arch.build(cfg)["G"]
    ctx = LossContext(cfg=cfg, device=torch.device("cpu"), generator=torch.Generator().manual_seed(0), step=0,
                      total_steps=1, log=lambda *_: None)
    from ganzoo_stylegan_lite.losses import path_length_loss

    loss = path_length_loss({"G": ForwardOnly(G, "G", "G_pl")}, 4, ctx, cfg)
    loss.backward()
    assert G.mapping.layers[0].weight.grad is not None  # the penalty reaches the mapping network through ws
    z = torch.randn(2, cfg.z_dim)
    G.eval()
    with torch.no_grad():
        assert torch.equal(G(ws=G(z, styles_only=True)), G(z))
