"""The conformance kit: checks every architecture must pass, ours and third parties'.

Use it from pytest in a plugin's own tests:

    import pytest
    from ganzoo.testing import CHECKS

    @pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
    def test_conformance(check, tmp_path):
        check("my-arch", tmp_path)

Each check builds the architecture's `smoke` config on the CPU and drives the
real trainer, checkpoint and sampling code on synthetic images.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import torch

from . import config, registry
from .api import API_VERSION, DATA_KINDS, SMOKE_PRESET, UNPAIRED, Architecture, Generator, LossContext, Phase


def _arch(arch: str | Architecture) -> Architecture:
    return registry.get(arch) if isinstance(arch, str) else arch


def smoke_resolved(arch: Architecture, steps: int = 2, **train):
    """The architecture's smoke preset on the CPU, with trainer settings for a few quick steps."""
    flags = {"steps": steps, "device": "cpu", "log_every": 1, "sample_every": 10**6,
             "checkpoint_every": 10**6, "sample_n": 4, **train}
    return config.resolve(arch, preset=SMOKE_PRESET, flags=flags)


def synthetic_data(arch: Architecture, cfg, n: int = 32, seed: int = 0):
    """Random uint8 images shaped as the DataSpec asks, as the dataset type the trainer gets for its kind:
    an ImageSet, or an UnpairedSet with domains of different sizes."""
    from .data import ImageSet
    from .data.unpaired import UnpairedSet

    spec = arch.data_spec(cfg)
    generator = torch.Generator().manual_seed(seed)

    def images(count: int) -> torch.Tensor:
        shape = (max(count, cfg.batch_size), spec.channels, spec.decode_resolution, spec.decode_resolution)
        return torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)

    if spec.kind == UNPAIRED:
        return UnpairedSet(images(n), images(n + n // 2), "synthetic", "synthetic")
    return ImageSet(images(n), None, "synthetic", "synthetic")


def check_declaration(arch, tmp_path: Path | None = None) -> None:
    """Name, summary, API version, Config, presets, smoke config, data spec, phases, generators."""
    arch = _arch(arch)
    assert isinstance(arch.name, str) and arch.name, "name must be a non-empty string"
    assert isinstance(arch.summary, str) and "\n" not in arch.summary, "summary must be one line"
    assert arch.api_version == API_VERSION
    assert dataclasses.is_dataclass(arch.Config), "Config must be a dataclass"
    fields = config.field_types(arch.Config)
    assert "batch_size" in fields, "Config needs a batch_size field"
    assert not set(fields) & set(config.field_types(config.TrainOptions)), "Config shadows trainer options"
    for name, overrides in config.presets(arch).items():
        unknown = set(overrides) - set(fields) - set(config.field_types(config.TrainOptions))
        assert not unknown, f"preset {name!r} sets unknown keys {sorted(unknown)}"
        config.resolve(arch, preset=name)  # every preset passes the architecture's validate()
    arch.validate(arch.Config())  # and so do the defaults
    cfg = smoke_resolved(arch).config
    spec = arch.data_spec(cfg)
    assert spec.kind in DATA_KINDS and spec.resolution > 0 and spec.channels in (1, 3)
    phases = arch.phases(cfg)
    assert phases and all(isinstance(p, Phase) for p in phases)
    assert len({p.name for p in phases}) == len(phases), "phase names must be unique"
    gens = arch.generators(cfg)
    assert gens and all(isinstance(g, Generator) for g in gens.values())
    nets = arch.build(cfg)
    for phase in phases:
        assert set(phase.trains) <= set(nets), f"phase {phase.name} trains unknown networks"
    for g in gens.values():
        assert g.role in nets, f"generator role {g.role!r} is not built"


def check_generators(arch, tmp_path: Path | None = None) -> None:
    """Latents are a pure function of (n, seed); outputs match the data spec and lie in [-1, 1]."""
    arch = _arch(arch)
    cfg = smoke_resolved(arch).config
    spec = arch.data_spec(cfg)
    torch.manual_seed(0)
    nets = arch.build(cfg)
    for name, gen in arch.generators(cfg).items():
        a, b, c = gen.latents(3, 7), gen.latents(3, 7), gen.latents(3, 8)
        assert set(a) == set(gen.inputs), f"{name}: latents give {sorted(a)}, inputs are {gen.inputs}"
        for key in gen.inputs:
            assert np.array_equal(a[key], b[key]), f"{name}: latents for one seed differ"
            assert len(a[key]) == 3
        # Some inputs are per-sample settings (a truncation psi), but the latents as a whole follow the seed.
        assert any(not np.array_equal(a[k], c[k]) for k in gen.inputs), f"{name}: latents ignore the seed"
        net = nets[gen.role].eval()
        with torch.no_grad():
            out = net(*[torch.from_numpy(a[k]) for k in gen.inputs])
        assert out.shape == (3, spec.channels, spec.resolution, spec.resolution), f"{name}: output {tuple(out.shape)}"
        assert torch.isfinite(out).all() and out.abs().max() <= 1.0 + 1e-5, f"{name}: outputs outside [-1, 1]"


def check_training_step(arch, tmp_path: Path) -> None:
    """Two CPU steps through the real trainer: losses finite, every trained network moves."""
    from .train.trainer import Trainer

    arch = _arch(arch)
    resolved = smoke_resolved(arch, steps=2)
    trainer = Trainer(arch, resolved, synthetic_data(arch, resolved.config), tmp_path / "run")
    before = {role: [p.detach().clone() for p in m.parameters()] for role, m in trainer.nets.items()}
    trainer.run()
    trained = {role for phase in trainer.phases for role in phase.trains}
    for role in trained:
        moved = any(not torch.equal(a, b) for a, b in zip(before[role], trainer.nets[role].parameters()))
        assert moved, f"network {role!r} is trained by a phase but its parameters did not change"
    import json

    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = {k: v for r in records for k, v in r.items() if k.startswith("loss/")}
    assert {f"loss/{p.name}" for p in trainer.phases if p.interval == 1} <= set(losses), f"losses logged: {sorted(losses)}"
    assert all(math.isfinite(v) for v in losses.values()), f"non-finite losses: {losses}"


def check_save_reload(arch, tmp_path: Path) -> None:
    """A checkpoint rebuilt through the registry and config.json gives identical outputs."""
    from . import rundir
    from .sampling import generate
    from .train.trainer import Trainer

    arch = _arch(arch)
    resolved = smoke_resolved(arch, steps=2)
    run_dir = tmp_path / "run"
    trainer = Trainer(arch, resolved, synthetic_data(arch, resolved.config), run_dir)
    entry = next(e for e in registry.discover() if e.name == arch.name) if _registered(arch) else None
    if entry is not None:
        rundir.write_config(run_dir, resolved, entry)
    trainer.run()
    live = {role: m.eval() for role, m in trainer.sampling_nets().items()}
    if entry is not None:
        run = rundir.open_run(run_dir)
        reloaded, step = rundir.load_sampling_nets(run, torch.device("cpu"))
        assert step == 2
    else:
        reloaded = _reload_without_registry(arch, resolved, run_dir)
    for name, gen in arch.generators(resolved.config).items():
        a = generate(live[gen.role], gen, 4, 3, torch.device("cpu"))
        b = generate(reloaded[gen.role], gen, 4, 3, torch.device("cpu"))
        assert torch.equal(a, b), f"{name}: outputs differ after save and reload"


def _registered(arch: Architecture) -> bool:
    return any(e.name == arch.name for e in registry.discover())


def _reload_without_registry(arch, resolved, run_dir):
    from .train import checkpoint as ckpt

    nets = arch.build(resolved.config)
    weights = ckpt.load_networks(ckpt.latest_checkpoint(run_dir))
    ckpt.load_into(nets, {r: weights.get(f"{r}_ema", weights[r]) for r in nets}, run_dir)
    return {r: m.eval() for r, m in nets.items()}


def check_export(arch, tmp_path: Path) -> None:
    """Every generator exports to ONNX (dynamic batch, verified) and the torch-free runtime agrees with
    PyTorch at batch 1 and 4; sampling by seed gives the PyTorch images within one uint8 level."""
    from .export import export_generator
    from .runtime.latents import Latents
    from .runtime import load
    from .sampling import generate

    arch = _arch(arch)
    cfg = smoke_resolved(arch).config
    torch.manual_seed(0)
    nets = arch.build(cfg)
    for name, gen in arch.generators(cfg).items():
        assert isinstance(gen.latents, Latents), f"{name}: latents must be a ganzoo.api.Latents to be exported"
        assert gen.output not in gen.inputs, f"{name}: output name {gen.output!r} is also an input name"
        net = nets[gen.role].eval()
        exported = export_generator(arch, cfg, name, gen, net, tmp_path / f"{name}.onnx", plugin={}, seed=11)
        assert set(exported.errors) and max(exported.errors.values()) <= exported.tolerance
        model = load(exported.path, device="cpu")
        for n in (1, 4):
            inputs = gen.latents(n, 20 + n)
            with torch.no_grad():
                expected = net(*[torch.from_numpy(inputs[k]) for k in gen.inputs]).numpy()
            got = model.run(inputs)
            assert got.shape == expected.shape, f"{name}: ONNX shape {got.shape}, PyTorch {expected.shape}"
            assert np.abs(got - expected).max() <= exported.tolerance, f"{name}: ONNX differs at batch {n}"
        if not gen.translates:
            ours = model.sample(5, seed=3).astype(int)
            theirs = generate(net, gen, 5, 3, torch.device("cpu")).numpy().astype(int)
            assert np.abs(ours - theirs).max() <= 1, f"{name}: runtime samples differ from PyTorch's for one seed"


class ForwardOnlyViolation(AssertionError):
    """A loss used a network as more than a callable."""


class ForwardOnly:
    """A network as a wrapper (DDP, torch.compile, a CUDA graph) presents it to a loss.

    It can be called (or its ``forward``) and gives its ``parameters``; reading
    or setting anything else raises :class:`ForwardOnlyViolation` naming it.
    Not an AttributeError, so ``hasattr`` and ``getattr(..., default)`` cannot
    hide the read.
    """

    __slots__ = ("_module", "_role", "_phase")

    def __init__(self, module: torch.nn.Module, role: str, phase: str):
        object.__setattr__(self, "_module", module)
        object.__setattr__(self, "_role", role)
        object.__setattr__(self, "_phase", phase)

    def __call__(self, *args, **kwargs):
        return self._module(*args, **kwargs)

    def forward(self, *args, **kwargs):
        return self._module(*args, **kwargs)

    def parameters(self, recurse: bool = True):
        return self._module.parameters(recurse)

    def _violation(self, what: str) -> ForwardOnlyViolation:
        return ForwardOnlyViolation(
            f"the loss of phase {self._phase!r} {what} {self._role}; a loss may only call the networks it is "
            "handed, which DDP, torch.compile or CUDA graphs may wrap: read sizes from ctx.cfg and reach "
            "sub-networks through forward arguments")

    def __getattr__(self, name: str):
        raise self._violation(f"read the attribute {name!r} of")

    def __setattr__(self, name: str, value) -> None:
        raise self._violation(f"set the attribute {name!r} of")


def check_forward_only(arch, tmp_path: Path | None = None) -> None:
    """Every phase's loss, and its backward pass, with each network behind a proxy that can only be called."""
    from .train.feed import make_feed

    arch = _arch(arch)
    cfg = smoke_resolved(arch).config
    spec = arch.data_spec(cfg)
    device = torch.device("cpu")
    batch = make_feed(synthetic_data(arch, cfg), cfg.batch_size, 0, device, spec).next()
    torch.manual_seed(0)
    nets = arch.build(cfg)
    ctx = LossContext(cfg=cfg, device=device, generator=torch.Generator().manual_seed(0), step=0, total_steps=2,
                      log=lambda name, value: None)
    for phase in arch.phases(cfg):
        for role, module in nets.items():
            module.requires_grad_(role in phase.trains)
        proxies = {role: ForwardOnly(module, role, phase.name) for role, module in nets.items()}
        loss = arch.loss(phase, proxies, batch, ctx)
        assert torch.is_tensor(loss) and loss.dim() == 0, f"phase {phase.name!r}: the loss is not a scalar tensor"
        loss.backward()
        trained = [p for role in phase.trains for p in nets[role].parameters()]
        assert any(p.grad is not None for p in trained), f"phase {phase.name!r}: no gradient reached {phase.trains}"


CHECKS = [check_declaration, check_generators, check_forward_only, check_training_step, check_save_reload,
          check_export]
