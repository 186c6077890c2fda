"""Smaller crashes and misleading messages of eval, train's evaluation and import, each now one `Error:` line
that says what is wrong: too few images for a metric, bad images in eval's data (eval has --skip-bad-files, as
train does), extractor weights that are garbage or a folder, a truncated PyTorch file to import."""

from __future__ import annotations

import pytest
import torch

from helpers import SMOKE, image_folder, invoke


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("messages") / "run"
    trained = invoke("train", "dcgan", *SMOKE, "--steps", 2, "--out", path)
    assert trained.exit_code == 0, trained.output
    return path


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANZOO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GANZOO_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


def one_error(result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.output
    return errors[0]


@pytest.mark.parametrize("metrics,n,need,metric", [
    ("fd-fmnist", 1, 2, "fd-fmnist"), ("kid", 1, 2, "kid"), ("fd-fmnist,kid,pr", 3, 4, "pr"), (None, 1, 4, "pr")])
def test_eval_n_below_what_a_metric_can_use_is_refused_before_anything_is_written(run, metrics, n, need, metric):
    chosen = ["--metrics", metrics] if metrics else []
    line = one_error(invoke("eval", run, "--n", n, *chosen, "--device", "cpu"))
    assert line.startswith(f"Error: --n {n} is too few images for {metric}, which needs at least {need} ("), line
    assert not (run / "eval").exists()


def test_eval_at_each_metric_s_minimum_works(run, tmp_path):
    for metrics, n in (("fd-fmnist,kid", 2), ("pr", 4)):
        done = invoke("eval", run, "--n", n, "--metrics", metrics, "--device", "cpu", "--out", tmp_path / "r.json")
        assert done.exit_code == 0, done.output


@pytest.mark.parametrize("args", [["--eval-every", 1, "--eval-n", 1], ["--set", "eval_every=1", "--set", "eval_n=1"],
                                  ["--eval-every", 1, "--eval-n", 1, "--eval-metric", "kid"]])
def test_train_eval_n_below_what_the_metric_can_use_is_refused_before_a_run_folder_is_made(tmp_path, args):
    out = tmp_path / "run"
    line = one_error(invoke("train", "dcgan", *SMOKE, "--steps", 2, *args, "--out", out))
    assert "eval_n=1" in line and "at least 2" in line, line
    assert not out.exists()


def test_eval_skips_bad_files_when_asked_as_train_does(run, tmp_path):
    data = image_folder(tmp_path / "data", n=12, size=36)
    (data / "a" / "broken.png").write_bytes(b"not a png at all")
    args = ["eval", run, "--data", data, "--metrics", "fd-fmnist", "--n", 8, "--device", "cpu",
            "--out", tmp_path / "r.json"]
    refused = invoke(*args)
    line = one_error(refused)  # the one message lists every bad file below its first line, as train's does
    assert "--skip-bad-files" in line and str(data / "a" / "broken.png") in refused.output, refused.output
    skipped = invoke(*args, "--skip-bad-files")
    assert skipped.exit_code == 0, skipped.output
    assert f"skipped: cannot read image {data / 'a' / 'broken.png'}" in skipped.output
    assert (tmp_path / "r.json").exists()


def test_train_skip_bad_files_also_skips_them_in_its_evaluation(tmp_path):
    """train --skip-bad-files --eval-every: the evaluation's real images leave out what the training data did."""
    data = image_folder(tmp_path / "data", n=12, size=36)
    (data / "a" / "broken.png").write_bytes(b"not a png at all")
    out = tmp_path / "run"
    args = ["train", "dcgan", *SMOKE, "--steps", 2, "--data", data, "--set", "channels=1", "--eval-every", 2,
            "--eval-metric", "fd-fmnist", "--eval-n", 8, "--skip-bad-files", "--out", out]
    done = invoke(*args)
    assert done.exit_code == 0, done.output
    assert f"evaluation skipped: cannot read image {data / 'a' / 'broken.png'}" in done.output, done.output
    assert any('"eval/fd-fmnist"' in line for line in (out / "metrics.jsonl").read_text().splitlines())


def test_extractor_weights_that_are_garbage_or_a_folder_are_named_for_what_they_are(run, tmp_path):
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(bytes(range(256)) * 40)
    folder = tmp_path / "weights"
    folder.mkdir()
    eval_args = ["eval", run, "--n", 8, "--device", "cpu"]
    line = one_error(invoke(*eval_args, "--metrics", "fd-fmnist", "--weights", f"fmnist={garbage}"))
    assert f"{garbage} is not a safetensors file of the fmnist classifier" in line, line
    line = one_error(invoke(*eval_args, "--metrics", "fd-fmnist", "--weights", f"fmnist={folder}"))
    assert f"{folder} is a folder" in line and "no such file" not in line, line
    line = one_error(invoke(*eval_args, "--metrics", "fid", "--weights", f"inception={garbage}"))
    assert str(garbage) in line and "not a PyTorch checkpoint" in line and "Python objects" not in line, line
    for weights in (garbage, folder):  # train's --eval-weights: refused before the run folder is made
        line = one_error(invoke("train", "dcgan", *SMOKE, "--steps", 2, "--eval-every", 1, "--eval-weights", weights,
                                "--out", tmp_path / "new"))
        assert str(weights) in line and ("is a folder" in line if weights == folder else "not a safetensors" in line)
        assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("legacy", [False, True])
def test_a_truncated_pth_to_import_is_named_as_truncated(tmp_path, legacy):
    from ganzoo_dcgan.reference_loop import RefDCGANGenerator

    whole = tmp_path / "whole.pth"
    torch.save(RefDCGANGenerator(8, 4, 3).state_dict(), whole, _use_new_zipfile_serialization=not legacy)
    data = whole.read_bytes()
    for fraction in (0.1, 0.5, 0.99):
        cut = tmp_path / "netG_epoch_1.pth"
        cut.write_bytes(data[:int(len(data) * fraction)])
        line = one_error(invoke("import", cut, "--arch", "dcgan", "--out", tmp_path / "run"))
        assert line.startswith(f"Error: {cut}: not a readable PyTorch file: truncated"), line
        assert "Invalid argument" not in line and not (tmp_path / "run").exists()
