"""NVlabs/stylegan2-ada-pytorch network pickles (``network-snapshot-*.pkl``, NVIDIA's ``ffhq.pkl``...) -> StyleGAN-lite.

Such a pickle is ``pickle.dump({'G', 'D', 'G_ema', 'augment_pipe',
'training_set_kwargs'})`` (``training/training_loop.py``). Each network is a
``@persistence.persistent_class`` object, pickled by
``torch_utils/persistence.py`` as ``_reconstruct_persistent_obj(meta)`` where
``meta`` holds the source code of the class's whole module, the class name and
the object's ``__dict__`` (``_init_args``/``_init_kwargs``, ``_parameters``,
``_buffers``, ``_modules``...). The reference ``exec``s that source to rebuild
the class; here ``ganzoo.safe_pickle`` resolves only the tensor-rebuilding
globals, NumPy scalars, ``dnnlib.util.EasyDict`` (a dict) and the persistence
hook, which becomes :class:`PersistentRecord`: the source stays a string that
nothing runs. The init kwargs give StyleGAN-lite's Config (a conditional
pickle's ``c_dim``, D's ``architecture`` and label mapping included); the parameters and
buffers are renamed by an explicit table (``training/networks.py``'s names ->
StyleGAN-lite's) and copied as they are: StyleGAN-lite's layers compute the
reference's function for the same stored weights (docs/import.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ganzoo.errors import UserError

from . import D_ARCHITECTURES  # the reference's 'skip' D (fromrgb at every block) is not built

SOURCE = "stylegan2-ada-pytorch"
NETWORK_KEYS = ("G", "D", "G_ema")


@dataclass
class PersistentRecord:
    """What ``torch_utils.persistence._reconstruct_persistent_obj(meta)`` would have built, as data.

    ``module_src`` is the pickled module's source code, kept as text and never run.
    """

    class_name: str
    module_src: str
    version: Any
    state: dict = field(repr=False)

    @property
    def init_kwargs(self) -> dict:
        return self.state.get("_init_kwargs") or {}


def _record(meta) -> PersistentRecord:
    """The stand-in for ``_reconstruct_persistent_obj``: checks ``meta`` is a class record and keeps it."""
    if not isinstance(meta, dict):
        raise UserError(f"a persistence record holds a {type(meta).__name__}, not a dict")
    if meta.get("type") != "class" or not isinstance(meta.get("class_name"), str):
        raise UserError(f"a persistence record of type {meta.get('type')!r} is not a class record")
    state = meta.get("state")
    if not isinstance(state, dict):
        raise UserError(f"the persistence record of {meta['class_name']} holds no state dict")
    return PersistentRecord(meta["class_name"], str(meta.get("module_src", "")), meta.get("version"), state)


class EasyDict(dict):
    """``dnnlib.util.EasyDict`` (a dict with attribute access) read as a plain dict; it nests init kwargs."""


def allowed_globals() -> dict:
    from ganzoo.safe_pickle import NUMPY_SCALAR_GLOBALS, SET_GLOBALS, TENSOR_GLOBALS

    return {**TENSOR_GLOBALS, **NUMPY_SCALAR_GLOBALS, **SET_GLOBALS,
            ("torch_utils.persistence", "_reconstruct_persistent_obj"): _record,
            ("dnnlib.util", "EasyDict"): EasyDict}


def read_network_pickle(path: Path) -> dict:
    """The pickle's top-level dict, networks as :class:`PersistentRecord`; nothing in it is run."""
    from ganzoo.safe_pickle import restricted_unpickle

    data = restricted_unpickle(path, allowed_globals(), expects="a stylegan2-ada-pytorch network pickle")
    if not isinstance(data, dict):
        raise UserError(f"{path}: holds a {type(data).__name__}, expected a stylegan2-ada-pytorch network pickle "
                        "(a dict with G, D, G_ema)")
    return data


