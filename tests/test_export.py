"""`ganzoo export` and the torch-free runtime, end to end from trained run directories."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from helpers import ganzoo, invoke
from PIL import Image

from ganzoo import registry
from ganzoo.export import export_generator, fold_batch_norms
from ganzoo.runtime import load

# Tiny configs of each built-in architecture, trained a few steps on the embedded data.
RUNS = {
    "dcgan": ["--set", "nz=16", "--set", "ngf=8", "--set", "ndf=8", "--steps", "3"],
    "stylegan-lite": ["--set", "z_dim=16", "--set", "w_dim=16", "--set", "mapping_layers=2", "--set",
                      "channel_base=256", "--set", "channel_max=16", "--steps", "3", "--batch-size", "4"],
    "cyclegan": ["--set", "ngf=8", "--set", "ndf=8", "--set", "n_blocks=2", "--steps", "2"],
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """name -> a trained run directory with its generators exported by the CLI."""
    root = tmp_path_factory.mktemp("runs")
    made = {}
    for name, args in RUNS.items():
        run_dir = root / name
        result = invoke("train", name, *args, "--device", "cpu", "--out", run_dir)
        assert result.exit_code == 0, result.output
        exported = invoke("export", run_dir)
        assert exported.exit_code == 0, exported.output
        made[name] = (run_dir, exported.output)
    return made


def npz(path):
    return np.load(path)["images"].astype(int)


@pytest.mark.parametrize("name", ["dcgan", "stylegan-lite"])
def test_samples_from_the_model_match_samples_from_the_run(runs, name, tmp_path):
    run_dir, output = runs[name]
    model = run_dir / "export" / f"{name}-G.onnx"
    assert "batch 1" in output and "batch 4" in output and str(model) in output
    extra = ["--truncation", "0.6"] if name == "stylegan-lite" else []
    assert invoke("sample", run_dir, "--n", "40", "--seed", "9", "--out", tmp_path / "t.npz", *extra).exit_code == 0
    result = invoke("sample", model, "--n", "40", "--seed", "9", "--out", tmp_path / "o.npz", *extra)
    assert result.exit_code == 0, result.output
    ours, theirs = npz(tmp_path / "o.npz"), npz(tmp_path / "t.npz")
    assert ours.shape == theirs.shape == (40, 32, 32, 1)
    assert np.abs(ours - theirs).max() <= 1 and (ours != theirs).mean() < 1e-3
    assert not np.array_equal(npz(tmp_path / "o.npz")[:20], npz(tmp_path / "o.npz")[20:])


def test_translations_from_the_model_match_the_run_at_any_size(runs, tmp_path):
    run_dir, output = runs["cyclegan"]
    assert "a2b:" in output and "b2a:" in output and "batch 4 at 32x40" in output
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (36, 52), dtype=np.uint8)).save(photos / "wide.png")
    Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(photos / "square.png")
    for direction in ("a2b", "b2a"):
        model = run_dir / "export" / f"cyclegan-{direction}.onnx"
        torch_out, onnx_out = tmp_path / f"t-{direction}", tmp_path / f"o-{direction}"
        assert invoke("translate", run_dir, photos, "--direction", direction, "--size", "0", "--out", torch_out).exit_code == 0
        result = invoke("translate", model, photos, "--size", "0", "--out", onnx_out)
        assert result.exit_code == 0, result.output
        for file in ("wide.png", "square.png"):
            a = np.asarray(Image.open(torch_out / file)).astype(int)
            b = np.asarray(Image.open(onnx_out / file)).astype(int)
            assert a.shape == b.shape == ((36, 52) if file == "wide.png" else (32, 32))
            assert np.abs(a - b).max() <= 1
    wrong = invoke("translate", run_dir / "export" / "cyclegan-a2b.onnx", photos, "--direction", "b2a")
    assert wrong.exit_code == 1 and "translates a2b, not 'b2a'" in wrong.output


def test_metadata_says_what_the_runtime_needs(runs):
    run_dir, _ = runs["stylegan-lite"]
    model = onnx.load(str(run_dir / "export" / "stylegan-lite-G.onnx"))
    props = {p.key: p.value for p in model.metadata_props}
    record = json.loads((run_dir / "config.json").read_text())
    assert props["architecture"] == "stylegan-lite" and props["generator"] == "G"
    assert json.loads(props["config"]) == record["config"]
    assert json.loads(props["plugin"])["version"] == record["plugin"]["version"]
    assert json.loads(props["inputs"]) == [{"name": "z", "shape": [None, 16], "dtype": "float32"},
                                           {"name": "truncation", "shape": [None, 1], "dtype": "float32"}]
    assert json.loads(props["latents"])[0] == {"kind": "gaussian", "name": "z", "shape": [16]}
    assert props["pixels"].startswith("uint8 = round((x + 1) * 127.5)")
    # self-contained: every tensor lives in the file
    assert not any(t.HasField("data_location") and t.data_location == onnx.TensorProto.EXTERNAL
                   for t in model.graph.initializer)
    batch_dims = [i.type.tensor_type.shape.dim[0].dim_param for i in model.graph.input]
    assert batch_dims == ["batch", "batch"]
    cyclegan = onnx.load(str(runs["cyclegan"][0] / "export" / "cyclegan-a2b.onnx"))
    dims = [d.dim_param for d in cyclegan.graph.input[0].type.tensor_type.shape.dim]
    assert dims[0] == "batch" and dims[2:] == ["height", "width"]


def test_batch_norms_are_folded_into_transposed_convolutions(runs):
    arch = registry.get("dcgan")
    from ganzoo import config

    cfg = config.resolve(arch, flags={"device": "cpu"}).config
    G = arch.build(cfg)["G"]
    for m in G.modules():  # non-trivial statistics, as after training
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    G.eval()
    folded = fold_batch_norms(G)
    kinds = [type(m).__name__ for m in folded.main]
    norms = sum(isinstance(m, torch.nn.BatchNorm2d) for m in G.main)  # the original is untouched
    # every ConvTranspose2d -> BatchNorm2d pair is fused; the norm after the linear projection stays
    assert norms >= 3 and kinds.count("BatchNorm2d") == 1 and kinds.index("BatchNorm2d") == 1
    assert kinds.count("Identity") == norms - 1
    z = torch.randn(4, cfg.nz)
    with torch.no_grad():
        assert torch.allclose(folded(z), G(z), atol=1e-5)
    graph = onnx.load(str(runs["dcgan"][0] / "export" / "dcgan-G.onnx")).graph
    ops = [node.op_type for node in graph.node]
    assert ops.count("BatchNormalization") == 1 and ops.count("ConvTranspose") == 3


def test_a_fixed_batch_model_samples_any_count(runs, tmp_path):
    run_dir, _ = runs["dcgan"]
    result = invoke("export", run_dir, "--batch", "3", "--out", tmp_path)
    assert result.exit_code == 0 and "batch 3" in result.output
    fixed = load(tmp_path / "dcgan-G.onnx")
    assert fixed.session.get_inputs()[0].shape == [3, 16]
    dynamic = load(run_dir / "export" / "dcgan-G.onnx")
    assert np.abs(fixed.sample(7, seed=2).astype(int) - dynamic.sample(7, seed=2).astype(int)).max() <= 1


def test_fp16_export_keeps_float32_inputs_and_stays_close(runs, tmp_path):
    run_dir, _ = runs["stylegan-lite"]
    result = invoke("export", run_dir, "--fp16", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    model = onnx.load(str(tmp_path / "stylegan-lite-G.onnx"))
    assert {i.type.tensor_type.elem_type for i in model.graph.input} == {onnx.TensorProto.FLOAT}
    weights = [t for t in model.graph.initializer if len(t.dims) >= 2]
    assert weights and all(t.data_type == onnx.TensorProto.FLOAT16 for t in weights)
    half = load(tmp_path / "stylegan-lite-G.onnx").sample(8, seed=1).astype(int)
    full = load(run_dir / "export" / "stylegan-lite-G.onnx").sample(8, seed=1).astype(int)
    assert np.abs(half - full).mean() < 1.0 and np.abs(half - full).max() <= 8


def test_a_failed_verification_writes_nothing_and_keeps_the_old_file(runs, tmp_path):
    run_dir, _ = runs["dcgan"]
    old = tmp_path / "dcgan-G.onnx"
    assert invoke("export", run_dir, "--out", tmp_path).exit_code == 0  # the previous export
    previous = old.read_bytes()
    result = invoke("export", run_dir, "--out", tmp_path, "--tolerance", "0")
    assert result.exit_code == 1
    assert "differs from PyTorch by" in result.output and "> tolerance 0" in result.output
    assert "nothing written" in result.output and "Traceback" not in result.output
    assert old.read_bytes() == previous
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dcgan-G.onnx"]


@pytest.mark.parametrize("args, message", [
    (["--opset", "7"], "--opset must be between 13 and 20, got 7"),
    (["--batch", "zero"], "--batch must be 'dynamic' or a positive integer, got 'zero'"),
    (["--batch", "0"], "--batch must be 'dynamic' or a positive integer, got '0'"),
    (["--generator", "c2d"], "unknown generator 'c2d'; cyclegan has: a2b, b2a"),
])
def test_bad_export_options_are_named(runs, tmp_path, args, message):
    result = invoke("export", runs["cyclegan"][0], "--out", tmp_path, *args)
    assert result.exit_code == 1 and message in result.output, result.output
    assert not list(tmp_path.iterdir())


def test_runtime_errors_are_clear(runs, tmp_path):
    sg = runs["stylegan-lite"][0] / "export" / "stylegan-lite-G.onnx"
    dc = runs["dcgan"][0] / "export" / "dcgan-G.onnx"
    cases = [
        (["sample", tmp_path / "missing.onnx"], "no such model file"),
        (["sample", dc, "--truncation", "0.5"], "has no truncation input (its inputs: z)"),
        (["sample", runs["cyclegan"][0] / "export" / "cyclegan-a2b.onnx"], "translates images (A->B)"),
        (["translate", sg, tmp_path], "samples images rather than translating them"),
        (["sample", sg, "--device", "tpu"], "unknown --device 'tpu'"),
    ]
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x07not a model at all")
    cases.append((["sample", tmp_path / "junk.onnx"], "junk.onnx"))
    plain = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])]))
    plain.ir_version = 8
    onnx.save(plain, str(tmp_path / "plain.onnx"))
    cases.append((["sample", tmp_path / "plain.onnx"], "was not written by ganzoo export"))
    for args, message in cases:
        result = invoke(*args)
        assert result.exit_code == 1 and message in result.output, (args, result.output)
        assert "Traceback" not in result.output


def test_export_through_the_conformance_path_needs_declared_latents(tmp_path):
    """A generator whose latents are a plain function exports, but the runtime cannot sample it by seed."""
    from dataclasses import replace

    from ganzoo import config

    arch = registry.get("dcgan")
    cfg = config.resolve(arch, preset="smoke", flags={"device": "cpu"}).config
    spec = arch.generators(cfg)["G"]
    plain = replace(spec, latents=lambda n, seed: spec.latents(n, seed))
    out = export_generator(arch, cfg, "G", plain, arch.build(cfg)["G"], tmp_path / "g.onnx", plugin={}, seed=0)
    model = load(out.path)
    assert model.run(spec.latents(2, 0)).shape[0] == 2
    with pytest.raises(Exception, match="does not declare how its inputs are drawn"):
        model.sample(2, seed=0)


def test_the_installed_script_exports_and_samples(runs, tmp_path):
    """The console script in a real subprocess: export's report and sampling from the file."""
    run_dir, _ = runs["dcgan"]
    export = ganzoo("export", run_dir, "--out", tmp_path, "--generator", "G")
    assert export.returncode == 0, export.stderr
    assert "max |onnx - torch| batch 1" in export.stdout
    sample = ganzoo("sample", tmp_path / "dcgan-G.onnx", "--n", "9")
    assert sample.returncode == 0, sample.stderr
    assert Image.open(tmp_path / "dcgan-G-seed-0.png").size == (3 * 34 + 2, 3 * 34 + 2)


