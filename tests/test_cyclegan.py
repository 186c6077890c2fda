"""CycleGAN against the paper and the reference implementation: shapes, counts, losses, pool, schedule."""

from __future__ import annotations

import pytest
import torch

from ganzoo import registry
from ganzoo.api import UNPAIRED, LossContext
from ganzoo.errors import UserError
from ganzoo.data.unpaired import UnpairedSet
from ganzoo.testing import smoke_resolved
from ganzoo.train.trainer import Trainer
from ganzoo_cyclegan import linear_decay, pool
from ganzoo_cyclegan.losses import discriminator_loss, generator_loss
from ganzoo_cyclegan.networks import NLayerDiscriminator, ResnetGenerator, receptive_field


@pytest.fixture(scope="module")
def arch():
    return registry.get("cyclegan")


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_reference_defaults(arch):
    cfg = arch.make_config()
    assert (cfg.resolution, cfg.load_resolution, cfg.flip, cfg.batch_size) == (256, 286, True, 1)
    assert (cfg.ngf, cfg.ndf, cfg.n_layers_d, cfg.pool_size) == (64, 64, 3, 50)
    assert (cfg.lambda_a, cfg.lambda_b, cfg.lambda_identity) == (10.0, 10.0, 0.5)
    assert (cfg.lr, cfg.beta1, cfg.beta2, cfg.lr_decay_start) == (2e-4, 0.5, 0.999, 0.5)
    spec = arch.data_spec(cfg)
    assert (spec.kind, spec.resolution, spec.decode_resolution, spec.flip, spec.channels) == (UNPAIRED, 256, 286, True, 3)


def test_parameter_counts_match_the_reference(arch):
    nets = arch.build(arch.make_config())
    assert set(nets) == {"G_AB", "G_BA", "D_A", "D_B"}
    assert count(nets["G_AB"]) == count(nets["G_BA"]) == 11_378_179  # resnet_9blocks, ngf 64
    assert count(nets["D_A"]) == count(nets["D_B"]) == 2_764_737  # basic PatchGAN, ndf 64
    # 6 blocks at 128x128 and below: three fewer blocks of two 256-channel 3x3 convolutions.
    small = arch.build(arch.make_config({"resolution": 128, "load_resolution": 143}))
    assert count(small["G_AB"]) == 11_378_179 - 3 * 2 * (256 * 256 * 9 + 256)


def test_layer_structure_and_output_shapes():
    g = ResnetGenerator(3, 64, 9)
    kinds = [type(m).__name__ for m in g.model]
    assert kinds[:4] == ["ReflectionPad2d", "Conv2d", "InstanceNorm2d", "ReLU"]
    assert kinds.count("ResnetBlock") == 9 and kinds[-3:] == ["ReflectionPad2d", "Conv2d", "Tanh"]
    assert [m.stride for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)] == [(2, 2), (2, 2)]
    assert not any(isinstance(m, torch.nn.Dropout) for m in g.modules())
    norms = [m for m in g.modules() if isinstance(m, torch.nn.InstanceNorm2d)]
    assert norms and not any(m.affine or m.track_running_stats for m in norms)
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        assert g(x).shape == x.shape
        assert g(torch.randn(2, 3, 64, 96)).shape == (2, 3, 64, 96)  # fully convolutional
        assert NLayerDiscriminator(3, 64, 3)(x).shape == (1, 1, 30, 30)  # 30x30 patches of 70x70
    assert receptive_field(3) == 70


def test_small_resolutions_are_refused_with_the_key(arch):
    with pytest.raises(UserError, match="resolution=16: .* at least 24 for a 3-layer PatchGAN"):
        arch.validate(arch.make_config({"resolution": 16, "load_resolution": 18}))
    with pytest.raises(UserError, match="resolution=30: must be a multiple of 4"):
        arch.validate(arch.make_config({"resolution": 30}))
    arch.validate(arch.make_config({"resolution": 16, "load_resolution": 18, "n_layers_d": 2}))


def test_batching_through_instance_norm_equals_separate_calls():
    """The losses batch G(real_A) with G(real_B) (the identity input); instance norm makes that exact."""
    torch.manual_seed(0)
    g = ResnetGenerator(3, 8, 2)
    a, b = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        together = g(torch.cat([a, b]))
        assert torch.allclose(together, torch.cat([g(a), g(b)]), atol=1e-6)