def flat_tensors(record: PersistentRecord, where: str) -> dict:
    """``module.state_dict()`` of a record tree: parameters and persistent buffers by dotted name."""
    import torch

    out: dict = {}

    def walk(rec, prefix):
        state = rec.state if isinstance(rec, PersistentRecord) else None
        if state is None:
            raise UserError(f"{where}: {prefix.rstrip('.') or 'the network'} is a {type(rec).__name__}, not a "
                            "persistent module")
        skip = state.get("_non_persistent_buffers_set") or set()
        for kind in ("_parameters", "_buffers"):
            for name, value in (state.get(kind) or {}).items():
                if value is None or (kind == "_buffers" and name in skip):
                    continue
                if not torch.is_tensor(value):
                    raise UserError(f"{where}: {prefix}{name} is a {type(value).__name__}, not a tensor")
                out[prefix + name] = value
        for name, child in (state.get("_modules") or {}).items():
            if child is not None:
                walk(child, f"{prefix}{name}.")

    walk(record, "")
    return out


# --- init kwargs -> Config ----------------------------------------------------------------------------------------

FILTER = [1, 3, 3, 1]


def _get(kwargs, key, default):
    value = kwargs.get(key, default) if isinstance(kwargs, dict) else default
    return list(value) if isinstance(value, tuple) else value


def _unknown(kwargs, known, where, problems):
    extra = sorted(set(kwargs) - set(known)) if isinstance(kwargs, dict) else []
    if extra:
        problems.append(f"{where} has init arguments StyleGAN-lite does not know: {', '.join(extra)}")


def _expect(problems, where, key, value, wanted, why):
    if value != wanted:
        problems.append(f"{where}.{key} = {value!r} ({why}; StyleGAN-lite has {wanted!r})")


_G_KEYS = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs", "synthesis_kwargs")
_MAPPING_KEYS = ("num_layers", "embed_features", "layer_features", "activation", "lr_multiplier", "w_avg_beta")
_SYNTHESIS_KEYS = ("channel_base", "channel_max", "num_fp16_res", "conv_clamp", "architecture", "resample_filter",
                   "use_noise", "activation", "kernel_size", "fp16_channels_last")
_D_KEYS = ("c_dim", "img_resolution", "img_channels", "architecture", "channel_base", "channel_max", "num_fp16_res",
           "conv_clamp", "cmap_dim", "block_kwargs", "mapping_kwargs", "epilogue_kwargs")
_D_BLOCK_KEYS = ("activation", "resample_filter", "fp16_channels_last", "freeze_layers")
_D_MAPPING_KEYS = ("num_layers", "embed_features", "layer_features", "activation", "lr_multiplier")
_D_EPILOGUE_KEYS = ("mbstd_group_size", "mbstd_num_channels", "activation")


