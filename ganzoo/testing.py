"""The conformance kit: checks every architecture must pass, ours and third parties'.

Use it from pytest in a plugin's own tests:

    import pytest
    from ganzoo.testing import CHECKS

    @pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
    def test_conformance(check, tmp_path):
        check("my-arch", tmp_path)

Each check builds the architecture's `smoke` config on the CPU and drives the
real trainer, checkpoint and sampling code on synthetic images.

A plugin that can be conditional (``class_count_key`` set) is checked twice: as
an unconditional network (its class count 0) and with ``COND_CLASSES`` classes,
on synthetic images with labels. Then the checks also ask that the DataSpec asks
for labels and every generator declares a ``OneHot("label")`` input, that the
class changes a generator's output, that the labels of real images
(``batch["label"]``) and of generated ones (``ctx.labels``) change the loss,
that the forward-only rule holds with labels, and that training, save and
reload and export carry the label input.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import torch

from . import config, registry
from .api import (API_VERSION, DATA_KINDS, SMOKE_PRESET, UNPAIRED, Architecture, Generator, LossContext, Phase,
                  label_distribution)

COND_CLASSES = 3  # the class count a conditional plugin is checked with


def _arch(arch: str | Architecture) -> Architecture:
    return registry.get(arch) if isinstance(arch, str) else arch


def smoke_resolved(arch: Architecture, steps: int = 2, *, classes: int = 0, **train):
    """The architecture's smoke preset on the CPU, with trainer settings for a few quick steps; ``classes`` > 0
    sets its class count (``class_count_key``), as ``ganzoo train --cond`` does."""
    flags = {"steps": steps, "device": "cpu", "log_every": 1, "sample_every": 10**6,
             "checkpoint_every": 10**6, "sample_n": 4, **train}
    sets = {arch.class_count_key: classes} if classes else {}
    return config.resolve(arch, preset=SMOKE_PRESET, sets=sets, flags=flags)


def class_counts(arch: Architecture) -> list[int]:
    """The class counts every check runs with: 0, and COND_CLASSES for an architecture that can be conditional."""
    return [0, COND_CLASSES] if _arch(arch).class_count_key else [0]


def _where(classes: int) -> str:
    """How a check's message names the config it failed on."""
    return f"conditional ({classes} classes): " if classes else ""


