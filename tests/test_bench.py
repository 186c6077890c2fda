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
from ganzoo.bench.training import REFERENCE, has_reference_loop, lazy_window, native_bf16, variants_for

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
        loop = ["reference-loop"] if has_reference_loop(registry.get(name)) else []
        assert list(variants) == [*loop, "reference", "default", "fused-adam", "channels_last"]
        for variant, r in variants.items():
            assert 0 < r["p10_s"] <= r["median_s"] <= r["p90_s"]
            assert r["spread"] >= 1.0 and r["noisy"] == (r["spread"] > NOISY_SPREAD)
            assert r["throughput"] == pytest.approx(r["batch_size"] / r["mean_s"])
            assert r["s_per_kimg"] == pytest.approx(1000 * r["mean_s"] / r["batch_size"])
            assert r["peak_memory_bytes"] > 10 * 2**20 and r["memory_kind"].startswith("process peak RSS")
            if variant == "reference-loop":  # its work is not the Trainer's: no FLOPs counted for it
                assert r["tflops_per_s"] is None and r["mfu"] is None
            else:
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


def test_every_row_is_compared_with_the_reference_loop_and_the_default_is_the_headline(smoke):
    """The ratio users care about: ganzoo against the code they would otherwise run, in every row, and
    the default settings' ratio stated above each table."""
    out, record, cases, _ = smoke
    assert {"dcgan", "cyclegan", "stylegan-lite"} <= {name for name, case in cases.items()
                                     if "reference-loop" in case["training"]["variants"]}
    sources = {"dcgan": "pytorch/examples dcgan/main.py",
               "cyclegan": "junyanz/pytorch-CycleGAN-and-pix2pix models/cycle_gan_model.py",
               "stylegan-lite": "NVlabs/stylegan2-ada-pytorch training/training_loop.py, training/loss.py"}
    tables = (out / "r.md").read_text()
    for name, case in cases.items():
        variants = case["training"]["variants"]
        loop = variants.get("reference-loop")
        for r in variants.values():
            assert r["speedup_vs_reference_loop"] == (pytest.approx(loop["mean_s"] / r["mean_s"]) if loop else None)
        # the default row is the Trainer with nothing set: TrainOptions' own values, "auto" as it resolved
        from ganzoo.train.speed_defaults import resolve

        defaults = config.TrainOptions()
        chosen = resolve(name, "cpu", "auto", "auto")
        expected = {key: getattr(defaults, key) for key in REFERENCE}
        expected.update(channels_last="on" if chosen.channels_last else "off", optimizer=chosen.optimizer)
        assert variants["default"]["options"] == expected
        assert variants["default"]["parts_ms"] and variants["default"]["tflops_per_s"] > 0
        section = case_section(case)
        if loop is None:
            assert "ganzoo's defaults" not in section
            continue
        assert loop["speedup_vs_reference_loop"] == 1.0 and loop["source"] == sources[name]
        assert loop["options"] == {} and loop["parts_ms"] == {} and loop["batch_size"] == case["batch_size"]
        headline = (f"**ganzoo's defaults: x{variants['default']['speedup_vs_reference_loop']:.2f} the speed of the "
                    f"reference loop** ({sources[name]}, eager fp32, as written there).")
        assert headline in section and section in tables
        row = next(line for line in section.splitlines() if line.startswith("| reference-loop |"))
        assert f"| x{loop['speedup_vs_reference']:.2f} | x1.00 |" in row
        assert "| variant | ms/step (median) |" in section and "| vs reference | vs reference loop |" in section


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
    bf16 = ["bf16"] if native_bf16(CPU) else []
    assert list(cpu) == ["reference-loop", "reference", "default", "fused-adam", "channels_last", *bf16, "compile",
                         "fast"]
    assert cpu["reference-loop"] == {} and cpu["default"] == {}  # no options: the loop's own, TrainOptions' own
    torch_defaults = {"tf32_matmul": False, "tf32_conv": True, "cudnn_benchmark": False}
    assert cpu["fast"] == {"precision": "bf16" if bf16 else "fp32", "channels_last": "on", "compile": True,
                           "optimizer": "fused", "data_on_device": "off", **torch_defaults}
    cuda = variants_for(torch.device("cuda"))
    assert list(cuda) == ["reference-loop", "reference", "default", "tf32", "cudnn-benchmark", "device-data",
                          "fused-adam", "channels_last", "bf16", "compile", "fast"]
    assert cuda["fast"]["precision"] == "bf16" and cuda["fast"]["data_on_device"] == "auto"
    assert cuda["fast"]["tf32_matmul"] and cuda["fast"]["cudnn_benchmark"]
    # The reference runs PyTorch's own defaults, which are what the reference codebases run.
    assert cuda["reference"] == {"precision": "fp32", "channels_last": "off", "compile": False, "optimizer": "plain",
                                 "data_on_device": "off", **torch_defaults}
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
            torch.backends.cudnn.benchmark) == (False, True, False)  # untouched in this process: the defaults
    for name, options in cuda.items():  # each single optimisation changes exactly one option
        if name not in ("reference-loop", "reference", "default", "fast"):
            assert sum(options[k] != cuda["reference"][k] for k in options) == 1, name