def test_linear_decay_schedule():
    schedule = linear_decay(0.5)
    assert [schedule(s, 100) for s in (0, 25, 49, 50)] == [1.0, 1.0, 1.0, 1.0]
    assert schedule(75, 100) == pytest.approx(0.5)
    assert schedule(99, 100) == pytest.approx(0.02)
    assert schedule(100, 100) == 0.0
    assert linear_decay(1.0)(99, 100) == 1.0  # decay start at the end: constant


def _uniform(values):
    """A stand-in for LossContext.rand that replays given numbers."""
    it = iter(values)
    return lambda *shape: torch.tensor([next(it)])


def test_pool_fills_then_swaps_like_the_reference():
    state = {}
    first = torch.arange(3 * 2 * 2, dtype=torch.float32).view(3, 1, 2, 2)
    out = pool.query(state, "pool_B", first, 3, rand=_uniform([]))
    assert torch.equal(out, first) and state["pool_B"]["count"] == 3  # filling: the images themselves
    new = torch.full((2, 1, 2, 2), -1.0)
    # image 0: draw 0.7 > 0.5 -> swap with slot floor(0.4*3)=1; image 1: draw 0.2 -> kept as is.
    out = pool.query(state, "pool_B", new, 3, rand=_uniform([0.7, 0.4, 0.2, 0.9]))
    assert torch.equal(out[0], first[1]) and torch.equal(out[1], new[1])
    assert torch.equal(state["pool_B"]["images"][1], new[0])  # the fake took the returned one's slot
    assert torch.equal(state["pool_B"]["images"][0], first[0]) and torch.equal(state["pool_B"]["images"][2], first[2])
    assert torch.equal(pool.query({}, "x", new, 0, rand=None), new)  # pool_size 0: no pool


def test_pool_returns_about_half_old_images():
    generator = torch.Generator().manual_seed(0)
    state = {}
    pool.query(state, "p", -torch.ones(50, 1, 1, 1), 50, rand=None)
    returned = [pool.query(state, "p", torch.full((1, 1, 1, 1), float(i)), 50,
                           rand=lambda *s: torch.rand(s, generator=generator)).item() for i in range(400)]
    old = sum(value != i for i, value in enumerate(returned))
    assert 160 < old < 240  # p = 0.5 per query
    stored = [v for v in state["p"]["images"].flatten().tolist() if v >= 0]
    assert len(stored) == len(set(stored)) > 0  # a swapped-in fake occupies exactly one slot
    assert not set(stored) & {v for i, v in enumerate(returned) if v != i}  # a returned old fake left the pool


def _ctx(cfg, state=None):
    return LossContext(cfg=cfg, device=torch.device("cpu"), generator=torch.Generator().manual_seed(0), step=0,
                       total_steps=1, log=lambda *a: None, state=state)


def test_losses_match_their_definitions(arch):
    cfg = smoke_resolved(arch).config
    torch.manual_seed(0)
    nets = {k: v.eval() for k, v in arch.build(cfg).items()}
    batch = {"A": torch.rand(2, 1, 24, 24) * 2 - 1, "B": torch.rand(2, 1, 24, 24) * 2 - 1}
    ctx = _ctx(cfg)
    with torch.no_grad():
        total = generator_loss(nets, batch, ctx)
        fake_b, fake_a = nets["G_AB"](batch["A"]), nets["G_BA"](batch["B"])
        mse1 = lambda x: ((x - 1) ** 2).mean()  # noqa: E731
        l1 = lambda x, y: (x - y).abs().mean()  # noqa: E731
        expected = (mse1(nets["D_B"](fake_b)) + mse1(nets["D_A"](fake_a))
                    + 10 * l1(nets["G_BA"](fake_b), batch["A"]) + 10 * l1(nets["G_AB"](fake_a), batch["B"])
                    + 5 * l1(nets["G_AB"](batch["B"]), batch["B"]) + 5 * l1(nets["G_BA"](batch["A"]), batch["A"]))
        assert total.item() == pytest.approx(expected.item(), rel=1e-5)
        assert torch.allclose(ctx.stash["fake_B"], fake_b, atol=1e-6)
        d_total = discriminator_loss(nets, batch, ctx)  # the pool is filling: it returns the fakes themselves
        expected_d = sum(0.5 * (mse1(nets[f"D_{d}"](batch[d])) + (nets[f"D_{d}"](ctx.stash[f"fake_{d}"]) ** 2).mean())
                         for d in "AB")
        assert d_total.item() == pytest.approx(expected_d.item(), rel=1e-5)
    assert ctx.state["pool_A"]["count"] == 2 and ctx.state["pool_B"]["count"] == 2


