"""The trainer's GPU paths: bf16 and fp16 autocast, channels_last, torch.compile, fused Adam, resume.

Skipped without CUDA; run on a lent GPU machine.
"""

import pytest
import torch

from ganzoo import config, registry
from ganzoo.testing import synthetic_data
from ganzoo.train.trainer import Trainer

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def cuda_trainer(name, sets, batch_size, images, run_dir, resume=False, **flags):
    """A 6-step CUDA Trainer of ``name`` on ``images`` synthetic images."""
    arch = registry.get(name)
    resolved = config.resolve(arch, sets={**sets, "log_every": 1},
                              flags={"device": "cuda", "batch_size": batch_size, "steps": 6, **flags})
    return Trainer(arch, resolved, synthetic_data(arch, resolved.config, n=images), run_dir, resume=resume)


def make_trainer(run_dir, resume=False, channels=3, **flags):
    sets = {"resolution": 64, "channels": channels, "ngf": 32, "ndf": 32}
    return cuda_trainer("dcgan", sets, 32, 64, run_dir, resume, **flags)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("compile_", [False, True], ids=["eager", "compiled"])
def test_training_on_cuda(tmp_path, precision, compile_):
    trainer = make_trainer(tmp_path / "run", precision=precision, compile=compile_)
    G = trainer.nets["G"]
    assert next(G.parameters()).is_cuda and trainer.engine.channels_last
    conv = next(m for m in G.modules() if isinstance(m, torch.nn.ConvTranspose2d) and m.stride == (2, 2))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    opt, _ = trainer.optimizers[("G",)]
    assert opt.defaults.get("fused") is True
    before = [p.detach().clone() for p in G.parameters()]
    result = trainer.run()
    assert result.step == 6
    assert any(not torch.equal(a, b) for a, b in zip(before, G.parameters()))
    assert all(torch.isfinite(p).all() for net in trainer.nets.values() for p in net.parameters())
    import json

    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 6 and all(abs(r["loss/D"]) < 1e4 for r in records)


def test_resume_on_cuda_continues_from_the_checkpoint(tmp_path):
    first = make_trainer(tmp_path / "run", precision="bf16", steps=3)
    first.run()
    second = make_trainer(tmp_path / "run", resume=True, precision="bf16", steps=6)
    a, b = second.feed.state_dict(), first.feed.state_dict()
    assert second.step == 3 and (a["epoch"], a["index"]) == (b["epoch"], b["index"])
    assert torch.equal(a["rng"], b["rng"])
    for a, b in zip(first.nets["G"].parameters(), second.nets["G"].parameters()):
        assert torch.equal(a, b)
    assert second.run().step == 6


@pytest.mark.parametrize("channels_last", ["on", "off"])
def test_compile_on_grey_images(tmp_path, channels_last):
    """1-channel images make convolution strides ambiguous; compiled training must still run."""
    trainer = make_trainer(tmp_path / "run", channels=1, compile=True, channels_last=channels_last, steps=3)
    assert trainer.run().step == 3
    assert all(torch.isfinite(p).all() for net in trainer.nets.values() for p in net.parameters())


def make_cyclegan(run_dir, resume=False, **flags):
    sets = {"resolution": 64, "load_resolution": 72, "ngf": 16, "ndf": 16, "n_blocks": 2, "pool_size": 4}
    return cuda_trainer("cyclegan", sets, 2, 16, run_dir, resume, **flags)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("compile_", [False, True], ids=["eager", "compiled"])
def test_cyclegan_on_cuda(tmp_path, precision, compile_):
    trainer = make_cyclegan(tmp_path / "run", precision=precision, compile=compile_)
    assert trainer.feed.A.is_cuda  # device-resident domains
    before = {role: [p.detach().clone() for p in m.parameters()] for role, m in trainer.nets.items()}
    assert trainer.run().step == 6
    for role, net in trainer.nets.items():
        assert any(not torch.equal(a, b) for a, b in zip(before[role], net.parameters())), role
        assert all(torch.isfinite(p).all() for p in net.parameters()), role
    pool = trainer.plugin_state["pool_B"]
    assert pool["images"].is_cuda and pool["count"] == 4


