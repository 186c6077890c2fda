"""The built-in plugins draw through the LossContext (issue 15), fast checks in one process.

The equivalence of one process and two is tests/test_plugin_equivalence.py; these
pin the pieces it rests on: StyleGAN-lite's synthesis noise is handed in by the
loss, DiffAugment draws through ``ctx.rand`` exactly as it drew from the
generator, a per-rank batch that would split D's minibatch-std groups or the
path-length batch is refused, and CycleGAN's pool never keeps a non-finite fake.
"""

from __future__ import annotations

import pytest
import torch

from ganzoo import registry
from ganzoo.api import ConfigError, LossContext
from ganzoo_stylegan_lite.diffaugment import diff_augment, parse_policy
from ganzoo_stylegan_lite.losses import generator_inputs
from ganzoo_stylegan_lite.networks import noise_resolutions

ARCH = registry.get("stylegan-lite")


def context(cfg, seed=0):
    return LossContext(cfg=cfg, device=torch.device("cpu"), generator=torch.Generator().manual_seed(seed), step=0,
                       total_steps=1, log=lambda k, v: None)


def generator_with_noise():
    torch.manual_seed(0)
    cfg = ARCH.make_config(dict(ARCH.smoke))
    G = ARCH.build(cfg)["G"]
    with torch.no_grad():
        for layer in G.synthesis.modules():
            if hasattr(layer, "noise_strength"):
                layer.noise_strength.fill_(0.5)
    return G, cfg


def test_the_loss_draws_every_layers_noise_per_sample_and_the_generator_uses_it():
    G, cfg = generator_with_noise()
    inputs = generator_inputs(3, context(cfg), mixing=0.9)
    layers = [m for m in G.synthesis.modules() if hasattr(m, "noise_strength")]
    assert [tuple(n.shape) for n in inputs["noise"]] == [(3, 1, r, r) for r in noise_resolutions(cfg.resolution)]
    assert len(inputs["noise"]) == len(layers)
    G.train()
    with torch.no_grad():
        first, second = G(**inputs), G(**inputs)
        assert torch.equal(first, second)  # all the randomness came in with the inputs
        other = dict(inputs, noise=[torch.zeros_like(n) for n in inputs["noise"]])
        assert not torch.equal(G(**other), first)
        ws = G(**{k: v for k, v in inputs.items() if k != "noise"}, styles_only=True)
        assert torch.equal(G(ws=ws, noise=inputs["noise"]), first)


def test_without_handed_noise_training_stays_random_and_eval_constant():
    G, cfg = generator_with_noise()
    z = torch.randn(2, cfg.z_dim)
    with torch.no_grad():
        G.train()
        assert not torch.equal(G(z), G(z))
        G.eval()
        assert torch.equal(G(z), G(z))


def test_diffaugment_through_ctx_rand_draws_exactly_what_the_generator_drew():
    """One process: ``ctx.rand`` is the plain draw, so augmentation is bitwise what it was from the generator."""
    cfg = ARCH.make_config(dict(ARCH.smoke))
    x = torch.randn(5, 1, 16, 16)
    policy = parse_policy("color,translation,cutout")
    ctx = context(cfg, seed=4)
    generator = torch.Generator().manual_seed(4)
    assert torch.equal(diff_augment(x, policy, ctx.rand), diff_augment(x, policy, generator))
    assert torch.equal(ctx.generator.get_state(), generator.get_state())  # and left the generator where it did


@pytest.mark.parametrize(("batch", "world", "overrides", "key"), [
    (4, 2, {}, "mbstd_group"),  # groups of 4 on one process, 2 images per rank
    (12, 2, {}, "mbstd_group"),  # 6 per rank: groups of 2 there, of 4 on one process
    (6, 2, {"mbstd_channels": 0, "pl_batch_shrink": 2}, "pl_batch_shrink"),  # 3 path-length samples vs 2 x 1
])
def test_a_split_that_would_compute_something_else_is_refused_with_the_key(batch, world, overrides, key):
    cfg = ARCH.make_config({**ARCH.smoke, "batch_size": batch, **overrides})
    with pytest.raises(ConfigError) as refused:
        ARCH.validate_world_size(cfg, world)
    assert refused.value.key == key and f"{world} processes" in str(refused.value)


@pytest.mark.parametrize(("batch", "world", "overrides"), [
    (8, 2, {}), (4, 1, {}), (4, 2, {"mbstd_group": 2}), (6, 2, {"mbstd_group": 3, "pl_batch_shrink": 3}),
    (6, 2, {"mbstd_channels": 0, "pl_weight": 0.0}),
])
def test_a_split_that_keeps_groups_whole_is_accepted(batch, world, overrides):
    ARCH.validate_world_size(ARCH.make_config({**ARCH.smoke, "batch_size": batch, **overrides}), world)


def test_the_cyclegan_pool_never_stores_a_non_finite_fake():
    """A diverged generator step's fakes are returned (the trainer skips that update) but never kept."""
    from ganzoo_cyclegan import pool

    state, generator = {}, torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.rand(shape, generator=generator)

    bad = torch.full((2, 1, 2, 2), float("nan"))
    out = pool.query(state, "p", torch.cat([torch.ones(1, 1, 2, 2), bad]), 4, rand)
    assert out[1:].isnan().all()  # returned as they are
    assert torch.isfinite(state["p"]["images"]).all() and state["p"]["count"] == 3
    for _ in range(10):  # full: half of them would swap into the pool
        pool.query(state, "p", torch.full((4, 1, 2, 2), float("inf")), 4, rand)
    assert torch.isfinite(state["p"]["images"]).all()
    assert torch.equal(state["p"]["images"][0], torch.ones(1, 2, 2))
