"""WGAN-GP passes ganzoo's conformance kit; its penalty and cadence are the paper's."""

import pytest
import torch
from torch import nn

from ganzoo.testing import CHECKS
from ganzoo_wgan_gp import WGANGP, gradient_penalty


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_conformance(check, tmp_path):
    check(WGANGP(), tmp_path)


def test_penalty_of_a_linear_critic_is_exact():
    """For D(x) = w.x the gradient is w everywhere, so the penalty is (||w|| - 1)^2."""
    critic = nn.Sequential(nn.Flatten(), nn.Linear(12, 1, bias=False), nn.Flatten(0))
    with torch.no_grad():
        critic[1].weight.copy_(torch.arange(12.0).reshape(1, 12) / 10)
    real, fake = torch.randn(5, 3, 2, 2), torch.randn(5, 3, 2, 2)
    penalty = gradient_penalty(critic, real, fake, torch.rand(5, 1, 1, 1))
    expected = (critic[1].weight.norm() - 1) ** 2
    torch.testing.assert_close(penalty, expected)
    penalty.backward()  # the double backward reaches the critic's weights
    assert critic[1].weight.grad is not None and critic[1].weight.grad.abs().sum() > 0


def test_paper_defaults_and_phases():
    arch = WGANGP()
    cfg = arch.Config()
    assert (cfg.gp_lambda, cfg.n_critic, cfg.lr, cfg.beta1, cfg.beta2, cfg.batch_size) == (10.0, 5, 1e-4, 0.0, 0.9, 64)
    d, g = arch.phases(cfg)
    assert d.eager and d.interval == 1 and g.interval == 5
    assert not any(isinstance(m, nn.BatchNorm2d) for m in arch.build(cfg)["D"].modules())