def synthetic_data(arch: Architecture, cfg, n: int = 32, seed: int = 0):
    """Random uint8 images shaped as the DataSpec asks, as the dataset type the trainer gets for its kind:
    an ImageSet, or an UnpairedSet with domains of different sizes. When the spec asks for labels, each image
    has a class, every class of the config present (drawn after the images, so the images do not change)."""
    from .data import ImageSet
    from .data.unpaired import UnpairedSet

    spec = arch.data_spec(cfg)
    generator = torch.Generator().manual_seed(seed)

    def images(count: int) -> torch.Tensor:
        shape = (max(count, cfg.batch_size), spec.channels, spec.decode_resolution, spec.decode_resolution)
        return torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)

    if spec.kind == UNPAIRED:
        return UnpairedSet(images(n), images(n + n // 2), "synthetic", "synthetic")
    pixels = images(n)
    labels = None
    if spec.labels:
        classes = arch.num_classes(cfg)
        labels = (torch.arange(len(pixels)) % classes)[torch.randperm(len(pixels), generator=generator)]
    return ImageSet(pixels, labels, "synthetic", "synthetic")


def _label_cdf(arch: Architecture, cfg, data) -> "torch.Tensor | None":
    """What the trainer hands LossContext for ``data``: its class frequencies, for a conditional config."""
    return label_distribution(data.labels, arch.num_classes(cfg)) if arch.data_spec(cfg).labels else None


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
    key = arch.class_count_key
    if key is not None:
        assert fields.get(key) is int, f"class_count_key {key!r} must name an int field of Config"
        assert getattr(arch.Config(), key) == 0, f"Config.{key} must default to 0 (unconditional)"
    for classes in class_counts(arch):
        where = _where(classes)
        cfg = smoke_resolved(arch, classes=classes).config
        assert arch.num_classes(cfg) == classes, f"{where}num_classes(cfg) is {arch.num_classes(cfg)}"
        spec = arch.data_spec(cfg)
        assert spec.kind in DATA_KINDS and spec.resolution > 0 and spec.channels in (1, 3)
        assert spec.labels == (classes > 0), f"{where}DataSpec.labels is {spec.labels}"
        phases = arch.phases(cfg)
        assert phases and all(isinstance(p, Phase) for p in phases)
        assert len({p.name for p in phases}) == len(phases), "phase names must be unique"
        gens = arch.generators(cfg)
        assert gens and all(isinstance(g, Generator) for g in gens.values())
        nets = arch.build(cfg)
        for phase in phases:
            assert set(phase.trains) <= set(nets), f"phase {phase.name} trains unknown networks"
        for name, g in gens.items():
            assert g.role in nets, f"generator role {g.role!r} is not built"
            part = getattr(g.latents, "label_part", None)
            if classes:
                assert part is not None and part.name == "label" and part.num_classes == classes, \
                    f"{where}{name}: the latents must declare OneHot('label', ({classes},)), got {part}"
                assert "label" in g.inputs, f"{where}{name}: inputs {g.inputs} lack 'label'"
            else:
                assert part is None and "label" not in g.inputs, f"{name}: an unconditional generator has a label input"


def check_generators(arch, tmp_path: Path | None = None) -> None:
    """Latents are a pure function of (n, seed); outputs match the data spec and lie in [-1, 1]; a conditional
    generator's output depends on the class asked for."""
    for classes in class_counts(arch):
        _check_generators(_arch(arch), classes)


def _check_generators(arch: Architecture, classes: int) -> None:
    cfg = smoke_resolved(arch, classes=classes).config
    spec = arch.data_spec(cfg)
    torch.manual_seed(0)
    nets = arch.build(cfg)
    for name, gen in arch.generators(cfg).items():
        name = _where(classes) + name
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
        if classes:  # the same latents for every class but the label: each class draws something else
            outs = []
            for label in range(classes):
                inputs = gen.latents(3, 7, labels=label)
                assert all(np.array_equal(inputs[k], a[k]) for k in gen.inputs if k != "label"), \
                    f"{name}: choosing the class changed other inputs"
                with torch.no_grad():
                    outs.append(net(*[torch.from_numpy(inputs[k]) for k in gen.inputs]))
            for label in range(1, classes):
                assert not torch.allclose(outs[0], outs[label]), f"{name}: classes 0 and {label} give the same images"


def check_training_step(arch, tmp_path: Path) -> None:
    """Two CPU steps through the real trainer (with labelled data, conditional): losses finite, every trained
    network moves."""
    for classes in class_counts(arch):
        _check_training_step(_arch(arch), tmp_path / ("run" if not classes else f"run-{classes}-classes"), classes)


def _check_training_step(arch: Architecture, run_dir: Path, classes: int) -> None:
    from .train.trainer import Trainer

    where = _where(classes)
    resolved = smoke_resolved(arch, steps=2, classes=classes)
    trainer = Trainer(arch, resolved, synthetic_data(arch, resolved.config), run_dir)
    before = {role: [p.detach().clone() for p in m.parameters()] for role, m in trainer.nets.items()}
    trainer.run()
    trained = {role for phase in trainer.phases for role in phase.trains}
    for role in trained:
        moved = any(not torch.equal(a, b) for a, b in zip(before[role], trainer.nets[role].parameters()))
        assert moved, f"{where}network {role!r} is trained by a phase but its parameters did not change"
    import json

    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = {k: v for r in records for k, v in r.items() if k.startswith("loss/")}
    assert {f"loss/{p.name}" for p in trainer.phases if p.interval == 1} <= set(losses), \
        f"{where}losses logged: {sorted(losses)}"
    assert all(math.isfinite(v) for v in losses.values()), f"{where}non-finite losses: {losses}"


def check_save_reload(arch, tmp_path: Path) -> None:
    """A checkpoint rebuilt through the registry and config.json gives identical outputs (a conditional run:
    for every class, and config.json keeps its class names)."""
    for classes in class_counts(arch):
        _check_save_reload(_arch(arch), tmp_path / ("run" if not classes else f"run-{classes}-classes"), classes)


def _check_save_reload(arch: Architecture, run_dir: Path, classes: int) -> None:
    from . import rundir
    from .runtime.latents import class_rows
    from .sampling import generate
    from .train.trainer import Trainer

    where = _where(classes)
    resolved = smoke_resolved(arch, steps=2, classes=classes)
    trainer = Trainer(arch, resolved, synthetic_data(arch, resolved.config), run_dir)
    entry = next(e for e in registry.discover() if e.name == arch.name) if _registered(arch) else None
    names = [f"class {i}" for i in range(classes)] if classes else None
    if entry is not None:
        rundir.write_config(run_dir, resolved, entry, classes=names)
    trainer.run()
    live = {role: m.eval() for role, m in trainer.sampling_nets().items()}
    if entry is not None:
        run = rundir.open_run(run_dir)
        reloaded, step = rundir.load_sampling_nets(run, torch.device("cpu"))
        assert step == 2
        assert rundir.run_classes(run) == names, f"{where}config.json's classes are {rundir.run_classes(run)}"
    else:
        reloaded = _reload_without_registry(arch, resolved, run_dir)
    labels = class_rows(2 * classes, classes)[0] if classes else None
    n = 2 * classes if classes else 4
    for name, gen in arch.generators(resolved.config).items():
        a = generate(live[gen.role], gen, n, 3, torch.device("cpu"), labels=labels)
        b = generate(reloaded[gen.role], gen, n, 3, torch.device("cpu"), labels=labels)
        assert torch.equal(a, b), f"{where}{name}: outputs differ after save and reload"


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
    PyTorch at batch 1 and 4; sampling by seed gives the PyTorch images within one uint8 level. A conditional
    generator's model declares its one-hot label input (dynamic batch, one column per class) and agrees with
    PyTorch for a chosen class."""
    for classes in class_counts(arch):
        _check_export(_arch(arch), tmp_path / ("export" if not classes else f"export-{classes}-classes"), classes)


def _check_export(arch: Architecture, out_dir: Path, classes: int) -> None:
    from .export import export_generator
    from .runtime.latents import Latents
    from .runtime import load
    from .sampling import generate

    cfg = smoke_resolved(arch, classes=classes).config
    torch.manual_seed(0)
    nets = arch.build(cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    for gen_name, gen in arch.generators(cfg).items():
        name = _where(classes) + gen_name
        assert isinstance(gen.latents, Latents), f"{name}: latents must be a ganzoo.api.Latents to be exported"
        assert gen.output not in gen.inputs, f"{name}: output name {gen.output!r} is also an input name"
        net = nets[gen.role].eval()
        exported = export_generator(arch, cfg, gen_name, gen, net, out_dir / f"{gen_name}.onnx", plugin={}, seed=11)
        assert set(exported.errors) and max(exported.errors.values()) <= exported.tolerance
        model = load(exported.path, device="cpu")
        if classes:
            declared = {i.name: i.shape for i in model.session.get_inputs()}
            assert "label" in declared and declared["label"][1:] == [classes] \
                and not isinstance(declared["label"][0], int), f"{name}: the model's label input is {declared}"
            assert model.metadata.latents.label_part == gen.latents.label_part, \
                f"{name}: the model's metadata lacks the label input's declaration"
        for n in (1, 4):
            inputs = gen.latents(n, 20 + n) if not classes else gen.latents(n, 20 + n, labels=np.arange(n) % classes)
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
    """Every phase's loss, and its backward pass, with each network behind a proxy that can only be called
    (with labels in the batch and ``ctx.labels`` for a conditional config)."""
    for classes in class_counts(arch):
        _check_forward_only(_arch(arch), classes)


def _check_forward_only(arch: Architecture, classes: int) -> None:
    where = _where(classes)
    cfg = smoke_resolved(arch, classes=classes).config
    batch, label_cdf = _one_batch(arch, cfg)
    torch.manual_seed(0)
    nets = arch.build(cfg)
    ctx = _context(cfg, label_cdf)
    for phase in arch.phases(cfg):
        for role, module in nets.items():
            module.requires_grad_(role in phase.trains)
        proxies = {role: ForwardOnly(module, role, phase.name) for role, module in nets.items()}
        loss = arch.loss(phase, proxies, batch, ctx)
        assert torch.is_tensor(loss) and loss.dim() == 0, f"{where}phase {phase.name!r}: the loss is not a scalar tensor"
        loss.backward()
        trained = [p for role in phase.trains for p in nets[role].parameters()]
        assert any(p.grad is not None for p in trained), \
            f"{where}phase {phase.name!r}: no gradient reached {phase.trains}"


def _one_batch(arch: Architecture, cfg) -> tuple[dict, "torch.Tensor | None"]:
    """A training batch of synthetic data from the real feed, and the label distribution the trainer would use."""
    from .train.feed import make_feed

    data = synthetic_data(arch, cfg)
    batch = make_feed(data, cfg.batch_size, 0, torch.device("cpu"), arch.data_spec(cfg)).next()
    return batch, _label_cdf(arch, cfg, data)


def _context(cfg, label_cdf) -> LossContext:
    return LossContext(cfg=cfg, device=torch.device("cpu"), generator=torch.Generator().manual_seed(0), step=0,
                       total_steps=2, log=lambda name, value: None, label_cdf=label_cdf)


def check_labels(arch, tmp_path: Path | None = None) -> None:
    """A conditional config's labels reach the networks through the loss: giving the real images other labels
    (``batch["label"]``) changes the loss of some phase (the discriminator's), and generating other classes
    (``ctx.labels``, the only source of generated samples' labels) changes the loss of every phase that trains
    a generator and of some other phase (the discriminator's, which makes its fakes with them). Networks stay
    behind the forward-only proxy. An architecture that cannot be conditional has nothing to check here."""
    arch = _arch(arch)
    if arch.class_count_key is None:
        return
    classes = COND_CLASSES
    cfg = smoke_resolved(arch, classes=classes).config
    batch, data_cdf = _one_batch(arch, cfg)
    phases = arch.phases(cfg)
    generator_roles = {g.role for g in arch.generators(cfg).values()}

    def losses(batch, label_cdf) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        nets = arch.build(cfg)
        ctx = _context(cfg, label_cdf)
        return {phase.name: arch.loss(phase, {r: ForwardOnly(m, r, phase.name) for r, m in nets.items()},
                                      batch, ctx).detach() for phase in phases}

    def differ(a, b) -> set[str]:
        return {name for name in a if not torch.equal(a[name], b[name])}

    def only(label: int) -> torch.Tensor:  # every generated sample of class ``label``
        return label_distribution(torch.tensor([label]), classes)

    base = losses(batch, data_cdf)
    assert not differ(base, losses(batch, data_cdf)), \
        "two identical calls of the loss differ: it draws randomness other than from ctx"
    relabelled = losses({**batch, "label": (batch["label"] + 1) % classes}, data_cdf)
    assert differ(base, relabelled), \
        "giving the real images other labels changed no phase's loss: batch['label'] does not reach the networks"
    changed = differ(losses(batch, only(0)), losses(batch, only(classes - 1)))
    trains_generator = {p.name for p in phases if set(p.trains) & generator_roles and p.interval == 1}
    assert trains_generator <= changed, \
        (f"generating class {classes - 1} instead of class 0 (ctx.labels) leaves the loss of "
         f"{sorted(trains_generator - changed)} unchanged: the generated samples' labels do not reach the networks")
    assert changed - trains_generator, \
        (f"generating class {classes - 1} instead of class 0 (ctx.labels) changes no other phase's loss: the "
         "discriminator's phase does not generate its fakes with ctx.labels")


CHECKS = [check_declaration, check_generators, check_forward_only, check_labels, check_training_step,
          check_save_reload, check_export]
