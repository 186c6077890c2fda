"""The benchmark suite end to end on the CPU (smoke mode: tiny configs, no speed asserted)."""

from __future__ import annotations

import copy
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import ganzoo, invoke
from PIL import Image

from ganzoo import config, registry
from ganzoo.bench import case_settings
from ganzoo.bench.machine import peak_tflops
from ganzoo.bench.report import case_section, markdown
from ganzoo.bench.timing import NOISY_SPREAD, time_calls
from ganzoo.bench.training import lazy_window, variants_for

CPU = torch.device("cpu")


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
    assert record["complete"] is True and record["planned"] == ["dcgan smoke", "cyclegan smoke", "stylegan-lite smoke"]
    machine = record["machine"]
    assert machine["device_type"] == "cpu" and machine["torch"] == torch.__version__ and machine["onnxruntime"]
    assert machine["commit"] is None or len(machine["commit"].removesuffix("+dirty")) == 40
    for name, case in cases.items():
        variants = case["training"]["variants"]
        assert list(variants) == ["reference", "fused-adam", "channels_last"]
        for r in variants.values():
            assert 0 < r["p10_s"] <= r["median_s"] <= r["p90_s"]
            assert r["spread"] >= 1.0 and r["noisy"] == (r["spread"] > NOISY_SPREAD)
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
            assert all(isinstance(row["noisy"], bool) for row in backends["eager"]["batches"].values())
    tables = (out / "r.md").read_text()
    assert tables == markdown(record) and "Incomplete" not in tables
    assert all(case_section(case) in stdout for case in record["cases"])  # each printed as it was measured
    assert "| reference |" in tables and "| onnxruntime-cpu |" in tables
    assert "pairs/s" in tables and "images/s" in tables  # CycleGAN counts image pairs
    assert Image.open(out / "r.png").size[0] > 400


def test_the_estimate_comes_first_and_each_case_as_soon_as_it_is_measured(smoke):
    """The length of the run is said before the first measurement, from a quick probe that the run's own
    timings bear out, and a case's tables are printed before the next case starts."""
    _, record, _, stdout = smoke
    lines = stdout.splitlines()

    def first(prefix):
        return next(i for i, line in enumerate(lines) if line.startswith(prefix))

    assert first("results: ") < first("plan: 3 cases (dcgan smoke, cyclegan smoke, stylegan-lite smoke)")
    assert first("estimate: about ") < first("[1/3] dcgan (smoke") < first("  reference ")
    assert first("[1/3] dcgan") < first("### dcgan") < first("[1/3] dcgan smoke took") < first("[2/3] cyclegan")
    assert first("### cyclegan") < first("[3/3] stylegan-lite") < first("### stylegan-lite")
    spent = sum(case["seconds"] for case in record["cases"])
    assert spent / 4 < record["estimate_s"] < spent * 4


