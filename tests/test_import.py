"""`ganzoo import`: reference checkpoints written here in the references' own layouts, imported, and shown to
compute the same functions; then sampled, translated, exported and run through the torch-free runtime.

The reference networks (in the plugins' reference_loop modules, which the benchmark's reference-loop row trains)
are minimal copies of the module structure (and so the state-dict key names) of
junyanz/pytorch-CycleGAN-and-pix2pix models/networks.py (ResnetGenerator, ResnetBlock with padding_type
'reflect' and no dropout, NLayerDiscriminator, instance norm without affine parameters) and of pytorch/examples
dcgan/main.py (Generator, Discriminator).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ganzoo_cyclegan.reference_loop import RefNLayerDiscriminator, RefResnetGenerator
from ganzoo_dcgan.reference_loop import RefDCGANDiscriminator, RefDCGANGenerator
from torch import nn

from helpers import ganzoo, image_folder, invoke

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _randomised(net, seed):
    """Non-trivial weights and batch-norm statistics, so that a wrong mapping shows in the outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in net.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=g) * 0.4 + 0.1 if t.dim() == 1 else
                        torch.randn(t.shape, generator=g) * 0.1)
    return net.eval()


def _imported_nets(run_dir):
    from ganzoo import rundir

    nets, _ = rundir.load_sampling_nets(rundir.open_run(run_dir), torch.device("cpu"))
    return nets


def _same_function(ours, ref, x):
    with torch.no_grad():
        a, b = ours.double()(x.double()), ref.double()(x.double())
    assert a.shape == b.shape
    assert torch.allclose(a, b, atol=1e-10, rtol=0), float((a - b).abs().max())


def _cyclegan_set(tmp_path, channels=3, ngf=4, n_blocks=2, old_stats=False, which=("G_A", "G_B", "D_A", "D_B")):
    refs = {}
    for i, name in enumerate(which):
        net = RefResnetGenerator(channels, channels, ngf, n_blocks) if name.startswith("G") else \
            RefNLayerDiscriminator(channels, ngf + 2)
        refs[name] = _randomised(net, i)
        state = net.state_dict()
        if old_stats:  # what InstanceNorm2d saved before PyTorch 0.4 / the reference's patch of October 2018
            for mname, m in net.named_modules():
                if isinstance(m, nn.InstanceNorm2d):
                    c = m.num_features
                    state.update({f"{mname}.running_mean": torch.zeros(c), f"{mname}.running_var": torch.ones(c),
                                  f"{mname}.num_batches_tracked": torch.tensor(5)})
        torch.save(state, tmp_path / f"latest_net_{name}.pth")
    return refs


@pytest.mark.parametrize("n_blocks,old_stats", [(2, False), (6, True), (9, False)])
def test_cyclegan_four_files_compute_the_reference_functions(tmp_path, n_blocks, old_stats):
    refs = _cyclegan_set(tmp_path, n_blocks=n_blocks, old_stats=old_stats)
    out = tmp_path / "run"
    result = invoke("import", *sorted(tmp_path.glob("*.pth")), "--arch", "cyclegan", "--out", out)
    assert result.exit_code == 0, result.output
    record = json.loads((out / "config.json").read_text())
    assert record["config"]["n_blocks"] == n_blocks and record["config"]["ngf"] == 4
    assert record["imported"]["roles"] == ["D_A", "D_B", "G_AB", "G_BA"]
    assert not (out / "checkpoints" / "step-0000000" / "trainer.pt").exists()
    nets = _imported_nets(out)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    _same_function(nets["G_AB"], refs["G_A"], x)  # the reference's G_A maps A -> B
    _same_function(nets["G_BA"], refs["G_B"], x)
    _same_function(nets["D_B"], refs["D_A"], x)  # its netD_A judges domain B
    _same_function(nets["D_A"], refs["D_B"], x)


