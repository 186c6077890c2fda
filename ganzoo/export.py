"""Generators to self-contained ONNX files, verified against PyTorch before anything is written.

Each generator an architecture declares is exported from its EMA weights in
eval mode, with batch norms folded into the convolutions before them (so the
file is simpler for any runtime; ONNX Runtime's own basic optimisation fuses
these pairs too, so it gains no speed there), a dynamic batch (and a dynamic height and
width for generators with a ``size_multiple``) and metadata that lets the
torch-free runtime sample and translate (a conditional generator's one-hot
``label`` input is one more input, and its class names are metadata). The file is checked with
``onnx.checker`` and run by ONNX Runtime against eager PyTorch on fresh random
inputs at two batch sizes; above the tolerance nothing is written. Its
metadata carries ganzoo's mark (``ganzoo.marks``): a later export replaces it,
and never a file without that mark (``ganzoo.outputs.claim``).
"""

from __future__ import annotations

import copy
import io
import json
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import __version__
from .api import Generator
from .errors import UserError
from .marks import onnx_props
from .outputs import EXPORT, claim
from .runtime.classes import default_names
from .runtime.latents import Constant, Latents
from .runtime import ExportedGenerator

DEFAULT_OPSET = 17
MIN_OPSET, MAX_OPSET = 13, 20  # 20: the newest the TorchScript exporter writes
TOLERANCE = {"fp32": 1e-3, "fp16": 5e-2}  # max |onnx - torch| in [-1, 1] image units (1 uint8 level = 0.0078)
CHECK_BATCHES = (1, 4)


@dataclass
class Exported:
    name: str
    path: Path
    errors: dict[str, float]  # check label -> max |onnx - torch|
    tolerance: float
    size_bytes: int