def test_without_json_the_results_go_to_a_new_file_named_up_front(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("bench", "--smoke", "dcgan", "--device", "cpu", "--no-training", "--backends", "eager")
    assert result.exit_code == 0, result.output
    [path] = (tmp_path / "bench-results").glob("*.json")
    assert re.fullmatch(r"[a-z0-9-]+-\d{8}-\d{6}\.json", path.name), path.name  # DEVICE-YYYYmmdd-HHMMSS.json
    announced = f"results: {path.relative_to(tmp_path)} (rewritten after every case"
    assert result.output.index(announced) < result.output.index("[1/1] dcgan")
    record = json.loads(path.read_text())
    assert record["complete"] is True and [c["arch"] for c in record["cases"]] == ["dcgan"]
    assert set(record["cases"][0]["inference"]["G"]) == {"eager"}


def test_a_results_path_that_cannot_be_written_is_refused_before_measuring(tmp_path):
    (tmp_path / "taken").write_text("a file, not a folder")
    result = invoke("bench", "--smoke", "dcgan", "--device", "cpu", "--no-training", "--backends", "eager",
                    "--json", tmp_path / "taken" / "r.json")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"Error: cannot write {tmp_path / 'taken' / 'r.json'}: " in result.output
    assert "dcgan (smoke" not in result.output  # refused before anything was measured
    assert (tmp_path / "taken").read_text() == "a file, not a folder"


@pytest.mark.parametrize("name", ["SIGINT", pytest.param("SIGTERM", marks=pytest.mark.slow)])
def test_an_interrupted_bench_keeps_the_cases_it_measured(tmp_path, name):
    """A real `ganzoo bench` stopped by a real signal during its second case: the first case is already on
    disk when the signal comes, the files say incomplete, and the command says so in one line."""
    sig, out, on_disk = getattr(signal, name), tmp_path / "r.json", None
    exe = Path(sys.executable).with_name("ganzoo")
    proc = subprocess.Popen([str(exe), "bench", "--smoke", "dcgan", "cyclegan", "--device", "cpu", "--json", str(out),
                             "--markdown", str(tmp_path / "r.md")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.startswith("[1/2] dcgan smoke took"):
                on_disk = json.loads(out.read_text())  # written before the next case starts
                proc.send_signal(sig)
                break
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert on_disk is not None, "no line said the first case was done"
    assert on_disk["complete"] is False and [c["arch"] for c in on_disk["cases"]] == ["dcgan"]
    assert proc.returncode == 128 + sig
    assert stderr.strip() == f"stopped by {name}: kept 1 of 2 cases (dcgan smoke) in {out}, marked incomplete"
    record = json.loads(out.read_text())
    assert record["complete"] is False and record["stopped_by"] == name
    assert record["planned"] == ["dcgan smoke", "cyclegan smoke"]
    assert record["cases"] == on_disk["cases"] and record["cases"][0]["training"]["variants"]["reference"]
    assert f"**Incomplete** (stopped by {name}): 1 of 2 planned cases measured." in (tmp_path / "r.md").read_text()
    assert not list(tmp_path.glob(".r.json.*"))  # no temporary file left behind


def _sleeps(*seconds):
    """A call that really takes each of ``seconds`` in turn: real timings whose spread is known."""
    calls = iter(seconds * 100)
    return lambda: time.sleep(next(calls))


@pytest.fixture(scope="module")
def timings():
    """Steady calls, calls alternating 30 ms and 120 ms, and one slow call in four (like a lazy regulariser)."""
    lazy = _sleeps(0.12, 0.03, 0.03, 0.03)
    count = iter(range(1000))
    return {"steady": time_calls(_sleeps(0.05), CPU, repeats=20, warmup=0),
            "unsteady": time_calls(_sleeps(0.03, 0.12), CPU, repeats=20, warmup=0),
            "lazy": time_calls(lazy, CPU, repeats=20, warmup=0, kind=lambda: next(count) % 4 == 0)}


def test_a_measurement_spread_too_wide_is_flagged_busy(timings):
    assert timings["unsteady"]["spread"] > 3 and timings["unsteady"]["noisy"] is True
    assert timings["steady"]["spread"] < NOISY_SPREAD and timings["steady"]["noisy"] is False


def test_the_spread_is_judged_over_calls_that_do_the_same_work(timings):
    """Every 4th call 4x slower is the work (R1 every 16 steps, path length every 4), not noise."""
    lazy = timings["lazy"]
    assert lazy["p90_s"] / lazy["p10_s"] > 3  # over all calls it would look unsteady
    assert lazy["spread"] < NOISY_SPREAD and lazy["noisy"] is False


def test_the_flag_is_in_the_table_and_named_under_its_case(smoke, timings):
    _, _, cases, _ = smoke
    case = copy.deepcopy(cases["dcgan"])
    variants = case["training"]["variants"]
    for name in variants:
        variants[name].update(timings["unsteady"] if name == "reference" else timings["steady"])
    for backends in case["inference"].values():
        for r in backends.values():
            for row in r["batches"].values():
                row.update(timings["steady"])
    tables = case_section(case)
    rows = {}
    for line in tables.splitlines():  # the first row of each name: the speed tables, not the split of a step
        if line.startswith("| "):
            rows.setdefault(line.split(" | ")[0], line)
    assert f"| {timings['unsteady']['spread']:.2f} **noisy** |" in rows["| reference"]
    assert "noisy" not in rows["| fused-adam"] and "noisy" not in rows["| eager"]
    assert ("**Noisy** (p90/p10 of like calls above 1.5, the machine was busy; rerun on an idle machine before "
            "trusting them): training reference.") in tables


def test_the_step_is_split_into_its_parts(smoke):
    _, _, cases, _ = smoke
    assert set(cases["dcgan"]["training"]["variants"]["reference"]["parts_ms"]) == {"data", "D", "G", "ema"}
    parts = cases["stylegan-lite"]["training"]["variants"]["reference"]["parts_ms"]
    assert {"data", "G", "G_pl", "D", "D_r1", "ema"} <= set(parts)  # lazy phases within their 16-step window
    assert all(v > 0 for v in parts.values())


def test_smoke_times_the_trainer_against_a_bare_loop(smoke):
    """--smoke includes the host-overhead section, so CI runs it: its fields, never its speeds."""
    _, record, cases, stdout = smoke
    for case in cases.values():
        section = case["host_overhead"]
        loops = section["loops"]
        assert list(loops) == ["trainer", "trainer-no-ema", "bare"] and section["ema_kimg"] > 0
        assert section["ratio"] == pytest.approx(loops["trainer"]["median_s"] / loops["bare"]["median_s"])
        assert all(len(row["block_mean_s"]) == section["rounds"] >= 2 for row in loops.values())
    assert cases["stylegan-lite"]["host_overhead"]["block_steps"] == 16  # whole lazy windows: R1 every 16 steps
    assert stdout.count("  host overhead: trainer ") == 3 and "| trainer-no-ema |" in markdown(record)


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
def test_bad_bench_options_are_named(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    inference = [] if "--no-training" in args else ["--no-inference"]
    result = invoke("bench", "--device", "cpu", *inference, "--steps", "1", "--warmup", "0", "dcgan", *args)
    assert result.exit_code != 0 and message in result.output, result.output
    assert "Traceback" not in result.output
    assert not list(tmp_path.iterdir())  # refused before any results file


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
