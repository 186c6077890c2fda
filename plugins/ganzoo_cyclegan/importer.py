"""Reading junyanz/pytorch-CycleGAN-and-pix2pix checkpoints (`ganzoo import --arch cyclegan`).

The reference saves each network's ``state_dict()`` (``BaseModel.save_networks``):
``{epoch}_net_G_A.pth``, ``_net_G_B.pth``, ``_net_D_A.pth``, ``_net_D_B.pth``;
its published pretrained models (``horse2zebra.pth``...) are one such G_A file,
renamed. Roles: the reference's G_A maps A to B (ganzoo's G_AB), G_B maps B to
A (G_BA); its netD_A judges G_A's output, images of domain B
(``CycleGANModel.backward_D_A`` feeds it real_B and fake_B), so it is ganzoo's
D_B, and netD_B is ganzoo's D_A.

Name table (models/networks.py ``ResnetGenerator``, ``ResnetBlock``,
``NLayerDiscriminator``; ganzoo's networks.py builds the same nn.Sequential
layer for layer, so the indices agree, as tests/test_import.py shows):

- generator: ``model.N.weight|bias`` -> ``model.N.weight|bias`` (stem conv N=1,
  down-sampling convs 4 and 7, up-sampling transposed convs 10+n and 13+n, last
  conv 17+n for n residual blocks); ``model.(10+i).conv_block.{1,5}.weight|bias``
  -> ``model.(10+i).block.{1,5}.weight|bias``;
- discriminator: ``model.N.weight|bias`` -> the same names (convs at 0, 2, 5, 8, ..., the last).

Read from shapes: channels and ngf (the stem conv), n_blocks (the count of
residual blocks), ndf (the first D conv) and n_layers_d (the count of D convs
less 2). The instance-norm statistics that checkpoints from before October 2018
carry (``running_mean``, ``running_var``, ``num_batches_tracked`` of a layer that
is an InstanceNorm2d in ganzoo) are dropped, as the reference's
``BaseModel.__patch_instance_norm_state_dict`` drops them.
"""

from __future__ import annotations

import re
from pathlib import Path

from ganzoo.api import Imported
from ganzoo.errors import UserError

SOURCE = "pytorch-CycleGAN-and-pix2pix"
# The reference's file suffix -> ganzoo's role (see the module docstring for why D_A is D_B).
SUFFIXES = {"net_G_A": "G_AB", "net_G_B": "G_BA", "net_D_A": "D_B", "net_D_B": "D_A", "net_G": "G_AB"}
STALE_STATS = ("running_mean", "running_var", "num_batches_tracked")
EXPECTS = "a state dict of the reference's ResnetGenerator or NLayerDiscriminator (model.N... keys)"
_BLOCK = re.compile(r"^model\.(\d+)\.conv_block\.(\d+)\.(.+)$")


def import_checkpoint(files: list[Path]) -> Imported:
    from ganzoo.safe_load import load_state_dict

    networks: dict[str, dict] = {}
    origin: dict[str, Path] = {}
    overrides: dict = {}
    holds: dict[str, str] = {}
    for path in files:
        state = load_state_dict(path, EXPECTS)
        role = _role(path, state)
        if role in networks:
            raise UserError(f"{path} and {origin[role]} both hold the reference's "
                            f"{_reference_name(role)} (ganzoo's {role}); give one")
        tensors, found = (_generator if role.startswith("G") else _discriminator)(state, path)
        for key, value in found.items():
            if key in overrides and overrides[key] != value:
                raise UserError(f"{path} has {key}={value}, but {origin[overrides['_from_' + key]]} has "
                                f"{key}={overrides[key]}: the networks of one model share it")
            overrides.setdefault(key, value)
            overrides.setdefault("_from_" + key, role)
        networks[role], origin[role] = tensors, path
        holds[path.name] = f"the reference's {_reference_name(role)} as {role}"
    overrides = {k: v for k, v in overrides.items() if not k.startswith("_from_")}
    return Imported(overrides=overrides, networks=networks, source=SOURCE, files=holds)


