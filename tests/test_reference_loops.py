"""The reference loops the benchmark's reference-loop row times: the code users would otherwise run.

They must train what ganzoo trains (same parameter counts at the same config),
train all of it (every network's weights move each step), and compute the
references' own functions (the image pool's draws; BCE of a sigmoid equals
ganzoo's softplus form of the same loss).
"""

from __future__ import annotations

import copy
import random

import pytest
import torch
from ganzoo_cyclegan.reference_loop import ImagePool
from ganzoo_dcgan.networks import Discriminator

from ganzoo import config, registry
from ganzoo.api import ReferenceLoop
from ganzoo.nn.losses import nonsaturating_d_loss
from ganzoo.testing import smoke_resolved, synthetic_data
from ganzoo.train.feed import make_feed

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def cudnn_benchmark_restored():
    """The loops set torch.backends.cudnn.benchmark as their scripts do; the bench puts it back, and so do these
    tests, which build them directly."""
    before = torch.backends.cudnn.benchmark
    yield
    torch.backends.cudnn.benchmark = before


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _loop(name: str, cfg):
    torch.manual_seed(0)
    loop = registry.get(name).reference_loop(cfg, CPU)
    assert isinstance(loop, ReferenceLoop) and loop.source
    return loop


def _nets(loop) -> dict[str, torch.nn.Module]:
    return {k: v for k, v in vars(loop).items() if k.startswith("net")}


def test_dcgan_reference_networks_have_the_examples_and_ganzoos_parameter_counts():
    arch = registry.get("dcgan")
    for overrides, expected in [({}, (3_576_704, 2_765_568)), ({"resolution": 32, "channels": 1}, None),
                                ({"resolution": 256, "max_channels": 512}, None)]:
        cfg = arch.make_config(overrides)
        loop, ours = _loop("dcgan", cfg), arch.build(cfg)
        counts = (_count(loop.netG), _count(loop.netD))
        assert counts == (_count(ours["G"]), _count(ours["D"])), overrides
        if expected:  # pytorch/examples at 64x64 RGB
            assert counts == expected
    # at 64x64 the example's own layout: state-dict keys and shapes as netG_epoch_N.pth holds them
    shapes = {k: tuple(v.shape) for k, v in _loop("dcgan", arch.make_config()).netG.state_dict().items()}
    assert shapes["main.0.weight"] == (100, 512, 4, 4) and shapes["main.12.weight"] == (64, 3, 4, 4)
    assert len([k for k in shapes if k.endswith(".weight")]) == 9  # 5 transposed convolutions, 4 batch norms


def test_cyclegan_reference_networks_have_ganzoos_parameter_counts():
    arch = registry.get("cyclegan")
    for overrides in ({}, {"resolution": 128}, {"channels": 1, "ngf": 8, "n_layers_d": 2}):
        cfg = arch.make_config(overrides)
        loop, ours = _loop("cyclegan", cfg), arch.build(cfg)
        assert (_count(loop.netG_A), _count(loop.netG_B)) == (_count(ours["G_AB"]), _count(ours["G_BA"]))
        assert (_count(loop.netD_A), _count(loop.netD_B)) == (_count(ours["D_B"]), _count(ours["D_A"]))
        if not overrides:  # the paper's 256x256 setting, as the plugin's docstring counts it
            assert (_count(loop.netG_A), _count(loop.netD_A)) == (11_378_179, 2_764_737)


def _batches(name: str, n: int):
    arch = registry.get(name)
    resolved = smoke_resolved(arch)
    cfg = resolved.config
    feed = make_feed(synthetic_data(arch, cfg, n=64), cfg.batch_size, 0, CPU, arch.data_spec(cfg))
    return cfg, [feed.next() for _ in range(n)]


@pytest.mark.parametrize("name", ["dcgan", "cyclegan"])
def test_every_step_changes_every_network_s_weights(name):
    cfg, batches = _batches(name, 3)
    loop = _loop(name, cfg)
    nets = _nets(loop)
    assert len(nets) == (2 if name == "dcgan" else 4)
    for batch in batches:
        before = {(net, k): p.detach().clone() for net, module in nets.items() for k, p in module.named_parameters()}
        loop.step(batch)
        unchanged = [f"{net}.{k}" for net, module in nets.items() for k, p in module.named_parameters()
                     if torch.equal(p, before[(net, k)])]
        assert not unchanged, unchanged  # every parameter tensor of every network moved
        assert all(p.requires_grad for module in nets.values() for p in module.parameters())