def test_cyclegan_single_generator_file_translates_exports_and_refuses_to_resume(tmp_path):
    net = _randomised(RefResnetGenerator(3, 3, 4, 9), 7)
    torch.save(net.state_dict(), tmp_path / "horse2zebra.pth")
    out = tmp_path / "h2z"
    assert invoke("import", tmp_path / "horse2zebra.pth", "--arch", "cyclegan", "--out", out).exit_code == 0
    nets = _imported_nets(out)
    assert set(nets) == {"G_AB"}
    _same_function(nets["G_AB"], net, torch.rand(1, 3, 16, 16) * 2 - 1)
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "horse.png")
    done = ganzoo("translate", out, tmp_path / "horse.png", "--direction", "a2b", "--out", tmp_path / "t1",
                  "--device", "cpu")
    assert done.returncode == 0, done.stderr
    missing = ganzoo("translate", out, tmp_path / "horse.png", "--direction", "b2a", "--out", tmp_path / "t2",
                     "--device", "cpu")
    assert missing.returncode == 1 and "no G_BA" in missing.stderr and "Traceback" not in missing.stderr
    exported = ganzoo("export", out, "--out", tmp_path / "onnx")
    assert exported.returncode == 0, exported.stderr
    onnx = sorted((tmp_path / "onnx").glob("*.onnx"))
    assert [p.name for p in onnx] == ["cyclegan-a2b.onnx"]
    runtime = ganzoo("translate", onnx[0], tmp_path / "horse.png", "--out", tmp_path / "t3")
    assert runtime.returncode == 0, runtime.stderr
    a = np.asarray(Image.open(next((tmp_path / "t1").rglob("*.png"))), dtype=int)
    b = np.asarray(Image.open(next((tmp_path / "t3").rglob("*.png"))), dtype=int)
    assert a.shape == b.shape and np.abs(a - b).max() <= 1
    resumed = ganzoo("train", "cyclegan", "--resume", out, "--steps", "1", "--device", "cpu")
    assert resumed.returncode == 1 and "imported weights have no trainer state" in resumed.stderr
    assert f"ganzoo train cyclegan --init {out}" in resumed.stderr and "Traceback" not in resumed.stderr


def test_dcgan_files_compute_the_reference_functions_and_sample_like_onnx(tmp_path):
    G, D = _randomised(RefDCGANGenerator(8, 4, 3), 1), _randomised(RefDCGANDiscriminator(6, 3), 2)
    torch.save(G.state_dict(), tmp_path / "netG_epoch_24.pth")
    torch.save(D.state_dict(), tmp_path / "netD_epoch_24.pth")
    out = tmp_path / "run"
    result = invoke("import", tmp_path / "netG_epoch_24.pth", tmp_path / "netD_epoch_24.pth", "--arch", "dcgan",
                    "--out", out)
    assert result.exit_code == 0, result.output
    cfg = json.loads((out / "config.json").read_text())["config"]
    assert (cfg["nz"], cfg["ngf"], cfg["ndf"], cfg["channels"], cfg["resolution"]) == (8, 4, 6, 3, 64)
    nets = _imported_nets(out)
    z = torch.randn(3, 8)
    with torch.no_grad():
        ours, ref = nets["G"].double()(z.double()), G.double()(z.double()[:, :, None, None])
        assert torch.allclose(ours, ref, atol=1e-10, rtol=0)
        x = torch.rand(3, 3, 64, 64).double() * 2 - 1
        assert torch.allclose(torch.sigmoid(nets["D"].double()(x)), D.double()(x), atol=1e-10, rtol=0)
    sampled = ganzoo("sample", out, "--n", "4", "--seed", "3", "--out", tmp_path / "s1.png", "--device", "cpu")
    assert sampled.returncode == 0, sampled.stderr
    assert ganzoo("export", out, "--out", tmp_path / "onnx").returncode == 0
    runtime = ganzoo("sample", tmp_path / "onnx" / "dcgan-G.onnx", "--n", "4", "--seed", "3", "--out",
                     tmp_path / "s2.png")
    assert runtime.returncode == 0, runtime.stderr
    from PIL import Image

    a, b = (np.asarray(Image.open(tmp_path / f"s{i}.png"), dtype=int) for i in (1, 2))
    assert a.shape == b.shape and np.abs(a - b).max() <= 1