def _clamp(kwargs):
    """``conv_clamp`` as StyleGAN-lite's Config holds it: a float or None (a value it refuses stays as read)."""
    value = _get(kwargs, "conv_clamp", None)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def generator_overrides(kw: dict, where: str, problems: list[str]) -> dict:
    """StyleGAN-lite Config values from ``training/networks.py``'s ``Generator(**kwargs)``; refusals appended."""
    _unknown(kw, _G_KEYS, where, problems)
    mapping, synthesis = _get(kw, "mapping_kwargs", {}), _get(kw, "synthesis_kwargs", {})
    _unknown(mapping, _MAPPING_KEYS, f"{where}.mapping_kwargs", problems)
    _unknown(synthesis, _SYNTHESIS_KEYS, f"{where}.synthesis_kwargs", problems)
    c_dim = _get(kw, "c_dim", None)
    w_dim = _get(kw, "w_dim", None)
    m, s = f"{where}.mapping_kwargs", f"{where}.synthesis_kwargs"
    if _get(mapping, "layer_features", None) not in (None, w_dim):
        problems.append(f"{m}.layer_features = {mapping['layer_features']!r} (StyleGAN-lite's mapping layers are "
                        f"w_dim = {w_dim!r} wide)")
    if c_dim and _get(mapping, "embed_features", None) not in (None, w_dim):  # read by the reference when c_dim > 0
        problems.append(f"{m}.embed_features = {mapping['embed_features']!r} (StyleGAN-lite embeds labels in "
                        f"w_dim = {w_dim!r} features)")
    _expect(problems, m, "activation", _get(mapping, "activation", "lrelu"), "lrelu", "another activation")
    _expect(problems, m, "w_avg_beta", _get(mapping, "w_avg_beta", 0.995), 0.995, "another w_avg tracking")
    _expect(problems, s, "architecture", _get(synthesis, "architecture", "skip"), "skip", "another generator")
    _expect(problems, s, "resample_filter", _get(synthesis, "resample_filter", FILTER), FILTER, "another filter")
    _expect(problems, s, "use_noise", _get(synthesis, "use_noise", True), True, "noise inputs switched")
    _expect(problems, s, "activation", _get(synthesis, "activation", "lrelu"), "lrelu", "another activation")
    _expect(problems, s, "kernel_size", _get(synthesis, "kernel_size", 3), 3, "another kernel size")
    # num_fp16_res, fp16_channels_last: accepted, a precision detail (see docs/import.md).
    return {"resolution": _get(kw, "img_resolution", None), "channels": _get(kw, "img_channels", None),
            "c_dim": c_dim, "z_dim": _get(kw, "z_dim", None), "w_dim": w_dim,
            "mapping_layers": _get(mapping, "num_layers", 8),
            "mapping_lr_multiplier": _get(mapping, "lr_multiplier", 0.01),
            "channel_base": _get(synthesis, "channel_base", 32768), "channel_max": _get(synthesis, "channel_max", 512),
            "conv_clamp": _clamp(synthesis)}


