"""StyleGAN-lite's reference loop (stylegan2-ada-pytorch's training loop): its schedule, optimizers, updates,
and losses that are ganzoo's functions when both are handed the same weights, inputs and noise."""

from __future__ import annotations

import math

import pytest
import torch

from ganzoo import registry
from ganzoo.api import LossContext, ReferenceLoop
from ganzoo_stylegan_lite import losses
from ganzoo_stylegan_lite.networks import num_ws
from ganzoo_stylegan_lite.reference_loop import ReferenceDraws

ARCH = registry.get("stylegan-lite")
CFG = ARCH.make_config(ARCH.smoke)  # DiffAugment on, path length on, as StyleGAN-lite's smoke preset


def make_loop(seed=0):
    torch.manual_seed(seed)
    return ARCH.reference_loop(CFG, torch.device("cpu"))


def real_batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.rand(CFG.batch_size, CFG.channels, CFG.resolution, CFG.resolution, generator=g) * 2 - 1}


def context(seed):
    return LossContext(cfg=CFG, device=torch.device("cpu"), generator=torch.Generator().manual_seed(seed), step=0,
                       total_steps=1, log=lambda k, v: None)


class GanzooDraws(ReferenceDraws):
    """The loop's draws replaced by the values ganzoo's losses draw from a LossContext seeded alike."""

    def __init__(self, ctx, inputs):
        super().__init__(torch.device("cpu"))
        self.ctx, self.inputs = ctx, inputs

    def mixing_cutoff(self, num_ws, probability):
        mask = self.inputs["mix_mask"]
        return torch.tensor(int(mask.int().argmax()) if mask.any() else num_ws)

    def mix_z(self, z):
        return self.inputs["mix_z"]

    def synthesis_noise(self, n):
        return self.inputs["noise"]

    def pl_noise(self, img):
        return self.ctx.randn(*img.shape)

    def augment(self, n, *shape):
        return self.ctx.rand(n, *shape)


def test_the_hook_returns_the_stylegan2_ada_loop():
    loop = make_loop()
    assert isinstance(loop, ReferenceLoop)
    assert "stylegan2-ada-pytorch" in loop.source


def test_lazy_regularisers_run_on_the_reference_schedule():
    """Steps 0..16: Gmain and Dmain every step, Greg every 4th (0, 4, 8, 12, 16), Dreg every 16th (0, 16)."""
    loop, batch = make_loop(), real_batch()
    ran = []
    for _ in range(17):
        loop.step(batch)
        ran.append(loop.last_phases)
    assert [s for s, p in enumerate(ran) if "Greg" in p] == [0, 4, 8, 12, 16]
    assert [s for s, p in enumerate(ran) if "Dreg" in p] == [0, 16]
    assert all(p[0] == "Gmain" and "Dmain" in p for p in ran)
    assert ran[0] == ran[16] == ("Gmain", "Greg", "Dmain", "Dreg")  # the reference's order; no fused Dboth


def test_optimizers_take_the_lazy_regularisation_lr_and_betas():
    loop = make_loop()
    for opt, interval in ((loop.opt_G, CFG.pl_interval), (loop.opt_D, CFG.r1_interval)):
        ratio = interval / (interval + 1)
        (group,) = opt.param_groups
        assert group["lr"] == pytest.approx(CFG.lr * ratio, rel=1e-12)
        assert tuple(group["betas"]) == pytest.approx((CFG.beta1**ratio, CFG.beta2**ratio), rel=1e-12)
        assert group["eps"] == 1e-8
        assert group["foreach"] is None and group["fused"] is None  # torch's default, as the script builds it
    assert CFG.pl_interval == 4 and CFG.r1_interval == 16


def test_a_step_moves_G_D_G_ema_and_the_path_length_mean():
    loop = make_loop()
    before = {name: [p.detach().clone() for p in net.parameters()]
              for name, net in (("G", loop.G), ("D", loop.D), ("G_ema", loop.G_ema))}
    assert float(loop.loss.pl_mean) == 0
    loop.step(real_batch())
    for name, net in (("G", loop.G), ("D", loop.D), ("G_ema", loop.G_ema)):
        changed = [not torch.equal(a, p) for a, p in zip(before[name], net.parameters())]
        assert any(changed), f"{name} did not change"
    assert float(loop.loss.pl_mean) > 0
    # At step 0 the EMA's ramp-up makes its half-life 0 images: G_ema is G.
    assert all(torch.equal(a, b) for a, b in zip(loop.G_ema.parameters(), loop.G.parameters()))
    assert all(not p.requires_grad for net in (loop.G, loop.D, loop.G_ema) for p in net.parameters())


