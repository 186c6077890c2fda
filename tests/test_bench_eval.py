"""`ganzoo bench --eval`: feature-extraction throughput per extractor and precision, and the FD effect of
reduced precision, end to end on the CPU (no speed asserted; ratios checked against the record's own numbers)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import ganzoo, invoke

from ganzoo.bench.report import markdown

EVAL_ONLY = ["bench", "--no-training", "--no-inference", "--eval", "--device", "cpu"]


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    """Every weights cache an empty folder, downloads off: the bench must fall back to random weights."""
    for name in ("GANZOO_HOME", "TORCH_HOME", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GANZOO_OFFLINE", "1")
    return tmp_path


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """`ganzoo bench --smoke --no-training --no-inference --eval`, as CI runs it, in a real subprocess."""
    out = tmp_path_factory.mktemp("bench-eval")
    result = ganzoo("bench", "--smoke", "--no-training", "--no-inference", "--eval", "--device", "cpu",
                    "--json", out / "r.json", "--markdown", out / "r.md", env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    return out, json.loads((out / "r.json").read_text()), result.stdout


def test_smoke_eval_measures_each_extractor_and_precision_alone(smoke):
    out, record, stdout = smoke
    assert record["complete"] is True and record["cases"] == [] and record["planned"] == []  # no architecture ran
    section = record["eval"]
    assert section["complete"] is True and section["planned"] == ["fmnist fp32", "fmnist bf16"]
    fp32, bf16 = section["measured"]
    assert (fp32["extractor"], fp32["precision"], bf16["precision"]) == ("fmnist", "fp32", "bf16")
    for entry in (fp32, bf16):
        assert entry["description"]["precision"] == entry["precision"]
        assert entry["weights"]["kind"] == "shipped" and len(entry["weights"]["sha256"]) == 64
        assert set(entry["throughput"]) == {"32x32x1", "256x256x3"}
        for row in entry["throughput"].values():
            assert row["batch"] == 4 and row["repeats"] == 2
            assert row["images_per_s"] == pytest.approx(4 / row["median_s"])
        assert 0 < entry["fd"]["halves"] < entry["fd"]["blurred"]  # blurring moves the features further away
    assert "vs_fp32" not in fp32
    vs = bf16["vs_fp32"]
    for label, ratio in vs["speedup"].items():
        rates = [entry["throughput"][label]["images_per_s"] for entry in (bf16, fp32)]
        assert ratio == pytest.approx(rates[0] / rates[1])
    for pair, diff in vs["fd"].items():
        assert diff["abs_diff"] == pytest.approx(abs(bf16["fd"][pair] - fp32["fd"][pair]))
        assert diff["rel_diff"] == pytest.approx(diff["abs_diff"] / fp32["fd"][pair])
        assert 0 < diff["rel_diff"] < 0.05  # autocast ran (not bitwise equal) and barely moved the FD
    assert 0 < vs["feature_rel_error_median"] < 0.02
    tables = (out / "r.md").read_text()
    assert tables == markdown(record) and "### Feature extraction" in tables and "| fmnist | bf16 |" in tables
    assert "random" not in tables
    lines = stdout.splitlines()
    assert lines.index(next(line for line in lines if line.startswith("estimate: about "))) < \
        lines.index(next(line for line in lines if line.startswith("  fmnist    fp32 ")))


def test_without_cached_weights_the_bench_uses_random_weights_and_says_so(empty_caches, tmp_path):
    result = invoke(*EVAL_ONLY, "--extractors", "inception", "--eval-batch", 1, "--eval-repeats", 1, "--eval-n", 2,
                    "--json", tmp_path / "r.json", "--markdown", tmp_path / "r.md")
    assert result.exit_code == 0, result.output
    [entry] = json.loads((tmp_path / "r.json").read_text())["eval"]["measured"]
    assert entry["weights"] == {"kind": "random", "file": None, "sha256": None,
                                "note": "random weights (throughput only; the FD effect is for random weights)"}
    assert "random weights (throughput only; the FD effect is for random weights)" in (tmp_path / "r.md").read_text()
    assert "[random weights]" in result.output
    assert not list(empty_caches.glob("torch_home/**/*.pth"))  # nothing was downloaded


def test_a_cached_weights_file_is_used_when_there_is_one(empty_caches):
    from ganzoo.bench.extraction import load
    from ganzoo.metrics.extractors import inception

    cached = inception.weights_source().cached[0]
    cached.parent.mkdir(parents=True)
    torch.save(inception.random_network(seed=1).state_dict(), cached)
    loaded = load("inception", torch.device("cpu"), ["fp32", "bf16"], 2)
    assert loaded.weights["kind"] == "cached" and loaded.weights["file"] == str(cached)
    assert {p: e.describe()["precision"] for p, e in loaded.by_precision.items()} == {"fp32": "fp32", "bf16": "bf16"}
    assert loaded.by_precision["bf16"].describe()["weights_sha256"] == loaded.weights["sha256"]


@pytest.mark.parametrize("args, message", [
    (["--extractors", "fmnist,clip"], "Error: unknown --extractors 'clip'; choices: fmnist, inception, dinov2"),
    (["--eval-precisions", "fp32,fp8"], "Error: unknown --eval-precisions 'fp8'; choices: fp32, bf16, fp16"),
    (["--eval-n", "6000"], "Error: --eval-n 6000 is more than 5000: the two image sets"),
    (["--eval-batch", "0"], "Error: --eval-batch must be at least 1, got 0"),
])
def test_bad_eval_options_are_named_before_anything_runs(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke(*EVAL_ONLY, *args)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.startswith(message) and len(result.output.strip().splitlines()) == 1, result.output
    assert not list(tmp_path.iterdir())  # refused before any results file


def test_eval_options_without_eval_are_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("bench", "--device", "cpu", "--extractors", "fmnist", "dcgan")
    assert result.exit_code == 1
    assert result.output.strip() == "Error: --extractors set the feature-extraction section: add --eval"


def test_an_interrupted_eval_keeps_what_it_measured(tmp_path):
    """A real SIGINT once the first (extractor, precision) is on disk: it stays, the record says incomplete."""
    out = tmp_path / "r.json"
    exe = Path(sys.executable).with_name("ganzoo")
    proc = subprocess.Popen([str(exe), *EVAL_ONLY, "--extractors", "fmnist", "--eval-precisions", "fp32,bf16",
                             "--eval-batch", "64", "--eval-repeats", "80", "--eval-n", "64", "--json", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if out.exists() and json.loads(out.read_text())["eval"]["measured"]:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    record = json.loads(out.read_text())
    assert record["complete"] is False and record["stopped_by"] == "SIGINT"
    measured = [f"{e['extractor']} {e['precision']}" for e in record["eval"]["measured"]]
    assert measured == ["fmnist fp32"]
    assert stderr.strip() == (f"stopped by SIGINT: kept 1 of 2 feature-extraction "
                              f"measurements ({', '.join(measured)}) in {out}, marked incomplete")
    assert "Traceback" not in stderr


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_eval_measures_dinov2_in_fp32_bf16_and_fp16(tmp_path):
    """On a GPU the default precisions are fp32, bf16 and fp16; DINOv2 ViT-L (random weights unless cached)."""
    result = ganzoo("bench", "--no-training", "--no-inference", "--eval", "--device", "cuda", "--extractors", "dinov2",
                    "--eval-batch", "16", "--eval-repeats", "3", "--eval-n", "128", "--json", tmp_path / "r.json")
    assert result.returncode == 0, result.stderr
    section = json.loads((tmp_path / "r.json").read_text())["eval"]
    assert [e["precision"] for e in section["measured"]] == ["fp32", "bf16", "fp16"]
    for entry in section["measured"][1:]:
        assert all(ratio > 0 for ratio in entry["vs_fp32"]["speedup"].values())
        assert 0 < entry["vs_fp32"]["feature_rel_error_median"] < 0.05
        assert all(d["rel_diff"] < 0.1 for d in entry["vs_fp32"]["fd"].values())
