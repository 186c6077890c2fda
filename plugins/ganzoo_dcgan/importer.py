"""Reading pytorch/examples DCGAN checkpoints (`ganzoo import --arch dcgan`).

pytorch/examples ``dcgan/main.py`` saves ``netG.state_dict()`` and
``netD.state_dict()`` as ``netG_epoch_N.pth`` / ``netD_epoch_N.pth``; its
``Generator`` and ``Discriminator`` are one ``nn.Sequential`` called ``main``.

Name table (ganzoo's networks.py keeps the reference's indices):

- G ``main.0.weight`` (nz, C, 4, 4), the transposed convolution of a 1x1 input
  -> ``main.0.linear.weight`` (C*16, nz): ganzoo's Project computes the same
  function as a matrix product, so the kernel is reshaped to (nz, C*16) and
  transposed (out[c, i, j] = sum_z z * W[z, c, i, j]);
- G ``main.N.*`` -> ``main.N.*`` for the batch norms (1, 4, 7...) and
  transposed convolutions (3, 6, 9...);
- D ``main.N.*`` -> ``main.N.*`` (convs 0, 2, 5, 8, ..., batch norms 3, 6...);
  the reference's final Sigmoid has no parameters and lives in ganzoo's loss,
  so reference D(x) = sigmoid(ganzoo D(x)).

Read from shapes: nz and the widths (ngf = the last hidden width of G, ndf the
first of D), channels, and the resolution (4 times 2 to the number of stride-2
layers). Batch norms saved by PyTorch before 0.4.1 lack
``num_batches_tracked``; it is filled with 0, as BatchNorm's own loader does.
"""

from __future__ import annotations

import re
from pathlib import Path

from ganzoo.api import Imported
from ganzoo.errors import UserError

SOURCE = "pytorch/examples dcgan"
EXPECTS = "a state dict of pytorch/examples dcgan's Generator or Discriminator (main.N... keys)"
_WEIGHT = re.compile(r"^main\.(\d+)\.weight$")


def import_checkpoint(files: list[Path]) -> Imported:
    from ganzoo.safe_load import load_state_dict

    networks, origin, overrides, holds = {}, {}, {}, {}
    for path in files:
        state = load_state_dict(path, EXPECTS)
        role = _role(path, state)
        if role in networks:
            raise UserError(f"{path} and {origin[role]} both hold a {role}; give one")
        tensors, found = (_generator if role == "G" else _discriminator)(state, path)
        widest = found.pop("max_channels")
        overrides["max_channels"] = max(overrides.get("max_channels", 1024), widest)  # G's and D's widest layer
        for key, value in found.items():
            if key in overrides and overrides[key] != value:
                raise UserError(f"{path} has {key}={value}, but {', '.join(map(str, origin.values()))} "
                                f"has {key}={overrides[key]}")
            overrides[key] = value
        networks[role], origin[role] = tensors, path
        holds[path.name] = f"pytorch/examples dcgan's net{role} as {role}"
    return Imported(overrides=overrides, networks=networks, source=SOURCE, files=holds)


def _role(path: Path, state: dict) -> str:
    name = path.name
    if name.startswith("netG"):
        return "G"
    if name.startswith("netD"):
        return "D"
    if "main.1.running_mean" in state:  # G's first layer is followed by a batch norm, D's by a LeakyReLU
        return "G"
    if "main.0.weight" in state:
        return "D"
    raise UserError(f"{path}: no main.0.weight; expected {EXPECTS}")


def _layers(state: dict) -> list[int]:
    return sorted(int(m.group(1)) for k in state if (m := _WEIGHT.match(k)) and state[k].dim() == 4)


def _with_batch_counts(state: dict) -> dict:
    import torch

    out = dict(state)
    for key in state:
        if key.endswith(".running_mean"):
            out.setdefault(key.removesuffix("running_mean") + "num_batches_tracked", torch.tensor(0))
    return out


def _generator(state: dict, path: Path) -> tuple[dict, dict]:
    convs = _layers(state)
    if not convs or convs[0] != 0 or convs != [0] + [3 * i for i in range(1, len(convs))]:
        raise UserError(f"{path}: transposed convolutions at main.{convs}; expected {EXPECTS}")
    first, last = state["main.0.weight"], state[f"main.{convs[-1]}.weight"]
    nz, width = int(first.shape[0]), int(first.shape[1])
    if tuple(first.shape[2:]) != (4, 4):
        raise UserError(f"{path}: main.0.weight is {tuple(first.shape)}, expected (nz, channels, 4, 4)")
    out = _with_batch_counts({k: v for k, v in state.items() if k != "main.0.weight"})
    out["main.0.linear.weight"] = first.reshape(nz, width * 16).t().contiguous()
    found = {"nz": nz, "channels": int(last.shape[1]), "ngf": int(last.shape[0]),
             "resolution": 4 * 2 ** (len(convs) - 1), "max_channels": width}
    return out, found


def _discriminator(state: dict, path: Path) -> tuple[dict, dict]:
    convs = _layers(state)
    if not convs or convs != [0] + [2 + 3 * i for i in range(len(convs) - 1)]:
        raise UserError(f"{path}: convolutions at main.{convs}; expected {EXPECTS}")
    first, last = state["main.0.weight"], state[f"main.{convs[-2]}.weight"]
    found = {"ndf": int(first.shape[0]), "channels": int(first.shape[1]),
             "resolution": 4 * 2 ** (len(convs) - 1), "max_channels": int(last.shape[0])}
    return _with_batch_counts(state), found
