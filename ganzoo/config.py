"""Configs: an architecture's dataclass plus the trainer's, presets, --set overrides.

One namespace of keys: a `--set key=value` names a field of the architecture's
Config or of TrainOptions (the two never share a name). Precedence, lowest first:
dataclass defaults, preset, --set, the CLI's own flags (--steps, --batch-size...).
Every resolved Config passes the architecture's ``validate`` before anything is
built, so a bad value is one error line that says where it came from.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Mapping

from .api import MAX_RESOLUTION, SMOKE_PRESET, ConfigError, require
from .data import DEFAULT_DATASET
from .errors import UserError


@dataclass
class TrainOptions:
    """Everything the trainer decides; the architecture never sees these."""

    steps: int = 5000
    epochs: float = 0.0  # when > 0, the run's length in passes over the data; it sets steps
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = "fp32"  # fp32 | bf16 | fp16
    compile: bool = False
    # auto: what the benchmark suite measured fastest for this architecture on this device type
    # (ganzoo/data/measured_defaults.json; ganzoo.train.speed_defaults), else on for CUDA only and fused Adam.
    channels_last: str = "auto"  # auto | on | off
    optimizer: str = "auto"  # auto | fused (where the device has it, else foreach) | foreach | plain (a Python loop)
    data_on_device: str = "auto"  # auto (resident on the accelerator when it fits) | off (copied every step)
    # CUDA numerics, applied while the run trains (PyTorch's own defaults: False, True, False).
    tf32_matmul: bool = True  # TF32 tensor cores for fp32 matmuls
    tf32_conv: bool = True  # TF32 tensor cores for fp32 cuDNN convolutions
    cudnn_benchmark: bool = True  # let cuDNN time its algorithms for each new shape
    ema_kimg: float = 10.0  # EMA half-life in thousands of images; 0 turns EMA off
    ema_rampup: float = 0.05  # half-life at most this fraction of images seen; 0 = none
    log_every: int = 50
    sample_every: int = 500
    sample_n: int = 64
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    max_nonfinite: int = 20  # consecutive skipped runs of a phase before on_nonfinite applies
    on_nonfinite: str = "stop"  # stop (name the step and the last good checkpoint) | rollback (to that checkpoint)
    max_rollbacks: int = 3  # rollbacks at most; the next divergence stops
    rollback_lr_factor: float = 0.5  # every optimizer's learning rate is multiplied by this at each rollback
    # Under torchrun: batch norm statistics over the global batch instead of each rank's slice.
    sync_batchnorm: bool = False
    max_image_pixels: int = 4096 * 4096  # a data image declaring more (width x height) is a bad file, never decoded
    # Evaluation during training (ganzoo.train.evaluation): every eval_every steps (0: never) the EMA
    # generator is scored by eval_metric ("" : fd-fmnist on the embedded data, fid otherwise) on eval_n
    # images (0: all the real images, at most 10,000); checkpoints/best links to the best-scoring checkpoint.
    eval_every: int = 0
    eval_metric: str = ""
    eval_n: int = 0
    eval_weights: str = ""  # the extractor's weights file ("": its caches, else a download when online)


PRECISIONS = ("fp32", "bf16", "fp16")
OPTIMIZERS = ("auto", "fused", "foreach", "plain")
NONFINITE_POLICIES = ("stop", "rollback")


def _check_train_options(opts: TrainOptions) -> None:
    """The trainer's own checks, as ConfigErrors so the message says where the value came from."""
    choices = {"precision": PRECISIONS, "channels_last": ("auto", "on", "off"), "optimizer": OPTIMIZERS,
               "data_on_device": ("auto", "off"), "on_nonfinite": NONFINITE_POLICIES}
    for key, allowed in choices.items():
        value = getattr(opts, key)
        require(value in allowed, key, value, f"must be one of {', '.join(allowed)}")
    require(opts.steps >= 0, "steps", opts.steps, "must not be negative")
    for key in ("log_every", "sample_every", "checkpoint_every", "keep_checkpoints", "sample_n", "max_nonfinite",
                "max_image_pixels"):
        require(getattr(opts, key) >= 1, key, getattr(opts, key), "must be at least 1")
    require(0 <= opts.seed < 2**32, "seed", opts.seed, "must lie in [0, 2**32) (numpy seeds data order with it)")
    for key in ("eval_every", "eval_n"):
        require(getattr(opts, key) >= 0, key, getattr(opts, key), "must not be negative (0 is the default)")
    from .metrics.suite import HIGHER_IS_BETTER, RANKED, min_images

    require(opts.eval_metric in ("", *RANKED), "eval_metric", opts.eval_metric,
            f"must be one of {', '.join(RANKED)} (a metric that ranks checkpoints: higher is better for "
            f"{', '.join(HIGHER_IS_BETTER)}, lower for the others)")
    need, _, why = min_images([opts.eval_metric or "fid"])  # the default (fd-fmnist or fid) is a Frechet distance
    what = opts.eval_metric or "the default metric, a Frechet distance,"
    require(opts.eval_n == 0 or opts.eval_n >= need, "eval_n", opts.eval_n,
            f"must be 0 (all the real images, at most 10,000) or at least {need}: {what} needs {need} ({why})")
    require(opts.max_rollbacks >= 0, "max_rollbacks", opts.max_rollbacks, "must not be negative")
    require(0 < opts.rollback_lr_factor <= 1, "rollback_lr_factor", opts.rollback_lr_factor, "must lie in (0, 1]")
    for key in ("epochs", "ema_kimg", "ema_rampup"):
        require(getattr(opts, key) >= 0, key, getattr(opts, key), "must not be negative")


