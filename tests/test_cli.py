"""The CLI end to end: list, train, sample, info; user errors end in one line, exit 1, no traceback."""

import json
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import SMOKE, ganzoo, image_folder, invoke


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("cli") / "run"
    result = invoke("train", "dcgan", *SMOKE, "--steps", 4, "--batch-size", 16, "--out", run, "--sample-every", 2)
    assert result.exit_code == 0, result.output
    return run, result.output


def test_train_prints_where_everything_is(trained_run):
    run, output = trained_run
    assert "10000 images from fashion-mnist at 32x32x1" in output
    for line in ("sample grid:", "checkpoint:", "run directory:"):
        assert line in output
    record = json.loads((run / "config.json").read_text())
    assert record["architecture"] == "dcgan" and record["plugin"]["distribution"] == "ganzoo"
    assert record["preset"] == "smoke" and record["config"]["ngf"] == 8
    assert sorted(p.name for p in (run / "samples").iterdir()) == [
        "step-0000000.png", "step-0000002.png", "step-0000004.png"]
    grid = Image.open(run / "samples" / "step-0000004.png")
    assert grid.mode == "L" and grid.size == (8 * 34 + 2, 8 * 34 + 2)  # 64 tiles of 32 px, 2 px gutters


def test_trainer_state_loads_with_weights_only(trained_run):
    run, _ = trained_run
    state = torch.load(run / "checkpoints" / "step-0000004" / "trainer.pt", weights_only=True)
    assert state["step"] == 4 and set(state["optimizers"]) == {"D", "G"}
    assert state["rng"]["loss"].dtype == torch.uint8


def test_sample_png_and_npz_are_deterministic_per_seed(trained_run, tmp_path):
    run, _ = trained_run
    assert invoke("sample", run, "--n", 6, "--seed", 3, "--out", tmp_path / "a.npz").exit_code == 0
    assert invoke("sample", run, "--n", 6, "--seed", 3, "--out", tmp_path / "b.npz").exit_code == 0
    assert invoke("sample", run, "--n", 6, "--seed", 4, "--out", tmp_path / "c.npz").exit_code == 0
    a, b, c = (np.load(tmp_path / f"{x}.npz")["images"] for x in "abc")
    assert a.shape == (6, 32, 32, 1) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    result = invoke("sample", run, "--n", 9, "--out", tmp_path / "grid.png")
    assert result.exit_code == 0 and "step 4" in result.output
    assert Image.open(tmp_path / "grid.png").size == (3 * 34 + 2, 3 * 34 + 2)


def test_info_reports_config_checkpoints_and_parameters(trained_run):
    run, _ = trained_run
    result = invoke("info", run)
    assert result.exit_code == 0
    assert "dcgan (ganzoo 0.1.0)" in result.output and "step-0000004" in result.output
    assert "ngf=8" in result.output and "loss/D=" in result.output
    G = next(line for line in result.output.splitlines() if line.startswith("parameters:"))
    assert "G_ema" in G and "D " in G


@pytest.mark.parametrize("args,message", [
    (["train", "dcgn"], "did you mean 'dcgan'"),
    (["train", "dcgan", "--set", "ngff=1"], "valid keys:"),
    (["train", "dcgan", "--set", "ngf"], "key=value"),
    (["train", "dcgan", "--data", "/no/such/folder"], "/no/such/folder"),
    (["train", "dcgan", "--preset", "nope"], "unknown preset 'nope'"),
    (["train", "dcgan", "--device", "cuda:7"], "cuda:7"),
    (["sample", "/no/such/run"], "no such run directory: /no/such/run"),
    (["info", "/tmp"], "config.json is missing"),
])
def test_user_errors_are_one_clear_line(args, message):
    result = invoke(*args)
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output


def test_empty_and_unreadable_data_name_the_path(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = invoke("train", "dcgan", *SMOKE, "--data", empty, "--out", tmp_path / "r1")
    assert result.exit_code == 1 and str(empty) in result.output
    bad = image_folder(tmp_path / "bad", n=3)
    (bad / "a" / "broken.png").write_bytes(b"not a png at all")
    result = invoke("train", "dcgan", *SMOKE, "--data", bad, "--out", tmp_path / "r2")
    assert result.exit_code == 1 and "broken.png" in result.output
    assert not (tmp_path / "r2").exists()  # nothing is written before the data is known to be good
    skipping = invoke("train", "dcgan", *SMOKE, "--data", bad, "--skip-bad-files", "--batch-size", 2,
                      "--steps", 1, "--out", tmp_path / "r3")
    assert skipping.exit_code == 0, skipping.output
    assert "skipped:" in skipping.output and "broken.png" in skipping.output
    assert "1 unreadable file(s) skipped" in skipping.output and "3 images from bad" in skipping.output


def test_corrupt_checkpoint_is_reported_by_path(trained_run, tmp_path):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(trained_run[0], run)
    networks = run / "checkpoints" / "step-0000004" / "networks.safetensors"
    networks.write_bytes(b"\x00" * 20)
    result = invoke("sample", run, "--out", tmp_path / "x.png")
    assert result.exit_code == 1 and str(networks) in result.output


def test_folder_data_trains_rgb(tmp_path):
    data = image_folder(tmp_path / "faces", n=12, size=70)
    result = invoke("train", "dcgan", *SMOKE, "--data", data, "--set", "channels=3", "--batch-size", 4,
                    "--steps", 2, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "12 images from faces at 32x32x3" in result.output


def test_real_subprocess_train_and_list():
    listing = ganzoo("list")
    assert listing.returncode == 0
    assert any(line.split()[:3] == ["dcgan", "ok", "ganzoo"] for line in listing.stdout.splitlines())
    bad = ganzoo("train", "dcgan", "--set", "nope=1")
    assert bad.returncode == 1 and bad.stderr.startswith("Error: unknown config key 'nope'")
    assert "Traceback" not in bad.stderr


def test_list_imports_no_torch():
    code = "import sys; from ganzoo.cli import cli; cli(['list'], standalone_mode=False); print('torch' in sys.modules)"
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"


def test_broken_plugin_is_listed_and_the_rest_keep_working(tmp_path):
    """A third-party distribution whose plugin fails to import, installed beside ganzoo."""
    dist = tmp_path / "ganzoo_broken-1.2.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ganzoo-broken\nVersion: 1.2\nSummary: broken\n")
    (dist / "entry_points.txt").write_text("[ganzoo.architectures]\nbrokengan = ganzoo_broken_plugin:BrokenGAN\n")
    (tmp_path / "ganzoo_broken_plugin.py").write_text(textwrap.dedent("""
        import this_module_does_not_exist
    """))
    env = {"PYTHONPATH": str(tmp_path)}
    listing = ganzoo("list", env=env)
    assert listing.returncode == 0, listing.stderr
    table = listing.stdout.split("\n\n")[0]
    rows = {line.split()[0]: line for line in table.splitlines()[1:]}
    assert "import error" in rows["brokengan"] and "this_module_does_not_exist" in rows["brokengan"]
    assert "ganzoo-broken 1.2" in rows["brokengan"] and " ok " in rows["dcgan"]
    other = ganzoo("train", "brokengan", env=env)
    assert other.returncode == 1 and "import error" in other.stderr and "Traceback" not in other.stderr
    only_dcgan = ganzoo("list", env={**env, "GANZOO_PLUGINS": "dcgan"})
    assert "disabled" in only_dcgan.stdout.split("brokengan", 1)[1].splitlines()[0]