def test_the_image_pool_behaves_as_the_references():
    images = torch.randn(3, 2, 4, 4)
    assert ImagePool(0).query(images) is images  # size 0: no pool at all

    pool = ImagePool(50, random.Random(1))
    first = torch.arange(50.0).view(50, 1, 1, 1).expand(50, 2, 4, 4)
    assert torch.equal(pool.query(first[:30]), first[:30])  # while it fills: the images themselves, kept
    assert torch.equal(pool.query(first[30:]), first[30:]) and pool.num_imgs == 50
    stored = {float(image[0, 0, 0, 0]) for image in pool.images}
    assert stored == set(range(50))
    swapped, trials = 0, 2000
    for i in range(trials):
        value = 1000.0 + i
        out = pool.query(torch.full((1, 2, 4, 4), value))
        got = float(out[0, 0, 0, 0])
        held = {float(image[0, 0, 0, 0]) for image in pool.images}
        if got == value:  # kept back: the pool is as it was
            assert value not in held and held == stored
        else:  # swapped: an image stored before comes back, the new one takes its place
            swapped += 1
            assert got in stored and value in held and held == stored - {got} | {value}
        stored = held
        assert len(pool.images) == 50
    assert 0.45 < swapped / trials < 0.55  # p = 0.5 (2000 draws: 4.5 standard deviations either side)


def test_a_dcgan_loop_step_computes_ganzoos_nonsaturating_d_loss():
    """The example's BCE of a sigmoid, against ganzoo's softplus of the logits on the same reals and fakes,
    with ganzoo's own discriminator holding the loop's weights (its keys are the example's)."""
    arch = registry.get("dcgan")
    cfg = config.resolve(arch, preset="smoke", sets={"resolution": 64}).config  # the example's 5-layer D
    feed = make_feed(synthetic_data(arch, cfg, n=32), cfg.batch_size, 0, CPU, arch.data_spec(cfg))
    real = feed.next()["image"]
    loop = _loop("dcgan", cfg)
    netG = copy.deepcopy(loop.netG)
    ours = Discriminator(cfg)
    ours.load_state_dict(loop.netD.state_dict())
    torch.manual_seed(7)
    loop.step({"image": real})
    torch.manual_seed(7)
    fake = netG(torch.randn(cfg.batch_size, cfg.nz, 1, 1))  # the noise the step drew
    expected = nonsaturating_d_loss(ours(real), ours(fake.detach()))
    assert abs(loop.progress["Loss_D"] - expected.item()) < 1e-6
    assert expected.item() > 0.1  # a real loss, not a degenerate zero
    assert set(loop.progress) == {"Loss_D", "Loss_G", "D(x)", "D(G(z)) before", "D(G(z)) after"}


def test_a_cyclegan_loop_step_computes_ganzoos_generator_and_discriminator_losses():
    """The reference's separate generator calls and per-discriminator backward passes, against ganzoo's batched
    calls, with ganzoo's networks holding the loop's weights (the reference's G_A is G_AB, its D_A judges B)."""
    from ganzoo_cyclegan.losses import discriminator_loss, generator_loss

    from ganzoo.api import LossContext

    arch = registry.get("cyclegan")
    cfg, [batch] = _batches("cyclegan", 1)
    loop = _loop("cyclegan", cfg)
    ours = arch.build(cfg)
    for role, net in (("G_AB", loop.netG_A), ("G_BA", loop.netG_B), ("D_B", loop.netD_A), ("D_A", loop.netD_B)):
        ours[role].load_state_dict({k.replace("conv_block", "block"): v for k, v in net.state_dict().items()})
    ctx = LossContext(cfg=cfg, device=CPU, generator=torch.Generator().manual_seed(0), step=0, total_steps=1,
                      log=lambda *_: None)
    g_loss = generator_loss(ours, batch, ctx)
    d_loss = discriminator_loss(ours, batch, ctx)  # the pools are filling: both return the newest fakes
    loop.step(batch)
    assert abs(loop.loss_G.item() - g_loss.item()) < 1e-5 * g_loss.item()
    assert abs((loop.loss_D_A + loop.loss_D_B).item() - d_loss.item()) < 1e-5 * d_loss.item()
    assert cfg.lambda_identity > 0 and loop.loss_idt_A.item() > 0  # the identity terms were in both
