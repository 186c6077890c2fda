"""The torch-free runtime: it runs where torch cannot be imported, and refuses external data outside its folder."""

from __future__ import annotations

import os
import subprocess
import sys

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from helpers import invoke
from onnx import TensorProto, helper

from ganzoo import config, registry
from ganzoo.errors import UserError
from ganzoo.export import export_generator
from ganzoo.runtime import load


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny DCGAN and a tiny CycleGAN generator exported to ONNX."""
    root = tmp_path_factory.mktemp("models")
    paths = {}
    for name in ("dcgan", "cyclegan"):
        arch = registry.get(name)
        cfg = config.resolve(arch, preset="smoke", flags={"device": "cpu"}).config
        torch.manual_seed(0)
        nets = arch.build(cfg)
        gen_name, spec = next(iter(arch.generators(cfg).items()))
        paths[name] = export_generator(arch, cfg, gen_name, spec, nets[spec.role], root / f"{name}.onnx",
                                       plugin={}, seed=0).path
    return paths


def blocked_env(tmp_path) -> dict:
    """An environment where ``import torch`` (and torchvision) raises ImportError."""
    for package in ("torch", "torchvision"):
        (tmp_path / "blocker" / package).mkdir(parents=True)
        (tmp_path / "blocker" / package / "__init__.py").write_text(
            f"raise ImportError('{package} is blocked: the runtime must not import it')\n")
    # the blocker first, then whatever PYTHONPATH names the code under test
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path / "blocker"),
                                                                      os.environ.get("PYTHONPATH")]))}


def run_python(code: str, env: dict, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=cwd)


def test_runtime_and_cli_work_where_torch_cannot_be_imported(exported, tmp_path):
    env = blocked_env(tmp_path)
    control = run_python("import ganzoo.export", env, tmp_path)
    assert control.returncode != 0 and "torch is blocked" in control.stderr  # the blocker works

    code = (f"import sys, numpy as np; from ganzoo.runtime import load; m = load({str(exported['dcgan'])!r}); "
            "np.save('runtime.npy', m.sample(6, seed=4)); "
            "assert not [k for k in sys.modules if k.split('.')[0] in ('torch', 'torchvision')]; print(m)")
    result = run_python(code, env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "dcgan/G" in result.stdout
    expected = load(exported["dcgan"]).sample(6, seed=4)
    assert np.array_equal(np.load(tmp_path / "runtime.npy"), expected)

    cli = [sys.executable, "-m", "ganzoo.cli"]
    sample = subprocess.run([*cli, "sample", exported["dcgan"], "--n", "6", "--seed", "4", "--out", "s.npz"],
                            capture_output=True, text=True, env=env, cwd=tmp_path)
    assert sample.returncode == 0, sample.stderr
    assert np.array_equal(np.load(tmp_path / "s.npz")["images"], expected.transpose(0, 2, 3, 1))

    from PIL import Image

    (tmp_path / "in").mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 41), dtype=np.uint8)).save(tmp_path / "in" / "x.png")
    translate = subprocess.run([*cli, "translate", exported["cyclegan"], "in", "--out", "out"],
                               capture_output=True, text=True, env=env, cwd=tmp_path)
    assert translate.returncode == 0, translate.stderr
    assert Image.open(tmp_path / "out" / "x.png").size == (32, 24)  # shorter side 24, both multiples of 4


def with_external_data(source, folder) -> onnx.ModelProto:
    """``source`` re-saved in ``folder`` as model.onnx + weights.bin (every tensor outside the file)."""
    folder.mkdir(parents=True, exist_ok=True)
    model = onnx.load(str(source))
    onnx.save_model(model, str(folder / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    return onnx.load(str(folder / "model.onnx"), load_external_data=False)


def relocate(model: onnx.ModelProto, location: str, path) -> None:
    """Write ``model`` to ``path`` with every external-data location replaced by ``location``."""
    for tensor in onnx.external_data_helper._get_all_tensors(model):
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    path.write_bytes(model.SerializeToString())


def test_every_torch_free_module_imports_where_torch_cannot(tmp_path):
    """ganzoo.runtime and the CLI modules that the torch-free sample/translate path runs through."""
    import ganzoo.runtime

    runtime = sorted(f"ganzoo.runtime.{p.stem}" for p in Path(ganzoo.runtime.__file__).parent.glob("*.py")
                     if p.stem != "__init__")
    assert {"ganzoo.runtime.model", "ganzoo.runtime.latents", "ganzoo.runtime.images", "ganzoo.runtime.translation",
            "ganzoo.runtime.image_files"} <= set(runtime)
    modules = ["ganzoo.runtime", *runtime, "ganzoo.api", "ganzoo.errors", "ganzoo.fileio", "ganzoo.marks",
               "ganzoo.outputs", "ganzoo.cli", "ganzoo.cli.sample", "ganzoo.cli.translate"]
    code = ("import importlib, sys\n"
            f"for name in {modules!r}:\n"
            "    importlib.import_module(name)\n"
            "assert not [k for k in sys.modules if k.split('.')[0] in ('torch', 'torchvision')]\n"
            "print('imported', len(sys.modules))")
    result = run_python(code, blocked_env(tmp_path), tmp_path)
    assert result.returncode == 0 and "imported" in result.stdout, result.stderr


def test_external_data_beside_the_model_loads(exported, tmp_path):
    model = with_external_data(exported["dcgan"], tmp_path / "ok")
    tensors = [t for t in onnx.external_data_helper._get_all_tensors(model)
               if t.data_location == TensorProto.EXTERNAL]
    assert len(tensors) >= 4
    assert np.array_equal(load(tmp_path / "ok" / "model.onnx").sample(3, seed=1), load(exported["dcgan"]).sample(3, seed=1))


# What ONNX Runtime (>= 1.25, the minimum ganzoo asks for) says when it refuses each location.
REFUSALS = {
    "dotdot": ("../weights.bin", "escapes model directory"),
    "nested-dotdot": ("sub/../../weights.bin", "escapes model directory"),
    "absolute": (None, "Absolute path not allowed"),
    "link": ("link.bin", "escapes model directory"),
    "linked-folder": ("shared/weights.bin", "escapes model directory"),
    "missing": ("nowhere.bin", "does not exist"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_external_data_outside_the_folder_is_refused(exported, tmp_path, case):
    """ONNX Runtime itself refuses these when it loads a model from a path; ganzoo shows it as one Error line."""
    model = with_external_data(exported["dcgan"], tmp_path / "models")
    folder = tmp_path / "models"
    secret = tmp_path / "weights.bin"
    os.replace(folder / "weights.bin", secret)  # the data now lies outside the model's folder
    (folder / "sub").mkdir()
    (folder / "link.bin").symlink_to(secret)
    (folder / "shared").symlink_to(tmp_path)
    location, reason = REFUSALS[case]
    location = location or str(secret)
    relocate(model, location, folder / "model.onnx")
    result = invoke("sample", folder / "model.onnx", "--n", "1", "--out", tmp_path / "s.png")
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 1 and len(errors) == 1, result.output
    assert errors[0].startswith(f"Error: cannot load {folder / 'model.onnx'}: External data path validation failed")
    assert reason in errors[0] and "Traceback" not in result.output, result.output
    assert not (tmp_path / "s.png").exists()


def test_external_data_of_a_constant_in_a_subgraph_is_refused_too(tmp_path):
    """A Constant inside an If branch keeps its value in a file outside the folder (ONNX's checker, inside ORT)."""
    (tmp_path / "model").mkdir()
    np.array([42.0], dtype=np.float32).tofile(tmp_path / "secret.bin")
    value = helper.make_tensor("hidden", TensorProto.FLOAT, [1], [0.0])
    value.ClearField("float_data")
    value.data_location = TensorProto.EXTERNAL
    entry = value.external_data.add()
    entry.key, entry.value = "location", "../secret.bin"
    branch = helper.make_graph([helper.make_node("Constant", [], ["c"], value=value)], "then", [],
                               [helper.make_tensor_value_info("c", TensorProto.FLOAT, [1])])
    other = helper.make_graph([helper.make_node("Constant", [], ["d"], value_float=1.0)], "else", [],
                              [helper.make_tensor_value_info("d", TensorProto.FLOAT, [1])])
    graph = helper.make_graph([helper.make_node("If", ["cond"], ["y"], then_branch=branch, else_branch=other)], "g",
                              [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "model" / "m.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(UserError, match=r"tensor name: hidden\) should be file inside .* '\.\./secret\.bin' points outside"):
        load(path)
