"""The benchmark suite end to end on the CPU (smoke mode: tiny configs, no speed asserted)."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import ganzoo, invoke
from PIL import Image

from ganzoo import config, registry
from ganzoo.bench import case_settings
from ganzoo.bench.machine import peak_tflops
from ganzoo.bench.training import lazy_window, variants_for


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """`ganzoo bench --smoke` over every built-in architecture, as CI runs it, in a real subprocess."""
    out = tmp_path_factory.mktemp("bench")
    result = ganzoo("bench", "--smoke", "dcgan", "cyclegan", "stylegan-lite", "--device", "cpu", "--peak-tflops", "1",
                    "--json", out / "r.json", "--markdown", out / "r.md", "--plot", out / "r.png")
    assert result.returncode == 0, result.stderr
    record = json.loads((out / "r.json").read_text())
    return out, record, {case["arch"]: case for case in record["cases"]}, result.stdout


def test_every_architecture_gets_training_and_inference_tables(smoke):
    out, record, cases, stdout = smoke
    assert set(cases) == {"dcgan", "cyclegan", "stylegan-lite"}
    machine = record["machine"]
    assert machine["device_type"] == "cpu" and machine["torch"] == torch.__version__ and machine["onnxruntime"]
    assert machine["commit"] is None or len(machine["commit"].removesuffix("+dirty")) == 40
    for name, case in cases.items():
        variants = case["training"]["variants"]
        assert list(variants) == ["reference", "fused-adam", "channels_last"]
        for r in variants.values():
            assert 0 < r["p10_s"] <= r["median_s"] <= r["p90_s"]
            assert r["throughput"] == pytest.approx(r["batch_size"] / r["mean_s"])
            assert r["s_per_kimg"] == pytest.approx(1000 * r["mean_s"] / r["batch_size"])
            assert r["peak_memory_bytes"] > 10 * 2**20 and r["memory_kind"].startswith("process peak RSS")
            assert r["mfu"] == pytest.approx(r["tflops_per_s"] / 1.0)  # --peak-tflops 1
        assert variants["reference"]["speedup_vs_reference"] == 1.0
        assert variants["reference"]["options"]["optimizer"] == "plain"
        assert variants["fused-adam"]["options"]["optimizer"] == "fused"
        for generator, backends in case["inference"].items():
            assert set(backends) == {"eager", "onnxruntime-cpu"}
            assert set(backends["eager"]["batches"]) == {"1", "2"}
            assert backends["onnxruntime-cpu"]["max_abs_error_vs_eager"] < 1e-4
            assert backends["eager"]["max_abs_error_vs_eager"] == 0.0
    tables = (out / "r.md").read_text()
    assert tables in stdout and "| reference |" in tables and "| onnxruntime-cpu |" in tables
    assert "pairs/s" in tables and "images/s" in tables  # CycleGAN counts image pairs
    assert Image.open(out / "r.png").size[0] > 400


def test_the_step_is_split_into_its_parts(smoke):
    _, _, cases, _ = smoke
    assert set(cases["dcgan"]["training"]["variants"]["reference"]["parts_ms"]) == {"data", "D", "G", "ema"}
    parts = cases["stylegan-lite"]["training"]["variants"]["reference"]["parts_ms"]
    assert {"data", "G", "G_pl", "D", "D_r1", "ema"} <= set(parts)  # lazy phases within their 16-step window
    assert all(v > 0 for v in parts.values())


def test_flops_per_step_cover_forward_and_backward_of_both_networks(smoke):
    """Counted FLOPs of a DCGAN step are at least three forward passes of G and two of D (G's phase and
    D's phase each run forward and backward), and not absurdly more."""
    from torch.utils.flop_counter import FlopCounterMode

    _, _, cases, _ = smoke
    arch = registry.get("dcgan")
    cfg = config.resolve(arch, preset="smoke", data="synthetic").config
    nets = arch.build(cfg)
    z = torch.randn(cfg.batch_size, cfg.nz)
    with FlopCounterMode(display=False) as counter:
        nets["D"](nets["G"](z))
    forward = counter.get_total_flops()
    counted = cases["dcgan"]["training"]["flops_per_step"]
    assert 3 * forward <= counted <= 12 * forward


def test_variants_each_optimisation_alone_and_all_together():
    cpu = variants_for(torch.device("cpu"))
    assert list(cpu) == ["reference", "fused-adam", "channels_last", "compile", "fast"]
    torch_defaults = {"tf32_matmul": False, "tf32_conv": True, "cudnn_benchmark": False}
    assert cpu["fast"] == {"precision": "fp32", "channels_last": "on", "compile": True, "optimizer": "fused",
                           "data_on_device": "off", **torch_defaults}
    cuda = variants_for(torch.device("cuda"))
    assert list(cuda) == ["reference", "tf32", "cudnn-benchmark", "device-data", "fused-adam", "channels_last", "bf16",
                          "compile", "fast"]
    assert cuda["fast"]["precision"] == "bf16" and cuda["fast"]["data_on_device"] == "auto"
    assert cuda["fast"]["tf32_matmul"] and cuda["fast"]["cudnn_benchmark"]
    # The reference runs PyTorch's own defaults, which are what the reference codebases run.
    assert cuda["reference"] == {"precision": "fp32", "channels_last": "off", "compile": False, "optimizer": "plain",
                                 "data_on_device": "off", **torch_defaults}
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
            torch.backends.cudnn.benchmark) == (False, True, False)  # untouched in this process: the defaults
    for name, options in cuda.items():  # each single optimisation changes exactly one option
        if name not in ("reference", "fast"):
            assert sum(options[k] != cuda["reference"][k] for k in options) == 1, name


