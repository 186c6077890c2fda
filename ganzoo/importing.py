"""`ganzoo import`: a reference repository's checkpoint files become a run directory.

The architecture reads the files (``Architecture.import_checkpoint``: names,
shapes, the Config values they determine); the core resolves the config, builds
the networks, loads the imported tensors strictly (every ganzoo tensor filled,
every given tensor used, shapes checked) and writes the run directory:
config.json with an ``imported`` record (source format, each file's sha256, the
roles the files held) and ``checkpoints/step-0000000/networks.safetensors``, a
weights-only checkpoint. Nothing is written until everything has been read and
checked; the folder appears whole (renamed into place) or not at all.

Config precedence: the defaults, then ``--preset``, then ``--set``, then what
the files determine. A ``--set`` of a key the files determine must agree with
them; one that contradicts them is refused naming both.

A conditional network (the architecture's ``class_count_key`` above 0 once
resolved) may be given its class names (``--classes``, a catalog entry's): one
per class, recorded as config.json's ``classes``; without them the run's classes
are "0".."N-1" (``ganzoo.rundir.run_classes``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterable

from . import registry
from .config import Resolved, TrainOptions, apply_overrides, choose_preset, presets, split_assignments, validate
from .errors import UserError
from .fileio import sha256_of, write_json
from .rundir import CLASSES


def import_run(arch_name: str, files: Iterable[Path], out: Path, preset: str | None = None,
               sets: Iterable[str] = (), classes: Iterable[str] | None = None, classes_from: str = "--classes"
               ) -> Path:
    """Read ``files`` through ``arch_name``'s importer and write the run directory ``out``; returns it.

    ``classes``: the class names of a conditional network, by label (``classes_from`` says where they come from
    in the error that refuses a wrong count)."""
    import torch

    from . import __version__
    from .train.checkpoint import NETWORKS, WEIGHTS_ONLY, flatten_networks, load_strict

    arch, entry = registry.get_with_entry(arch_name)
    files = [Path(f) for f in files]
    out = Path(out)
    check_out(out)
    for path in files:
        if not path.is_file():
            raise UserError(f"no such file: {path}" if not path.exists() else f"{path} is not a file")
    imported = arch.import_checkpoint(files)
    resolved = _resolve(arch, preset, split_assignments(list(sets)), imported.overrides, files)
    classes = _check_classes(arch, resolved.config, classes, classes_from, files)
    nets = arch.build(resolved.config)
    chosen = {}
    for role in sorted(imported.networks):
        base = role[:-len("_ema")] if role.endswith("_ema") else role
        if base not in nets:
            raise UserError(f"{arch.name} has no network {base!r} for the imported {role!r} "
                            f"(its networks: {', '.join(nets)})")
        module = nets[base] if role == base else _copy(nets[base])
        load_strict(module, imported.networks[role], role, ", ".join(p.name for p in files),
                    f"the {role} built from their config")
        chosen[role] = module
    if not any(role in imported.networks or f"{role}_ema" in imported.networks
               for role in (g.role for g in arch.generators(resolved.config).values())):
        raise UserError(f"{', '.join(map(str, files))}: no generator among the imported networks "
                        f"({', '.join(imported.networks) or 'none'}); nothing could sample from them")
    record = {"ganzoo_version": __version__,
              "plugin": {"distribution": entry.distribution, "version": entry.version, "entry_point": entry.value},
              **resolved.to_dict(),
              "imported": {"source": imported.source,
                           "files": {path.name: {"sha256": sha256_of(path), "holds": imported.files.get(path.name, "")}
                                     for path in files},
                           "roles": sorted({r[:-len("_ema")] if r.endswith("_ema") else r for r in chosen})}}
    if classes is not None:
        record[CLASSES] = classes
    with torch.no_grad():
        tensors = flatten_networks(chosen)
    _write(out, record, tensors, NETWORKS, WEIGHTS_ONLY)
    return out


def _check_classes(arch, cfg, classes, classes_from: str, files: list[Path]) -> list[str] | None:
    """The class names as config.json records them: one per class the files determine, distinct; else refused."""
    if classes is None:
        return None
    names = [str(name) for name in classes]
    count = arch.num_classes(cfg)
    where = ", ".join(p.name for p in files)
    if count == 0:
        raise UserError(f"{classes_from} names {len(names)} classes, but {where} holds an unconditional network "
                        f"({arch.class_count_key or 'no class count'}=0): leave the class names out")
    if len(names) != count or not all(n.strip() for n in names) or len(set(names)) != len(names):
        raise UserError(f"{classes_from} must name the {count} classes of {where} ({arch.class_count_key}={count}) "
                        f"once each, in label order; got {len(names)}: {', '.join(names)}")
    return names


def _resolve(arch, preset, sets: dict[str, str], determined: dict, files: list[Path]) -> Resolved:
    """Defaults < preset < --set < the files; a --set that contradicts the files is refused naming both."""
    chosen = choose_preset(arch, preset, None) if preset is not None else None  # no dataset's preset: no data
    cfg, opts = apply_overrides(arch, arch.Config(), TrainOptions(), presets(arch)[chosen] if chosen else {})
    parsed, _ = apply_overrides(arch, arch.Config(), TrainOptions(), {k: v for k, v in sets.items()
                                                                      if hasattr(arch.Config(), k)})
    for key, value in determined.items():
        if key in sets and getattr(parsed, key) != value:
            raise UserError(f"--set {key}={sets[key]} contradicts {', '.join(p.name for p in files)}, which "
                            f"determine {key}={value!r}")
    cfg, opts = apply_overrides(arch, cfg, opts, {**sets, **determined})

    def origin(key: str) -> str:
        if key in determined:
            return "the imported files"
        return "--set" if key in sets else (f"preset {chosen}" if chosen else "the default")

    validate(arch, cfg, origin, opts)
    recorded = {k: getattr(cfg, k, getattr(opts, k, None)) for k in {**sets, **determined}}
    return Resolved(arch.name, chosen, recorded, cfg, opts, None)


def check_out(out: Path) -> None:
    """The new run directory: a path that does not exist or an empty folder, and not inside another run
    (whose commands would find it among their own folders). Checked before anything is read or downloaded."""
    from .outputs import refuse_inside_run

    out = Path(out)
    refuse_inside_run(out)
    if os.path.islink(out):
        raise UserError(f"{out} is a link; ganzoo import makes a new run directory: pick another --out")
    if os.path.lexists(out) and not (out.is_dir() and not any(out.iterdir())):
        raise UserError(f"{out} already exists; ganzoo import makes a new run directory: pick another --out")


def _write(out: Path, record: dict, tensors: dict, networks_name: str, metadata: dict) -> None:
    """config.json and the weights-only checkpoint in a hidden sibling folder, renamed into place."""
    from safetensors.torch import save_file

    tmp = out.parent / f".{out.name}.import-{os.getpid()}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        step = tmp / "checkpoints" / "step-0000000"
        step.mkdir(parents=True)
        save_file(tensors, str(step / networks_name), metadata=dict(metadata))
        write_json(tmp / "config.json", record)
        if out.is_dir():
            out.rmdir()  # empty: checked before anything was read
        os.replace(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None


def _copy(module):
    import copy

    return copy.deepcopy(module)