def _reference_name(role: str) -> str:
    return {"G_AB": "G_A", "G_BA": "G_B", "D_B": "D_A", "D_A": "D_B"}[role]


def _role(path: Path, state: dict) -> str:
    """By the reference's file suffix; a file named otherwise (horse2zebra.pth) must hold a generator: G_A."""
    stem = path.name.removesuffix(".pth").removesuffix(".pt")
    for suffix, role in SUFFIXES.items():
        if stem == suffix or stem.endswith("_" + suffix):
            return role
    if any(_BLOCK.match(k) for k in state):
        return "G_AB"  # the published single-generator files are the reference's G_A (A -> B)
    raise UserError(f"{path}: cannot tell which network this is; name it like the reference saves it "
                    "(..._net_G_A.pth, _net_G_B.pth, _net_D_A.pth, _net_D_B.pth) or give a generator file")


def _conv(state: dict, key: str, path: Path, what: str):
    if key not in state or state[key].dim() != 4:
        raise UserError(f"{path}: no 4-d tensor {key!r} ({what}); expected {EXPECTS}")
    return state[key]


def _generator(state: dict, path: Path) -> tuple[dict, dict]:
    from .networks import ResnetGenerator

    stem = _conv(state, "model.1.weight", path, "the generator's 7x7 stem convolution")
    ngf, channels = int(stem.shape[0]), int(stem.shape[1])
    blocks = sorted({int(m.group(1)) for k in state if (m := _BLOCK.match(k))})
    n_blocks = len(blocks)
    if blocks != list(range(10, 10 + n_blocks)):
        raise UserError(f"{path}: residual blocks at model.{blocks} rather than model.10 onwards: not the "
                        "reference's ResnetGenerator")
    if any((m := _BLOCK.match(k)) and m.group(2) == "6" and m.group(3) == "weight" for k in state):
        raise UserError(f"{path}: residual blocks with dropout (conv_block.6); ganzoo's CycleGAN has none "
                        "(the reference's default --no_dropout)")
    last = f"model.{17 + n_blocks}.weight"
    out_channels = int(_conv(state, last, path, "the generator's last convolution").shape[0])
    if out_channels != channels:
        raise UserError(f"{path}: {channels} input and {out_channels} output channels ({last}); ganzoo's CycleGAN "
                        "translates between domains with the same channels")
    reference = ResnetGenerator(channels, ngf, n_blocks)

    def rename(key: str) -> str:
        m = _BLOCK.match(key)
        return f"model.{m.group(1)}.block.{m.group(2)}.{m.group(3)}" if m else key

    return _without_stale_stats({rename(k): v for k, v in state.items()}, reference), \
        {"channels": channels, "ngf": ngf, "n_blocks": n_blocks}


def _discriminator(state: dict, path: Path) -> tuple[dict, dict]:
    from .networks import NLayerDiscriminator

    first = _conv(state, "model.0.weight", path, "the discriminator's first convolution")
    convs = sorted(int(k.split(".")[1]) for k in state if re.match(r"^model\.\d+\.weight$", k) and state[k].dim() == 4)
    n_layers = len(convs) - 2
    expected = [0] + [2 + 3 * i for i in range(n_layers + 1)]
    if n_layers < 1 or convs != expected:
        raise UserError(f"{path}: convolutions at model.{convs}: not the reference's NLayerDiscriminator "
                        "(n_layers 1 or more, --netD basic or n_layers)")
    ndf, channels = int(first.shape[0]), int(first.shape[1])
    reference = NLayerDiscriminator(channels, ndf, n_layers)
    return _without_stale_stats(dict(state), reference), {"channels": channels, "ndf": ndf, "n_layers_d": n_layers}


def _without_stale_stats(state: dict, net) -> dict:
    """Drop running statistics of layers that are InstanceNorm2d (as the reference's own loader patches them)."""
    from torch import nn

    norms = {name for name, m in net.named_modules() if isinstance(m, nn.InstanceNorm2d)}
    return {k: v for k, v in state.items() if not (k.rpartition(".")[0] in norms and k.rpartition(".")[2] in STALE_STATS)}