def test_gmain_loss_is_ganzoos_G_phase_loss():
    """Style mixing (on, at a cutoff inside the layers), per-layer noise and DiffAugment draws handed over."""
    loop = make_loop()
    nets = {"G": loop.G, "D": loop.D}
    n, seed = CFG.batch_size, 4
    expected = losses.generator_loss(nets, n, context(seed), CFG.style_mixing, CFG.augment_policy())
    ctx = context(seed)
    inputs = losses.generator_inputs(n, ctx, CFG.style_mixing)
    assert inputs["mix_mask"].any() and not inputs["mix_mask"].all()  # the seed mixes: the test sees mixing
    loop.loss.draws = GanzooDraws(ctx, inputs)
    got = loop.loss.gmain_loss(inputs["z"]).mean()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_r1_penalty_is_ganzoos_D_r1_loss():
    loop = make_loop()
    nets = {"G": loop.G, "D": loop.D}
    real, seed = real_batch()["image"], 5
    expected = losses.r1_loss(nets, real, context(seed), CFG.gamma(), CFG.r1_interval, CFG.augment_policy())
    assert expected > 0
    loop.loss.draws = GanzooDraws(context(seed), {})
    got = loop.loss.dreal_loss(real, do_Dmain=False, do_Dr1=True).mean() * CFG.r1_interval
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-8)


def test_path_length_penalty_and_mean_are_ganzoos():
    loop = make_loop()
    loop.G.requires_grad_(True)  # as the loop's Greg phase sets it
    nets = {"G": loop.G, "D": loop.D}
    n, seed = CFG.batch_size, 4
    state = {}
    ganzoo_ctx = LossContext(cfg=CFG, device=torch.device("cpu"), generator=torch.Generator().manual_seed(seed),
                             step=0, total_steps=1, log=lambda k, v: None, state=state)
    expected = losses.path_length_loss(nets, n, ganzoo_ctx, CFG)
    ctx = context(seed)
    inputs = losses.generator_inputs(n // CFG.pl_batch_shrink, ctx, CFG.style_mixing)
    loop.loss.draws = GanzooDraws(ctx, inputs)
    gen_z = torch.cat([inputs["z"], torch.zeros_like(inputs["z"])])  # the loop takes the first batch // 2 rows
    got = loop.loss.gpl_loss(gen_z).mean() * CFG.pl_interval
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(loop.loss.pl_mean, state["pl_mean"], rtol=1e-5, atol=0)
    assert num_ws(CFG.resolution) > 2


def test_non_finite_gradient_entries_become_finite_before_the_step():
    """NaN -> 0, +inf -> 1e5, -inf -> -1e5 in D's gradient, so Adam keeps D finite (NaN would spread)."""
    loop = make_loop()
    weight = loop.D.out.weight
    before = weight.detach().clone()

    def poison(grad):
        grad = grad.clone()
        grad[0, 0], grad[0, 1], grad[0, 2] = math.nan, math.inf, -math.inf
        return grad

    weight.requires_grad_(True)
    weight.register_hook(poison)
    weight.requires_grad_(False)
    loop.step(real_batch())  # Dmain and Dreg both step D at step 0
    assert weight.grad[0, 0] == 0 and weight.grad[0, 1] == 1e5 and weight.grad[0, 2] == -1e5
    assert torch.isfinite(weight).all()
    assert not torch.equal(weight, before)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_the_loop_trains_on_cuda():
    torch.manual_seed(0)
    loop = ARCH.reference_loop(CFG, torch.device("cuda"))
    batch = {"image": real_batch()["image"].cuda()}
    for _ in range(5):
        loop.step(batch)
    assert loop.last_phases == ("Gmain", "Greg", "Dmain")  # step 4
    for net in (loop.G, loop.D, loop.G_ema):
        assert all(p.is_cuda and torch.isfinite(p).all() for p in net.parameters())
    assert loop.loss.pl_mean.is_cuda and float(loop.loss.pl_mean) > 0