def fold_batch_norms(net: nn.Module) -> nn.Module:
    """A copy of ``net`` (eval) with every (Conv|ConvTranspose)2d -> BatchNorm2d pair of a Sequential fused."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    net = copy.deepcopy(net).eval()
    for module in net.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for first, second in zip(names, names[1:]):
            conv, bn = module._modules[first], module._modules[second]
            if isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)) and isinstance(bn, nn.BatchNorm2d) \
                    and bn.track_running_stats and bn.running_mean is not None:
                module._modules[first] = fuse_conv_bn_eval(conv, bn, transpose=isinstance(conv, nn.ConvTranspose2d))
                module._modules[second] = nn.Identity()
    return net


def affine_batch_norms(net: nn.Module) -> nn.Module:
    """``net`` with every batch norm that has no affine parameters given scale 1 and shift 0 (the same function,
    exactly): the exporter writes such a norm with constants of its channel count, which it cannot know after a
    reshape with a dynamic batch (a conditional batch norm, ``bn(x) * (1 + gain(y)) + bias(y)``, is one)."""
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not module.affine \
                and module.running_mean is not None:
            module.affine = True
            module.weight = nn.Parameter(torch.ones_like(module.running_mean), requires_grad=False)
            module.bias = nn.Parameter(torch.zeros_like(module.running_mean), requires_grad=False)
    return net


def check_inputs(spec: Generator, n: int, seed: int, resolution: int, wide: bool = False) -> dict[str, np.ndarray]:
    """Fresh inputs for a parity check: the generator's latents (a conditional generator's one-hot labels
    drawn by its ``OneHot`` part, so every row is a valid class), settings drawn in [0, default], and
    for a generator with a ``size_multiple`` (``wide``) images wider than the training size."""
    inputs = spec.latents(n, seed)
    rng = np.random.default_rng(seed + 1)
    if isinstance(spec.latents, Latents):
        for part in spec.latents.parts:
            if isinstance(part, Constant):
                inputs[part.name] = (rng.uniform(0, 1, inputs[part.name].shape) * part.value).astype(np.float32)
    if wide and spec.size_multiple and spec.translates:
        name = spec.inputs[0]
        shape = inputs[name].shape[:2] + (resolution, resolution + 2 * spec.size_multiple)
        inputs[name] = rng.uniform(-1, 1, shape).astype(np.float32)
    return inputs


def to_onnx(net: nn.Module, spec: Generator, example: dict[str, np.ndarray], opset: int, dynamic_batch: bool) -> bytes:
    """The traced graph of ``net`` (TorchScript exporter: no onnxscript needed, and it folds constants)."""
    axes = {0: "batch"} if dynamic_batch else {}
    size_axes = {2: "height", 3: "width"} if spec.size_multiple else {}
    dynamic = {name: dict(axes) for name in spec.inputs}
    dynamic[spec.output] = {**axes, **size_axes}
    if spec.size_multiple:
        dynamic[spec.inputs[0]].update(size_axes)
    args = tuple(torch.from_numpy(example[name]) for name in spec.inputs)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(net, args, buffer, dynamo=False, opset_version=opset, do_constant_folding=True,
                          input_names=list(spec.inputs), output_names=[spec.output],
                          dynamic_axes={k: v for k, v in dynamic.items() if v} or None)
    return buffer.getvalue()


def metadata(arch, cfg, name: str, spec: Generator, plugin: dict, batch: int | None, precision: str,
             example: dict[str, np.ndarray], classes: list[str] | None = None) -> dict[str, str]:
    """The metadata props; a conditional generator's ``classes`` (names by index; default "0".."N-1")
    are a JSON list under "classes", which an unconditional one does not have."""
    data = arch.data_spec(cfg)
    inputs = []
    for key in spec.inputs:
        shape: list = [batch] + list(example[key].shape[1:])
        if spec.size_multiple and spec.translates and key == spec.inputs[0]:
            shape[2:] = [None, None]
        inputs.append({"name": key, "shape": shape, "dtype": "float32"})
    props = {
        "ganzoo_version": __version__, "architecture": arch.name, "generator": name,
        "plugin": json.dumps(plugin), "config": json.dumps(asdict(cfg), default=str),
        "inputs": json.dumps(inputs), "output": spec.output, "pixels": spec.pixels,
        "channels": str(data.channels), "resolution": str(data.resolution),
        "batch": json.dumps(batch), "precision": precision,
        "size_multiple": json.dumps(spec.size_multiple),
        **onnx_props(EXPORT),
    }
    if isinstance(spec.latents, Latents):
        props["latents"] = spec.latents.to_json()
    if spec.translates:
        props["translates"] = json.dumps(list(spec.translates))
    part = getattr(spec.latents, "label_part", None)
    if part is not None:
        names = list(classes) if classes is not None else default_names(part.num_classes)
        if len(names) != part.num_classes:
            raise UserError(f"{arch.name}'s generator {name!r} takes {part.num_classes} classes, but "
                            f"{len(names)} class names were given ({', '.join(names)})")
        props["classes"] = json.dumps(names)
    return props


def build_model(onnx_bytes: bytes, props: dict[str, str], fp16: bool) -> bytes:
    """Metadata attached, fp16 weights if asked (inputs and outputs stay float32), checked by onnx.checker."""
    import onnx

    model = onnx.load_from_string(onnx_bytes)
    if fp16:
        from onnxruntime.transformers.float16 import convert_float_to_float16
        from onnxruntime.transformers.onnx_model import OnnxModel

        model = convert_float_to_float16(model, keep_io_types=True)
        OnnxModel(model).topological_sort()  # the converter appends its input casts at the end
    model.producer_name, model.producer_version = "ganzoo", __version__
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise UserError(f"the exported graph fails onnx.checker: {str(exc).splitlines()[0]}") from None
    return model.SerializeToString()


def verify(model_path: Path, net: nn.Module, spec: Generator, resolution: int, batch: int | None,
           seed: int) -> dict[str, float]:
    """max |ONNX Runtime - eager PyTorch| per check, on fresh inputs at two batch sizes (or the fixed one)."""
    session = ExportedGenerator(model_path, device="cpu")
    # a dynamic model: batch 1, then batch 4 (wider than trained, where the size is free); a fixed one: two draws
    checks = [(f"batch {n}", n, n == CHECK_BATCHES[-1]) for n in CHECK_BATCHES] if batch is None \
        else [(f"batch {batch}", batch, False), (f"batch {batch}, second draw", batch, False)]
    errors = {}
    for index, (label, n, wide) in enumerate(checks):
        inputs = check_inputs(spec, n, seed + 2 * index, resolution, wide=wide)
        if wide and spec.size_multiple and spec.translates:
            label += f" at {inputs[spec.inputs[0]].shape[2]}x{inputs[spec.inputs[0]].shape[3]}"
        with torch.no_grad():
            expected = net(*[torch.from_numpy(inputs[k]) for k in spec.inputs]).float().numpy()
        got = session.run(inputs)
        if got.shape != expected.shape:
            raise UserError(f"ONNX Runtime gave shape {got.shape} where PyTorch gives {expected.shape} ({label})")
        errors[label] = float(np.abs(got - expected).max())
    return errors


def export_generator(arch, cfg, name: str, spec: Generator, net: nn.Module, out: Path, *, plugin: dict,
                     opset: int = DEFAULT_OPSET, batch: int | None = None, fp16: bool = False,
                     tolerance: float | None = None, seed: int | None = None, fold_norms: bool = True,
                     classes: list[str] | None = None) -> Exported:
    """Export, check and verify one generator; ``out`` is written (atomically) only if it passes.

    ``fold_norms=False`` keeps batch norms as graph nodes (the benchmark's plain export); ``classes`` names
    a conditional generator's classes in the metadata (a run's ``rundir.run_classes``).
    """
    from .fileio import atomic_write

    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise UserError(f"--opset must be between {MIN_OPSET} and {MAX_OPSET}, got {opset}")
    if batch is not None and batch < 1:
        raise UserError(f"--batch must be 'dynamic' or a positive integer, got {batch}")
    precision = "fp16" if fp16 else "fp32"
    tolerance = TOLERANCE[precision] if tolerance is None else tolerance
    seed = int(np.random.SeedSequence().entropy % 2**31) if seed is None else seed
    net = net.float().cpu().eval()
    example = spec.latents(batch or 2, 0)
    props = metadata(arch, cfg, name, spec, plugin, batch, precision, example, classes)
    traced = affine_batch_norms(fold_batch_norms(net) if fold_norms else copy.deepcopy(net))
    model = build_model(to_onnx(traced, spec, example, opset, batch is None), props, fp16)
    resolution = arch.data_spec(cfg).resolution
    scratch = out.with_name(f".{out.name}.verify-{os.getpid()}")  # this process's own: no one else's file
    try:
        atomic_write(scratch, lambda f: f.write(model))  # a refused write is one UserError naming the path
        errors = verify(scratch, net, spec, resolution, batch, seed)
    finally:
        scratch.unlink(missing_ok=True)
    worst = max(errors.values())
    if not worst <= tolerance:
        detail = ", ".join(f"{k}: {v:.2e}" for k, v in errors.items())
        raise UserError(f"{name}: ONNX Runtime differs from PyTorch by {worst:.2e} > tolerance {tolerance:g} "
                        f"({detail}; seed {seed}); nothing written")
    atomic_write(out, lambda f: f.write(model))
    return Exported(name, out, errors, tolerance, len(model))


def export_run(run, out_dir: Path | None = None, *, step: int | str | None = None, generator: str | None = None,
               **options) -> list[Exported]:
    """Every generator of a run directory's checkpoint (``step``, "best" or the newest; EMA weights) to
    ``out_dir``/ARCH-NAME.onnx."""
    from .rundir import load_sampling_nets, run_classes

    generators = run.arch.generators(run.resolved.config)
    if generator is not None and generator not in generators:
        raise UserError(f"unknown generator {generator!r}; {run.arch.name} has: {', '.join(generators)}")
    out_dir = Path(out_dir) if out_dir is not None else run.path / "export"
    for name in generators:  # before any work: each file is new or an earlier export, never anything else
        if generator in (None, name):
            claim(out_dir / f"{run.arch.name}-{name}.onnx", EXPORT)
    classes = run_classes(run)  # a damaged class list is refused before any work
    nets, step = load_sampling_nets(run, torch.device("cpu"), step=step)
    plugin = {**run.record.get("plugin", {}), "step": step}
    return [export_generator(run.arch, run.resolved.config, name, spec, nets[spec.role],
                             out_dir / f"{run.arch.name}-{name}.onnx", plugin=plugin, classes=classes, **options)
            for name, spec in generators.items()
            if generator == name or (generator is None and spec.role in nets)]  # an import may lack a generator