def _check_resolution(arch, cfg) -> None:
    """The images an architecture consumes (its DataSpec's decode resolution) are at most MAX_RESOLUTION a side.

    Every plugin gets this bound from the core, whatever its own validate allows:
    past it nothing can be built (resolution=1073741824 overflowed inside torch).
    The error names the config key holding that resolution.
    """
    side = arch.data_spec(cfg).decode_resolution
    if side <= MAX_RESOLUTION:
        return
    key = next((f.name for f in dataclasses.fields(cfg) if "resolution" in f.name and getattr(cfg, f.name) == side),
               "resolution")
    raise ConfigError(key, side, f"must be at most {MAX_RESOLUTION}, the largest side ganzoo builds (one "
                                 f"{side}x{side} image alone would hold {side * side:,} pixels)")


def _check_finite(cfg) -> None:
    """No float of a config (or inside a tuple of them) is NaN or infinite: no optimizer survives lr=inf."""
    for field in dataclasses.fields(cfg):
        value = getattr(cfg, field.name)
        for item in value if isinstance(value, tuple) else (value,):
            if isinstance(item, float) and not math.isfinite(item):
                raise ConfigError(field.name, value, "must be a finite number")


def field_types(cls: type) -> dict[str, Any]:
    """Resolved annotations of a dataclass (works with `from __future__ import annotations`)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def parse_value(text: str, annotation: Any, key: str) -> Any:
    """Turn a command-line string into the field's type, or say which key was wrong."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if text.lower() in ("none", "null") and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)] or [str]
        return parse_value(text, inner, key)
    if origin is tuple:
        parts = [p.strip() for p in text.split(",") if p.strip()]
        inner = args[0] if args else str
        return tuple(parse_value(p, inner, key) for p in parts)
    try:
        if annotation is bool:
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if annotation is int:
            return int(text)
        if annotation is float:
            return float(text)
    except ValueError:
        raise UserError(f"--set {key}={text}: expected {annotation.__name__}") from None
    return text


def split_assignments(pairs: list[str]) -> dict[str, str]:
    """['lr=1e-3', 'ngf=32'] -> {'lr': '1e-3', 'ngf': '32'}."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set expects key=value, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


@dataclass
class Resolved:
    """A fully resolved run configuration, as written to config.json."""

    architecture: str
    preset: str | None
    overrides: dict[str, Any]
    config: Any  # the architecture's Config instance
    train: TrainOptions
    data: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "architecture": self.architecture,
            "preset": self.preset,
            "overrides": dict(self.overrides),
            "data": self.data,
            "config": dataclasses.asdict(self.config),
            "train": dataclasses.asdict(self.train),
        }


def _unknown_key(key: str, valid: list[str]) -> UserError:
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return UserError(f"unknown config key {key!r}{hint}; valid keys: {', '.join(sorted(valid))}")


def apply_overrides(arch, cfg, opts: TrainOptions, values: Mapping[str, Any]) -> tuple[Any, TrainOptions]:
    """Apply parsed or raw-string values to the right dataclass; unknown keys list the valid ones."""
    arch_types, train_types = field_types(arch.Config), field_types(TrainOptions)
    arch_values, train_values = {}, {}
    for key, value in values.items():
        if key in arch_types:
            target, annotation = arch_values, arch_types[key]
        elif key in train_types:
            target, annotation = train_values, train_types[key]
        else:
            raise _unknown_key(key, list(arch_types) + list(train_types))
        target[key] = parse_value(value, annotation, key) if isinstance(value, str) else value
    return dataclasses.replace(cfg, **arch_values), dataclasses.replace(opts, **train_values)


def presets(arch) -> dict[str, Mapping[str, Any]]:
    """The architecture's presets, and its smoke config as the preset "smoke"."""
    return {**arch.presets, SMOKE_PRESET: arch.smoke}


def choose_preset(arch, preset: str | None, data: str | None) -> str | None:
    """An explicit preset, else one named like the dataset (the embedded data when --data is absent)."""
    available = presets(arch)
    if preset is not None:
        if preset not in available:
            raise UserError(f"unknown preset {preset!r} for {arch.name}; presets: {', '.join(sorted(available))}")
        return preset
    dataset_name = data or DEFAULT_DATASET
    return dataset_name if dataset_name in arch.presets else None