def test_cyclegan_resume_on_cuda_restores_pools(tmp_path):
    first = make_cyclegan(tmp_path / "run", steps=3, precision="bf16")
    first.run()
    second = make_cyclegan(tmp_path / "run", resume=True, steps=6, precision="bf16")
    assert second.step == 3 and second.plugin_state["pool_A"]["images"].is_cuda
    assert torch.equal(second.plugin_state["pool_A"]["images"], first.plugin_state["pool_A"]["images"])
    assert second.run().step == 6


def make_stylegan(run_dir, resume=False, **flags):
    sets = {"resolution": 32, "channels": 3, "z_dim": 64, "w_dim": 64, "channel_base": 1024, "channel_max": 64,
            "pl_interval": 2, "r1_interval": 3, "diffaugment": "on"}
    return cuda_trainer("stylegan-lite", sets, 8, 32, run_dir, resume, **flags)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("compile_", [False, True], ids=["eager", "compiled"])
def test_stylegan_on_cuda(tmp_path, precision, compile_):
    """Main phases compiled and in reduced precision; R1 and path length eager in fp32, on the same weights."""
    trainer = make_stylegan(tmp_path / "run", precision=precision, compile=compile_)
    assert trainer.run().step == 6
    for role, net in trainer.nets.items():
        assert all(torch.isfinite(p).all() for p in net.parameters()), role
    assert trainer.plugin_state["pl_mean"].is_cuda and trainer.plugin_state["pl_mean"] > 0
    import json

    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = set().union(*records)
    assert {"loss/G", "loss/D", "loss/G_pl", "loss/D_r1"} <= logged
    assert all(abs(r["loss/D"]) < 1e4 for r in records)


def test_stylegan_resume_on_cuda_restores_path_length_mean(tmp_path):
    first = make_stylegan(tmp_path / "run", steps=3, precision="bf16")
    first.run()
    second = make_stylegan(tmp_path / "run", resume=True, steps=6, precision="bf16")
    assert second.plugin_state["pl_mean"].is_cuda
    assert torch.equal(second.plugin_state["pl_mean"], first.plugin_state["pl_mean"])
    assert second.run().step == 6


def test_bench_on_cuda_measures_every_variant_and_backend(tmp_path):
    """The benchmark suite's GPU path: all eleven training rows (the reference loop, reference, default, TF32,
    cuDNN autotuning, bf16, device-resident data, compile...), the CUDA allocator's peak, the compiled and (when
    installed) CUDA-provider inference backends."""
    from ganzoo.bench import run_case
    from ganzoo.bench.inference import cuda_provider_available

    cuda_switches = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.benchmark)
    case = run_case("dcgan", "smoke", torch.device("cuda"), warmup=2, steps=3, repeats=3, inference_batches=[1, 2],
                    echo=lambda line: None)
    variants = case["training"]["variants"]
    assert list(variants) == ["reference-loop", "reference", "default", "tf32", "cudnn-benchmark", "device-data",
                              "fused-adam", "channels_last", "bf16", "compile", "fast"]
    assert all(r["memory_kind"] == "CUDA allocator peak" and r["peak_memory_bytes"] > 0 for r in variants.values())
    assert all(r["speedup_vs_reference_loop"] > 0 for r in variants.values())
    assert variants["default"]["options"]["tf32_matmul"] is True  # `ganzoo train`'s own numerics
    # the reference loop ran from PyTorch's default switches and set cuDNN autotuning as its script does;
    # the process's switches are as they were afterwards
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.benchmark) == cuda_switches
    backends = case["inference"]["G"]
    expected = {"eager", "compiled", "onnxruntime-cpu"} | ({"onnxruntime-cuda"} if cuda_provider_available() else set())
    assert set(backends) == expected
    assert all(r["max_abs_error_vs_eager"] < 1e-2 for r in backends.values())