def test_bf16_is_measured_on_a_cpu_with_bf16_instructions():
    """This machine's CPU has AVX-512 BF16: bf16 autocast runs native kernels there, so it is a CPU variant."""
    flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("flags")), [])
    native = "avx512_bf16" in flags or "amx_bf16" in flags
    assert native_bf16(CPU) == native
    assert ("bf16" in variants_for(CPU)) == native
    assert list(variants_for(CPU, ["reference-loop", "fused-adam"])) == ["reference-loop", "reference", "fused-adam"]
    if native:
        assert variants_for(CPU, ["bf16"])["bf16"]["precision"] == "bf16"


def test_an_architecture_without_a_reference_loop_has_no_such_row(tmp_path):
    """The hook's default (None) gives no row and no ratio, and the plan and its estimate leave it out."""
    from ganzoo.api import Architecture
    from ganzoo.bench.estimate import count
    from ganzoo.bench.plan import plan_case
    from ganzoo.bench.training import TrainingCase, bench_training

    dcgan = registry.get("dcgan")

    class NoLoop(type(dcgan)):
        def reference_loop(self, cfg, device):
            return Architecture.reference_loop(self, cfg, device)

    assert has_reference_loop(dcgan) and not has_reference_loop(Architecture())
    case = TrainingCase(NoLoop(), {}, "synthetic", "smoke", None, CPU)
    measured = bench_training(case, {"reference-loop": {}, "reference": dict(REFERENCE)}, 0, 1, echo=lambda _: None)
    assert list(measured["variants"]) == ["reference"]
    assert measured["variants"]["reference"]["speedup_vs_reference_loop"] is None
    # the plan counts the reference loop's steps and its build: warm-up and timed steps, no split, no FLOPs
    with_loop = plan_case("dcgan", "smoke", CPU, variants=["reference-loop"], inference=False, warmup=3, steps=5)
    without = plan_case("dcgan", "smoke", CPU, variants=[], inference=False, warmup=3, steps=5)
    assert list(with_loop.variants) == ["reference-loop", "reference"] and list(without.variants) == ["reference"]
    a, b = count(with_loop, window=1), count(without, window=1)
    assert (a.steps - b.steps, a.builds - b.builds) == (3 + 5, 1)


def test_the_reference_loop_is_seeded_and_fed_the_trainer_s_batches_round_robin(tmp_path):
    """Built after torch.manual_seed(0) from PyTorch's default switches; every step gets one of four batches drawn
    before timing from the Trainer's own feed (same data, crops and order), in turn; warm-up and timed steps only."""
    from ganzoo.api import ReferenceLoop
    from ganzoo.bench.training import TrainingCase, make_trainer, run_reference_loop

    seen, built = [], []

    class Recording(ReferenceLoop):
        source = "a loop that records what it is given"

        def __init__(self):
            built.append(self)
            self.seed_draw = torch.rand(3)
            self.benchmark = torch.backends.cudnn.benchmark
            torch.backends.cudnn.benchmark = True  # as the references' scripts do

        def step(self, batch):
            seen.append(batch)

    class Recorded(type(registry.get("cyclegan"))):
        def reference_loop(self, cfg, device):
            return Recording()

    case = TrainingCase(Recorded(), {}, "synthetic", "smoke", None, CPU)
    before = torch.backends.cudnn.benchmark
    record = run_reference_loop(case, warmup=2, steps=5)
    assert torch.backends.cudnn.benchmark == before  # the loop's switch does not outlive it
    assert len(seen) == 7 and record["repeats"] == 5 and record["source"] == Recording.source
    trainer = make_trainer(case, {}, str(tmp_path))
    expected = [trainer.feed.next() for _ in range(4)]
    for i, batch in enumerate(seen):
        assert batch.keys() == {"A", "B"} and batch is seen[i % 4]  # four batches, reused in turn
        assert all(torch.equal(batch[k], expected[i % 4][k]) for k in batch)
    [loop] = built
    torch.manual_seed(0)
    assert torch.equal(loop.seed_draw, torch.rand(3)) and loop.benchmark is False


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
    assert lazy_window(Trainer.phases) == 48


@pytest.mark.parametrize("args, message", [
    (["--variants", "warp"], "unknown or unavailable variants on cpu: warp"),
    (["--variants", "tf32"], "unknown or unavailable variants on cpu: tf32"),
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