def validate(arch, cfg, origin=None, opts: TrainOptions | None = None) -> None:
    """The architecture's own checks (``Architecture.validate``) and the contract's, then the trainer's.

    The contract's: a positive integer batch size, and every float finite.
    ``origin(key)`` says where a bad value came from ("--set", "preset x", a
    file); the error names the architecture, the key, the value and what is allowed.
    """
    try:
        if not (isinstance(cfg.batch_size, int) and cfg.batch_size >= 1):
            raise ConfigError("batch_size", cfg.batch_size, "must be a positive integer")
        _check_finite(cfg)
        arch.validate(cfg)
        if opts is not None:
            _check_finite(opts)
            _check_train_options(opts)
        _check_resolution(arch, cfg)
    except ConfigError as exc:
        where = f" (from {origin(exc.key)})" if origin and origin(exc.key) else ""
        raise UserError(f"invalid {arch.name} config: {exc}{where}") from None


def resolve(arch, *, preset: str | None = None, data: str | None = None,
            sets: Mapping[str, Any] | None = None, flags: Mapping[str, Any] | None = None) -> Resolved:
    """Defaults, then preset, then --set values, then explicit CLI flags; validated."""
    overlap = set(field_types(arch.Config)) & set(field_types(TrainOptions))
    if overlap:
        raise UserError(f"{arch.name}: Config fields clash with trainer options: {', '.join(sorted(overlap))}")
    chosen = choose_preset(arch, preset, data)
    cfg, opts = arch.Config(), TrainOptions()
    preset_values = presets(arch)[chosen] if chosen else {}
    cfg, opts = apply_overrides(arch, cfg, opts, preset_values)
    sets, flags = dict(sets or {}), {k: v for k, v in (flags or {}).items() if v is not None}
    overrides = {**sets, **flags}
    cfg, opts = apply_overrides(arch, cfg, opts, overrides)

    def origin(key: str) -> str:
        if key in flags:
            return f"--{key.replace('_', '-')}"
        if key in sets:
            return "--set"
        return f"preset {chosen}" if key in preset_values else "the default"

    validate(arch, cfg, origin, opts)
    recorded = {k: getattr(cfg, k, getattr(opts, k, None)) for k in overrides}
    return Resolved(arch.name, chosen, recorded, cfg, opts, data)


def from_dict(arch, record: Mapping[str, Any], origin: str = "config.json") -> Resolved:
    """Rebuild a Resolved from config.json; unknown keys (from a newer plugin), wrong types and bad values are errors.

    Values must already have their field's JSON type (a string where an int
    belongs is a damaged file, not something to parse); errors name ``origin``.
    """
    sections = {}
    for section, cls in (("config", arch.Config), ("train", TrainOptions)):
        values = record.get(section, {})
        if not isinstance(values, dict):
            raise UserError(f"{origin}: {section!r} must be an object of key: value, got {type(values).__name__}")
        types_ = field_types(cls)
        sections[section] = {k: _from_json(v, types_[k], k, origin) if k in types_ else v for k, v in values.items()}
    try:
        cfg, opts = apply_overrides(arch, arch.Config(), TrainOptions(), {**sections["config"], **sections["train"]})
        validate(arch, cfg, None, opts)
    except UserError as exc:  # an unknown key or a value the architecture or trainer cannot use
        raise UserError(f"{origin}: {exc}") from None
    preset, data, overrides = record.get("preset"), record.get("data"), record.get("overrides") or {}
    for key, value, ok in (("preset", preset, preset is None or isinstance(preset, str)),
                           ("data", data, data is None or isinstance(data, str)),
                           ("overrides", overrides, isinstance(overrides, dict))):
        if not ok:
            raise UserError(f"{origin}: {key!r} has the wrong type ({type(value).__name__}: {value!r})")
    return Resolved(record["architecture"], preset, dict(overrides), cfg, opts, data)


def _from_json(value: Any, annotation: Any, key: str, origin: str) -> Any:
    """A JSON value checked against a field's type (ints may stand for floats; lists for tuples)."""
    origin_type, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin_type in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)] or [str]
        return _from_json(value, inner, key, origin)
    if origin_type is tuple:
        if isinstance(value, list):
            inner = args[0] if args else str
            return tuple(_from_json(v, inner, key, origin) for v in value)
    elif annotation is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    elif annotation is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif annotation in (bool, str) and isinstance(value, annotation):
        return value
    elif annotation not in (int, float, bool, str):
        return value
    name = getattr(annotation, "__name__", str(annotation))
    raise UserError(f"{origin}: {key!r} must be {'a list' if origin_type is tuple else name}, got {value!r}")
