"""`ganzoo eval` end to end on the embedded data: run directories, their ONNX exports, both CycleGAN directions."""

import json

import numpy as np
import pytest

from helpers import SMOKE, invoke


@pytest.fixture(scope="module")
def dcgan_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("eval") / "dcgan"
    result = invoke("train", "dcgan", *SMOKE, "--steps", 4, "--checkpoint-every", 2, "--out", run,
                    "--set", "keep_checkpoints=5")
    assert result.exit_code == 0, result.output
    return run


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANZOO_HOME", str(tmp_path / "home"))


def evaluate(*args):
    result = invoke("eval", *args)
    assert result.exit_code == 0, result.output
    return result


def test_eval_of_a_run_writes_every_metric_and_what_makes_it_comparable(dcgan_run):
    result = evaluate(dcgan_run, "--n", 300, "--device", "cpu")
    record = json.loads((dcgan_run / "eval" / "step-0000004.json").read_text())
    values = record["results"]["samples"]["values"]
    assert set(values) == {"fd-fmnist", "kid-fmnist", "kid-fmnist-std", "precision-fmnist", "recall-fmnist",
                           "density-fmnist", "coverage-fmnist"}
    assert all(np.isfinite(v) for v in values.values()) and values["fd-fmnist"] > 0
    assert record["results"]["samples"]["n"] == 300 and record["seed"] == 0 and record["step"] == 4
    assert record["extractors"]["fmnist"]["weights_sha256"] and record["ganzoo_version"]
    assert "fd-fmnist" in result.output and "results:" in result.output


def test_reference_features_are_cached_by_the_images_themselves(dcgan_run, tmp_path):
    first = evaluate(dcgan_run, "--n", 200, "--metrics", "fd-fmnist", "--out", tmp_path / "a.json")
    second = evaluate(dcgan_run, "--n", 200, "--metrics", "fd-fmnist", "--out", tmp_path / "b.json")
    a, b = (json.loads((tmp_path / f"{x}.json").read_text())["results"]["samples"] for x in "ab")
    assert a["reference_cached"] == {"fmnist": False} and b["reference_cached"] == {"fmnist": True}
    assert a["values"] == b["values"]  # the cache gives exactly what a fresh computation gives
    other = evaluate(dcgan_run, "--n", 200, "--seed", 1, "--metrics", "fd-fmnist", "--out", tmp_path / "c.json")
    c = json.loads((tmp_path / "c.json").read_text())["results"]["samples"]
    assert c["reference_cached"] == {"fmnist": False}  # another subset of real images: never a stale hit
    assert c["real_images_sha256"] != a["real_images_sha256"]


def test_a_step_picks_its_checkpoint(dcgan_run, tmp_path):
    evaluate(dcgan_run, "--n", 100, "--metrics", "fd-fmnist", "--step", 2)
    assert json.loads((dcgan_run / "eval" / "step-0000002.json").read_text())["step"] == 2
    missing = invoke("eval", dcgan_run, "--n", 100, "--step", 3)
    assert missing.exit_code == 1 and "step 3" in missing.output and "steps kept: 2, 4" in missing.output


def test_the_onnx_export_gives_the_same_numbers_for_the_same_seed(dcgan_run, tmp_path):
    assert invoke("export", dcgan_run, "--out", tmp_path / "export").exit_code == 0
    model = next((tmp_path / "export").glob("*.onnx"))
    evaluate(dcgan_run, "--n", 300, "--seed", 3, "--out", tmp_path / "torch.json", "--batch-size", 32)
    evaluate(model, "--n", 300, "--seed", 3, "--out", tmp_path / "onnx.json", "--batch-size", 7)
    torch_values, onnx_values = (json.loads((tmp_path / f"{x}.json").read_text())["results"]["samples"]["values"]
                                 for x in ("torch", "onnx"))
    for key, value in torch_values.items():
        assert onnx_values[key] == pytest.approx(value, rel=2e-3, abs=2e-3), key


def test_a_cyclegan_run_is_evaluated_in_both_directions(tmp_path):
    run = tmp_path / "cyclegan"
    assert invoke("train", "cyclegan", *SMOKE, "--steps", 2, "--out", run).exit_code == 0
    evaluate(run, "--n", 100, "--metrics", "fd-fmnist,kid", "--device", "cpu")
    results = json.loads((run / "eval" / "step-0000002.json").read_text())["results"]
    assert set(results) == {"a2b", "b2a"}
    assert all(np.isfinite(r["values"]["fd-fmnist"]) and r["n"] == 100 for r in results.values())


@pytest.mark.parametrize("args,message", [
    (["--metrics", "fid,sharpness"], "unknown metric 'sharpness'; metrics: fid, fd-dinov2, fd-fmnist, kid, pr"),
    (["--n", "20000"], "--n 20000 is more than the 10000 real images"),
    (["--features", "vgg"], "unknown --features 'vgg'"),
    (["--weights", "fmnist=/no/such.safetensors"], "no such file"),
    (["--n", "0"], "--n must be at least 1"),
])
def test_bad_eval_input_is_one_error_naming_it(dcgan_run, args, message):
    result = invoke("eval", dcgan_run, *args)
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], result.output


def test_a_weights_file_of_the_wrong_shape_is_named(dcgan_run, tmp_path):
    import torch
    from safetensors.torch import save_file

    bad = tmp_path / "bad.safetensors"
    save_file({"conv.weight": torch.zeros(3, 3)}, bad)
    result = invoke("eval", dcgan_run, "--n", 50, "--metrics", "fd-fmnist", "--weights", f"fmnist={bad}")
    assert result.exit_code == 1 and str(bad) in result.output and result.output.count("Error:") == 1, result.output


def test_missing_inception_weights_offline_say_which_file_to_put_where(dcgan_run, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("GANZOO_OFFLINE", "1")
    result = invoke("eval", dcgan_run, "--n", 50, "--metrics", "fid")
    assert result.exit_code == 1 and result.output.count("Error:") == 1, result.output
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / "weights-inception-2015-12-05-6726825d.pth") in result.output