def test_peak_table_and_lazy_window():
    assert peak_tflops("NVIDIA H100 80GB HBM3", "bf16") == 989.4
    assert peak_tflops("NVIDIA H100 PCIe", "tf32") == 378.0
    assert peak_tflops("NVIDIA H200", "tf32") == 494.7
    assert peak_tflops("Some CPU", "fp32") is None and peak_tflops("Some CPU", "fp32", 2.5) == 2.5

    class Phase:
        def __init__(self, interval):
            self.interval = interval

    class Trainer:
        phases = [Phase(1), Phase(4), Phase(1), Phase(16), Phase(6)]

    assert lazy_window(Trainer()) == 48


@pytest.mark.parametrize("args, message", [
    (["--variants", "warp"], "unknown or unavailable variants on cpu: warp"),
    (["--variants", "bf16"], "unknown or unavailable variants on cpu: bf16"),
    (["--size", "huge"], "unknown --size huge; sizes: embedded, full, smoke"),
    (["--inference-batches", "1,x"], "--inference-batches takes positive integers"),
    (["nosuch"], "unknown architecture 'nosuch'"),
    (["--no-training", "--backends", "eager,tensorrt"], "unknown backends: tensorrt"),
    (["--no-training", "--backends", "onnxruntime-cuda"], "backend onnxruntime-cuda needs --device cuda"),
])
def test_bad_bench_options_are_named(args, message):
    inference = [] if "--no-training" in args else ["--no-inference"]
    result = invoke("bench", "--device", "cpu", *inference, "--steps", "1", "--warmup", "0", "dcgan", *args)
    assert result.exit_code != 0 and message in result.output, result.output
    assert "Traceback" not in result.output


def test_a_resolution_scales_each_architecture_its_own_way():
    """--resolution goes through Architecture.with_resolution: CycleGAN keeps its crop margin (36/32)."""
    cyclegan, dcgan = registry.get("cyclegan"), registry.get("dcgan")
    assert case_settings(cyclegan, "embedded", 64, {}) == (None, None, {"resolution": 64, "load_resolution": 72})
    assert case_settings(cyclegan, "full", 128, {}) == ("synthetic", None, {"resolution": 128, "load_resolution": 143})
    assert case_settings(dcgan, "smoke", 64, {"ngf": "4"}) == ("synthetic", "smoke", {"ngf": "4", "resolution": 64})
    assert case_settings(dcgan, "embedded", None, {}) == (None, None, {})


def test_an_architecture_without_a_resolution_cannot_be_scaled():
    from dataclasses import dataclass

    from ganzoo.api import Architecture
    from ganzoo.errors import UserError

    @dataclass
    class Sizeless:
        batch_size: int = 1

    class Plain(Architecture):
        name = "plain"
        Config = Sizeless

    with pytest.raises(UserError, match="plain has no resolution setting to scale"):
        Plain().with_resolution(Sizeless(), 64)