def test_identity_loss_can_be_turned_off(arch):
    cfg = arch.make_config({**smoke_resolved(arch).config.__dict__, "lambda_identity": 0.0})
    nets = arch.build(cfg)
    logged = {}
    ctx = LossContext(cfg=cfg, device=torch.device("cpu"), generator=torch.Generator(), step=0, total_steps=1,
                      log=lambda k, v: logged.setdefault(k, v))
    generator_loss(nets, {"A": torch.zeros(2, 1, 24, 24), "B": torch.zeros(2, 1, 24, 24)}, ctx)
    assert "G/cycle_A" in logged and "G/identity_A" not in logged


def test_trainer_applies_the_decay_and_checkpoints_the_pools(arch, tmp_path):
    resolved = smoke_resolved(arch, steps=4)
    data = UnpairedSet(torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8),
                       torch.randint(0, 256, (9, 1, 28, 28), dtype=torch.uint8), "synthetic", "synthetic")
    trainer = Trainer(arch, resolved, data, tmp_path / "run")
    lrs = []
    for _ in range(4):
        lrs.append([opt.param_groups[0]["lr"] for opt, _ in trainer.optimizers.values()])
        trainer.train_step()
    # Constant for the first half, then linearly to zero (decay from step 2 of 4): 2e-4 * (4 - s) / (4 - 2).
    assert lrs == [[2e-4, 2e-4], [2e-4, 2e-4], [2e-4, 2e-4], [pytest.approx(1e-4)] * 2]
    trainer.run()
    state = torch.load(tmp_path / "run" / "checkpoints" / "step-0000004" / "trainer.pt", weights_only=True)
    pools = state["plugin"]
    assert pools["pool_A"]["count"] == 3 and pools["pool_A"]["images"].shape == (3, 1, 24, 24)


def test_preview_shows_real_translated_and_reconstructed(arch):
    cfg = smoke_resolved(arch).config
    nets = {k: v.eval() for k, v in arch.build(cfg).items()}
    real = {"A": torch.rand(5, 1, 24, 24) * 2 - 1, "B": torch.rand(5, 1, 24, 24) * 2 - 1}
    images, nrow = arch.preview(nets, cfg, 64, 0, torch.device("cpu"), real=real)
    assert nrow == 6 and images.shape == (30, 1, 24, 24) and images.dtype == torch.uint8
    expected_a = ((real["A"][0] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    assert torch.equal(images[0], expected_a)  # column 0 is the real A image
    with torch.no_grad():
        translated = ((nets["G_AB"](real["A"][:1]) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    assert torch.equal(images[1], translated[0])  # column 1 is its translation


def test_a_checkpoint_from_before_the_lambdalr_resumes_the_schedule_from_its_step(arch, tmp_path):
    """trainer.pt written without scheduler state (runs made before the schedules became LambdaLRs)."""
    data = UnpairedSet(torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8),
                       torch.randint(0, 256, (9, 1, 28, 28), dtype=torch.uint8), "synthetic", "synthetic")
    resolved = smoke_resolved(arch, steps=4, checkpoint_every=3)
    whole = Trainer(arch, resolved, data, tmp_path / "whole")
    whole.run()
    Trainer(arch, resolved, data, tmp_path / "old").run(until=3)
    saved = tmp_path / "old" / "checkpoints" / "step-0000003" / "trainer.pt"
    state = torch.load(saved, weights_only=True)
    del state["schedulers"]
    torch.save(state, saved)
    resumed = Trainer(arch, resolved, data, tmp_path / "old", resume=True)
    assert [opt.param_groups[0]["lr"] for opt, _ in resumed.optimizers.values()] == [pytest.approx(1e-4)] * 2
    resumed.run()
    for role, net in whole.nets.items():
        for (name, a), b in zip(net.state_dict().items(), resumed.nets[role].state_dict().values()):
            assert torch.equal(a, b), f"{role}.{name}"
