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
