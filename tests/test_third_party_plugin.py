"""The third-party path for real: pip-install the out-of-tree example plugin and use it from `ganzoo`."""

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ganzoo

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ganzoo-wgan-gp"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(EXAMPLE)], check=True, capture_output=True)
    return {"PYTHONPATH": str(target)}


def test_installed_plugin_is_listed_from_its_distribution(installed):
    listing = ganzoo("list", env=installed)
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if line.startswith("wgan-gp "))
    assert row.split()[1:4] == ["ok", "ganzoo-wgan-gp", "0.1.0"]
    without = ganzoo("list")
    assert "wgan-gp" not in without.stdout


def test_installed_plugin_trains_and_samples(installed, tmp_path):
    run = tmp_path / "run"
    train = ganzoo("train", "wgan-gp", "--set", "width=8", "--set", "nz=8", "--steps", 5, "--batch-size", 8,
                   "--device", "cpu", "--out", run, env=installed)
    assert train.returncode == 0, train.stderr
    assert "10000 images from fashion-mnist at 32x32x1" in train.stdout
    sample = ganzoo("sample", run, "--n", 4, "--out", tmp_path / "s.npz", env=installed)
    assert sample.returncode == 0, sample.stderr
    info = ganzoo("info", run, env=installed)
    assert "wgan-gp (ganzoo-wgan-gp 0.1.0)" in info.stdout


WGAN_GP_BAD_VALUES = [
    ("resolution", "128", "must be 32 or 64"),
    ("channels", "2", "must be 1 (grey) or 3 (RGB)"),
    ("nz", "0", "must be greater than 0"),
    ("width", "0", "must be greater than 0"),
    ("n_critic", "0", "must be greater than 0"),
    ("lr", "0", "must be greater than 0"),
    ("gp_lambda", "-10", "must be 0 (no penalty) or more"),
    ("beta1", "1", "must lie in [0, 1)"),
    ("beta2", "-0.9", "must lie in [0, 1)"),
    ("batch_size", "0", "must be a positive integer"),
]


@pytest.mark.parametrize("key,value,allowed", WGAN_GP_BAD_VALUES, ids=[f"{k}={v}" for k, v, _ in WGAN_GP_BAD_VALUES])
def test_installed_plugin_bad_values_are_one_error_line(installed, monkeypatch, tmp_path, key, value, allowed):
    """In-process through the real CLI group, with the installed example found by entry points."""
    from helpers import invoke

    from ganzoo import registry

    monkeypatch.syspath_prepend(installed["PYTHONPATH"])
    registry.clear_cache()
    result = invoke("train", "wgan-gp", "--set", f"{key}={value}", "--steps", 1, "--out", tmp_path / "run")
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 1 and len(errors) == 1, result.output
    assert errors[0].startswith(f"Error: invalid wgan-gp config: {key}=") and errors[0].endswith(f"{allowed} (from --set)")
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()