@pytest.mark.parametrize("opset", [13, 20])
def test_the_oldest_and_newest_opsets_export_and_verify(runs, tmp_path, opset):
    run_dir, _ = runs["stylegan-lite"]
    result = invoke("export", run_dir, "--opset", opset, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    model = onnx.load(str(tmp_path / "stylegan-lite-G.onnx"))
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [opset]


@pytest.mark.parametrize("fold_norms", [True, False])
def test_a_batch_norm_without_affine_parameters_exports_after_a_dynamic_reshape(tmp_path, fold_norms):
    """The TorchScript exporter writes a norm without scale and shift (a conditional batch norm's) with
    constants of its channel count, unknown after a reshape with a dynamic batch; export gives it scale 1 and
    shift 0 (the same function) on its copy, and leaves the network it was handed as it was."""
    from torch import nn

    from ganzoo import config
    from ganzoo.api import Generator, gaussian_latents

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear, self.bn = nn.Linear(8, 4 * 32 * 32), nn.BatchNorm2d(4, affine=False)

        def forward(self, z):
            return self.bn(self.linear(z).view(-1, 4, 32, 32)).tanh()[:, :1]

    torch.manual_seed(0)
    net = Net()
    net.bn.running_mean.normal_()
    arch = registry.get("dcgan")
    cfg = config.resolve(arch, preset="smoke", flags={"device": "cpu"}).config
    spec = Generator("G", ("z",), gaussian_latents(8))
    out = export_generator(arch, cfg, "G", spec, net, tmp_path / "g.onnx", plugin={}, seed=0, fold_norms=fold_norms)
    assert max(out.errors.values()) < 1e-5
    assert not net.bn.affine and net.bn.weight is None  # the caller's network is untouched
