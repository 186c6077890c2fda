"""ganzoo.safe_load.load_state_dict: only tensors come out of a file; anything else is one UserError, unrun."""

from __future__ import annotations

import os
import pickle
import zipfile
from collections import OrderedDict

import pytest
import torch
from torch import nn

from ganzoo.errors import UserError
from ganzoo.safe_load import load_state_dict


class _Marker:
    """A pickle whose reduce would create a file: proof that nothing was run is that the file is absent."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.system, (f"touch {self.path}",)


def _refused(path, *words):
    with pytest.raises(UserError) as info:
        load_state_dict(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    for word in words:
        assert word in message, message
    return message


def test_a_state_dict_loads_as_tensors(tmp_path):
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    torch.save(net.state_dict(), tmp_path / "net.pth")
    loaded = load_state_dict(tmp_path / "net.pth")
    assert list(loaded) == list(net.state_dict())
    assert all(torch.equal(loaded[k], v) for k, v in net.state_dict().items())


@pytest.mark.parametrize("legacy", [False, True])
def test_os_system_pickle_is_refused_unrun(tmp_path, legacy):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(1), "x": _Marker(marker)}, path, _use_new_zipfile_serialization=not legacy)
    _refused(path, "system", "nothing in the file was run")
    assert not marker.exists()


def test_a_plain_pickle_calling_os_system_is_refused_unrun(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps(_Marker(marker)))
    _refused(path, "system")
    assert not marker.exists()


def test_a_pickled_module_is_refused_naming_its_class(tmp_path):
    path = tmp_path / "model.pth"
    torch.save(nn.Sequential(nn.Linear(2, 2)), path)
    _refused(path, "torch.nn.modules.container.Sequential", "pickled module")


def test_an_unknown_global_is_refused_by_name(tmp_path):
    path = tmp_path / "odd.pth"
    torch.save({"w": torch.zeros(1), "f": zipfile.ZipInfo("x")}, path)
    _refused(path, "zipfile.ZipInfo")


@pytest.mark.parametrize("keep", [0, 10, 200, -50])
def test_truncated_and_garbage_files_are_refused(tmp_path, keep):
    whole = tmp_path / "whole.pth"
    torch.save(nn.Linear(8, 8).state_dict(), whole)
    data = whole.read_bytes()
    path = tmp_path / "cut.pth"
    path.write_bytes(data[:keep] if keep else b"")
    _refused(path)
    path.write_bytes(os.urandom(300))
    _refused(path, "not a readable PyTorch file")


def test_nested_checkpoints_are_not_guessed(tmp_path):
    path = tmp_path / "nested.pth"
    torch.save({"state_dict": nn.Linear(2, 2).state_dict(), "epoch": 3}, path)
    _refused(path, "nested dict under 'state_dict'")
    torch.save(OrderedDict(w=torch.zeros(1), epoch=3), path)
    _refused(path, "'epoch' holds a int")
    torch.save([torch.zeros(1)], path)
    _refused(path, "holds a list")