def discriminator_overrides(kw: dict, where: str, problems: list[str]) -> dict:
    """Config values from ``Discriminator(**kwargs)``: image size, widths, minibatch std, architecture and the
    label mapping of a conditional one; refusals appended."""
    _unknown(kw, _D_KEYS, where, problems)
    block, epilogue = _get(kw, "block_kwargs", {}), _get(kw, "epilogue_kwargs", {})
    mapping = _get(kw, "mapping_kwargs", {})
    _unknown(block, _D_BLOCK_KEYS, f"{where}.block_kwargs", problems)
    _unknown(epilogue, _D_EPILOGUE_KEYS, f"{where}.epilogue_kwargs", problems)
    c_dim = _get(kw, "c_dim", None)
    b, e, m = f"{where}.block_kwargs", f"{where}.epilogue_kwargs", f"{where}.mapping_kwargs"
    architecture = _get(kw, "architecture", "resnet")
    if architecture not in D_ARCHITECTURES:
        problems.append(f"{where}.architecture = {architecture!r} (another discriminator; StyleGAN-lite has "
                        f"{' or '.join(map(repr, D_ARCHITECTURES))})")
    _expect(problems, b, "activation", _get(block, "activation", "lrelu"), "lrelu", "another activation")
    _expect(problems, b, "resample_filter", _get(block, "resample_filter", FILTER), FILTER, "another filter")
    _expect(problems, e, "activation", _get(epilogue, "activation", "lrelu"), "lrelu", "another activation")
    group = _get(epilogue, "mbstd_group_size", 4)
    if not (type(group) is int and group > 0):
        problems.append(f"{e}.mbstd_group_size = {group!r} (StyleGAN-lite's minibatch-std groups have a fixed "
                        "size; None, the whole batch, is not expressible)")
    # num_fp16_res, fp16_channels_last, freeze_layers: accepted (docs/import.md).
    found = {"resolution": _get(kw, "img_resolution", None), "channels": _get(kw, "img_channels", None),
             "c_dim": c_dim, "channel_base": _get(kw, "channel_base", 32768),
             "channel_max": _get(kw, "channel_max", 512), "conv_clamp": _clamp(kw), "mbstd_group": group,
             "mbstd_channels": _get(epilogue, "mbstd_num_channels", 1), "d_architecture": architecture}
    if c_dim:  # the reference builds D's mapping network (and reads cmap_dim, mapping_kwargs) only then
        _unknown(mapping, _D_MAPPING_KEYS, m, problems)
        base, top = found["channel_base"], found["channel_max"]
        cmap_dim = min(base // 4, top) if isinstance(base, int) and isinstance(top, int) else None
        if _get(kw, "cmap_dim", None) not in (None, cmap_dim):
            problems.append(f"{where}.cmap_dim = {kw['cmap_dim']!r} (StyleGAN-lite projects on the {cmap_dim} "
                            "feature maps at 4x4, the reference's default)")
        for key in ("embed_features", "layer_features"):
            if _get(mapping, key, None) not in (None, cmap_dim):
                problems.append(f"{m}.{key} = {mapping[key]!r} (StyleGAN-lite's label mapping is cmap_dim = "
                                f"{cmap_dim} wide)")
        _expect(problems, m, "activation", _get(mapping, "activation", "lrelu"), "lrelu", "another activation")
        layers = _get(mapping, "num_layers", 8)
        if layers:  # with no layers (TensorFlow-trained pickles: legacy.py writes 0 and 0.1) it reads no multiplier
            _expect(problems, m, "lr_multiplier", _get(mapping, "lr_multiplier", 0.01), 0.01,
                    "another learning-rate multiplier for D's label mapping")
        found["d_mapping_layers"] = layers
    return found


# --- the name table -----------------------------------------------------------------------------------------------


def _resolutions(resolution: int) -> list[int]:
    return [2**i for i in range(2, int(math.log2(resolution)) + 1)]


def mapping_table(c_dim: int, layers: int, w_avg: bool) -> dict[str, str]:
    """A mapping network's names: ``embed`` (conditional), ``fcN`` -> ``layers.N``, and G's ``w_avg``."""
    table = {"mapping.w_avg": "mapping.w_avg"} if w_avg else {}
    names = ["embed"] if c_dim > 0 else []
    table.update({f"mapping.{n}.{p}": f"mapping.{n}.{p}" for n in names for p in ("weight", "bias")})
    for i in range(layers):
        for p in ("weight", "bias"):
            table[f"mapping.fc{i}.{p}"] = f"mapping.layers.{i}.{p}"
    return table


def generator_table(resolution: int, mapping_layers: int, c_dim: int = 0) -> tuple[dict[str, str], list[str]]:
    """Reference name -> StyleGAN-lite name for every G tensor copied, and the filter buffers dropped."""
    table = mapping_table(c_dim, mapping_layers, w_avg=True)
    filters = []
    for res in _resolutions(resolution):
        ref, lite = f"synthesis.b{res}", f"synthesis.blocks.b{res}"
        filters.append(f"{ref}.resample_filter")
        names = ["const"] if res == 4 else []
        for conv in (["conv1"] if res == 4 else ["conv0", "conv1"]):
            names += [f"{conv}.{p}" for p in ("weight", "bias", "noise_strength", "noise_const", "affine.weight",
                                              "affine.bias")]
            filters.append(f"{ref}.{conv}.resample_filter")
        names += [f"torgb.{p}" for p in ("weight", "bias", "affine.weight", "affine.bias")]
        table.update({f"{ref}.{n}": f"{lite}.{n}" for n in names})
    return table, filters


def discriminator_table(resolution: int, c_dim: int = 0, mapping_layers: int = 8, architecture: str = "resnet"
                        ) -> tuple[dict[str, str], list[str]]:
    """Reference name -> StyleGAN-lite name for every D tensor copied, and the filter buffers dropped."""
    table, filters = {}, []
    for res in _resolutions(resolution)[:0:-1]:  # resolution ... 8
        ref, lite = f"b{res}", f"blocks.b{res}"
        layers = (["fromrgb"] if res == resolution else []) + ["conv0", "conv1"]
        for layer in layers:
            table.update({f"{ref}.{layer}.{p}": f"{lite}.{layer}.{p}" for p in ("weight", "bias")})
        if architecture == "resnet":
            table[f"{ref}.skip.weight"] = f"{lite}.skip.weight"
            layers = layers + ["skip"]
        filters += [f"{ref}.resample_filter"] + [f"{ref}.{layer}.resample_filter" for layer in layers]
    if c_dim > 0:
        table.update(mapping_table(c_dim, mapping_layers, w_avg=False))
    for layer, lite in (("conv", "conv"), ("fc", "fc"), ("out", "out")):
        table.update({f"b4.{layer}.{p}": f"{lite}.{p}" for p in ("weight", "bias")})
    filters.append("b4.conv.resample_filter")
    return table, filters


def reference_filter():
    """``upfirdn2d.setup_filter([1,3,3,1])``: the outer product, normalised to sum 1."""
    import torch

    taps = torch.tensor(FILTER, dtype=torch.float64)
    return torch.outer(taps, taps) / torch.outer(taps, taps).sum()


def map_tensors(source: dict, table: dict[str, str], filters: list[str], expected: dict, where: str) -> dict:
    """Every source tensor used once (copied or a checked filter), every StyleGAN-lite tensor filled, shapes equal.

    ``expected``: StyleGAN-lite's state dict (names -> tensors) whose shapes the copies must have.
    """
    import torch

    problems = []
    missing = [name for name in list(table) + filters if name not in source]
    unused = [name for name in source if name not in table and name not in filters]
    if missing:
        problems.append(f"missing {', '.join(missing)}")
    if unused:
        problems.append(f"tensors StyleGAN-lite has no place for: {', '.join(unused)}")
    unfilled = sorted(set(expected) - set(table.values()))
    if unfilled:  # a table error, not the file's: kept as a check of the table against the network
        problems.append(f"StyleGAN-lite tensors the table leaves empty: {', '.join(unfilled)}")
    out = {}
    for ref, lite in table.items():
        if ref not in source or lite not in expected:
            continue
        value, shape = source[ref], tuple(expected[lite].shape)
        if tuple(value.shape) != shape:
            problems.append(f"{ref} has shape {list(value.shape)}, StyleGAN-lite's {lite} needs {list(shape)}")
            continue
        out[lite] = value.detach().to(dtype=torch.float32, memory_format=torch.contiguous_format, copy=True)
    want = reference_filter()
    for name in filters:
        if name in source and not (source[name].shape == want.shape
                                   and torch.allclose(source[name].double(), want, rtol=0, atol=1e-7)):
            problems.append(f"{name} is not the [1,3,3,1] filter StyleGAN-lite uses")
    if problems:
        raise UserError(f"{where}: " + "; ".join(problems))
    return out


# Config values every pickle determines but that only a conditional network or an 'orig' D records.
UNCONDITIONAL_RESNET = {"c_dim": 0, "d_architecture": "resnet"}


# --- the whole import ---------------------------------------------------------------------------------------------


def import_pickle(arch, files: list[Path]):
    """``StyleGANLite.import_checkpoint``: one network pickle -> Imported (G, G_ema, D as the pickle holds them)."""
    from ganzoo.api import ConfigError, Imported

    if len(files) != 1:
        raise UserError(f"stylegan-lite imports one stylegan2-ada-pytorch network pickle (.pkl), got {len(files)} "
                        "files")
    path = Path(files[0])
    data = read_network_pickle(path)
    present = [k for k in NETWORK_KEYS if k in data]
    if "G" not in present and "G_ema" not in present:
        raise UserError(f"{path}: no generator (keys: {', '.join(map(str, data)) or 'none'}); a stylegan2-ada-pytorch "
                        "network pickle holds G, D and G_ema")
    expected_class = {"G": "Generator", "G_ema": "Generator", "D": "Discriminator"}
    problems: list[str] = []
    for key in present:
        rec = data[key]
        if not isinstance(rec, PersistentRecord) or rec.class_name != expected_class[key]:
            what = rec.class_name if isinstance(rec, PersistentRecord) else type(rec).__name__
            raise UserError(f"{path}: {key} is a {what}, expected stylegan2-ada-pytorch's {expected_class[key]}")
        if rec.state.get("_init_args"):
            problems.append(f"{key} was built with positional arguments, which are not read")
    overrides: dict = {}
    for key in present:
        kw = data[key].init_kwargs
        found = (generator_overrides if key != "D" else discriminator_overrides)(kw, key, problems)
        for name, value in found.items():
            if name in overrides and overrides[name] != value:
                problems.append(f"{key} has {name} {value!r} where another network has {overrides[name]!r}")
            overrides.setdefault(name, value)
    for name, default in UNCONDITIONAL_RESNET.items():  # checked for agreement above; an unconditional pickle
        if overrides.get(name) == default:  # with a residual D records what it always did
            del overrides[name]
    if not problems:
        try:
            arch.validate(arch.make_config(overrides))
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise UserError(f"{path}: StyleGAN-lite cannot express this network: " + "; ".join(problems))

    cfg = arch.make_config(overrides)
    nets = arch.build(cfg)
    networks, mismatches = {}, []
    for key in present:  # every network checked before one error lists them all
        role = "D" if key == "D" else "G"
        if role == "G":
            table, filters = generator_table(cfg.resolution, cfg.mapping_layers, cfg.c_dim)
        else:
            table, filters = discriminator_table(cfg.resolution, cfg.c_dim, cfg.d_mapping_layers,
                                                 cfg.d_architecture)
        try:
            source = flat_tensors(data[key], key)
            networks[key] = map_tensors(source, table, filters, nets[role].state_dict(), key)
        except UserError as exc:
            mismatches.append(str(exc))
    if mismatches:
        raise UserError(f"{path}: tensors do not match StyleGAN-lite's: " + "; ".join(mismatches))
    ignored = [str(k) for k in data if k not in NETWORK_KEYS]
    conditional = f", conditional on {cfg.c_dim} classes" if cfg.c_dim else ""
    d_kind = f", {cfg.d_architecture} D" if "D" in present else ""
    note = (f"stylegan2-ada-pytorch network pickle: {', '.join(present)} ({cfg.resolution}x{cfg.resolution}, "
            f"{cfg.channels} channels, z {cfg.z_dim}, w {cfg.w_dim}, {cfg.mapping_layers} mapping layers"
            f"{d_kind}{conditional})")
    if ignored:
        note += f"; not imported: {', '.join(ignored)}"
    numerics = _numerics(data, present)
    if numerics:
        note += f"; {numerics}"
    return Imported(overrides=overrides, networks=networks, source=SOURCE, files={path.name: note})


def _numerics(data: dict, present: list[str]) -> str:
    """What the reference ran otherwise for the same weights (its fp16 blocks), said in config.json.

    Its conv_clamp is no longer among them: StyleGAN-lite applies it (Config.conv_clamp)."""
    found = set()
    for key in present:
        kw = data[key].init_kwargs
        inner = _get(kw, "synthesis_kwargs", {}) if key != "D" else kw
        if _get(inner, "num_fp16_res", 0):
            found.add(f"fp16 layers ({inner['num_fp16_res']} resolutions) computed in the run's precision")
    return ", ".join(sorted(found))


__all__ = ["PersistentRecord", "read_network_pickle", "flat_tensors", "generator_table", "discriminator_table",
           "map_tensors", "import_pickle", "allowed_globals"]