def _bad(tmp_path, *files, arch="cyclegan", words=()):
    out = tmp_path / "never"
    done = ganzoo("import", *files, "--arch", arch, "--out", out)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), done.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert not out.exists() and not list(tmp_path.glob(".never*"))
    return lines[0]


def test_bad_inputs_are_refused_with_one_line_and_nothing_written_or_run(tmp_path):
    import os

    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    torch.save({"model.1.weight": torch.zeros(1), "x": Evil()}, tmp_path / "evil_net_G_A.pth")
    _bad(tmp_path, tmp_path / "evil_net_G_A.pth", words=("system",))
    assert not marker.exists()
    torch.save(RefResnetGenerator(3, 3, 4, 1), tmp_path / "module_net_G_A.pth")
    _bad(tmp_path, tmp_path / "module_net_G_A.pth", words=("RefResnetGenerator", "pickled"))
    good = RefResnetGenerator(3, 3, 4, 1).state_dict()
    torch.save(good, tmp_path / "good_net_G_A.pth")
    (tmp_path / "cut_net_G_A.pth").write_bytes((tmp_path / "good_net_G_A.pth").read_bytes()[:500])
    _bad(tmp_path, tmp_path / "cut_net_G_A.pth", words=("cut_net_G_A.pth",))
    torch.save({**good, "model.4.weight": torch.zeros(8, 4, 5, 5)}, tmp_path / "shape_net_G_A.pth")
    _bad(tmp_path, tmp_path / "shape_net_G_A.pth", words=("G_AB/model.4.weight", "(8, 4, 5, 5)"))
    torch.save({k: v for k, v in good.items() if k != "model.7.bias"}, tmp_path / "short_net_G_A.pth")
    _bad(tmp_path, tmp_path / "short_net_G_A.pth", words=("G_AB/model.7.bias",))
    torch.save({**good, "model.3.weight": torch.zeros(3)}, tmp_path / "extra_net_G_A.pth")
    _bad(tmp_path, tmp_path / "extra_net_G_A.pth", words=("G_AB/model.3.weight",))
    done = ganzoo("import", tmp_path / "good_net_G_A.pth", "--arch", "cyclegan", "--out", tmp_path / "never",
                  "--set", "n_blocks=4")
    assert done.returncode == 1 and "--set n_blocks=4 contradicts" in done.stderr and "n_blocks=1" in done.stderr
    torch.save({"state_dict": good}, tmp_path / "nested.pth")
    _bad(tmp_path, tmp_path / "nested.pth", arch="dcgan", words=("nested dict under 'state_dict'",))


def test_an_imported_dcgan_is_evaluated_like_a_trained_run(tmp_path):
    G, D = _randomised(RefDCGANGenerator(8, 4, 3), 1), _randomised(RefDCGANDiscriminator(6, 3), 2)
    torch.save(G.state_dict(), tmp_path / "netG_epoch_24.pth")
    torch.save(D.state_dict(), tmp_path / "netD_epoch_24.pth")
    out = tmp_path / "run"
    assert invoke("import", tmp_path / "netG_epoch_24.pth", tmp_path / "netD_epoch_24.pth", "--arch", "dcgan",
                  "--out", out).exit_code == 0
    data = image_folder(tmp_path / "data", n=30, size=64)
    args = ["eval", out, "--data", data, "--metrics", "fd-fmnist,kid", "--features", "fmnist", "--n", "30",
            "--device", "cpu"]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    record = json.loads((out / "eval" / "step-0000000.json").read_text())
    values = record["results"]["samples"]["values"]
    assert record["step"] == 0 and {"fd-fmnist", "kid-fmnist"} <= values.keys()
    assert all(np.isfinite(v) for v in values.values()) and values["fd-fmnist"] > 0
    # the same numbers again: an imported run is as reproducible as a trained one
    assert invoke(*args, "--out", tmp_path / "again.json").exit_code == 0
    assert json.loads((tmp_path / "again.json").read_text())["results"]["samples"]["values"] == values
