"""No output overwrites what it should not: every command that writes a result replaces an existing file only
when it is that command's own earlier output (ganzoo's mark inside it), never a run's own files, a user's photo,
a folder, a FIFO or another command's output; and re-running a command to its own earlier output still works.

Each refusal comes before any work, as one `Error:` line naming the file, and leaves it untouched byte for byte.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from helpers import SMOKE, ganzoo, invoke


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A DCGAN smoke run (checkpoint at step 2) and its ONNX export."""
    path = tmp_path_factory.mktemp("claims") / "run"
    trained = invoke("train", "dcgan", *SMOKE, "--steps", 2, "--out", path)
    assert trained.exit_code == 0, trained.output
    assert invoke("export", path).exit_code == 0
    return path


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANZOO_HOME", str(tmp_path / "home"))


def photo(path):
    """A user's own picture: ganzoo never made it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(path, format="PNG")
    return path


def state(path) -> bytes | str | None:
    """What is at ``path``: a file's bytes, or the kind of entry it is (None: nothing)."""
    if not os.path.lexists(path):
        return None
    if os.path.isdir(path):
        return "folder"
    if os.path.exists(path) and not os.path.isfile(path):
        return "special"
    return path.read_bytes()


def run_files(run) -> list:
    return [run / "config.json", run / "metrics.jsonl", run / "checkpoints" / "step-0000002" / "networks.safetensors",
            run / "checkpoints" / "step-0000002" / "trainer.pt", run / "samples" / "step-0000002.png"]


def others(tmp_path) -> list:
    """Files no command may replace: a photo, a JSON file of the user's, a folder, a FIFO."""
    (tmp_path / "notes.json").write_text('{"mine": true}\n')
    (tmp_path / "folder.png").mkdir()
    os.mkfifo(tmp_path / "fifo.png")
    return [photo(tmp_path / "photo.png"), tmp_path / "notes.json", tmp_path / "folder.png", tmp_path / "fifo.png"]


def refused(args: list, target) -> None:
    """``ganzoo ARGS`` exits 1 with one Error line naming ``target``, and ``target`` is as it was."""
    before = state(target)
    result = invoke(*args)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and str(target) in lines[0], result.output
    assert "pick another" in lines[0], lines[0]
    assert state(target) == before, target


def test_eval_out_never_replaces_a_run_file_a_photo_or_another_output(run, tmp_path):
    sample_png = tmp_path / "grid.png"
    assert invoke("sample", run, "--n", 4, "--out", sample_png, "--device", "cpu").exit_code == 0
    for target in [*run_files(run), *others(tmp_path), sample_png]:
        refused(["eval", run, "--n", 8, "--metrics", "fd-fmnist", "--device", "cpu", "--out", target], target)
    assert invoke("info", run).exit_code == 0  # the run is still whole


def test_eval_rerun_replaces_its_own_result_at_the_default_and_a_given_path(run, tmp_path):
    for out in ([], ["--out", tmp_path / "r.json"]):
        for seed in (0, 1):
            done = invoke("eval", run, "--n", 8, "--metrics", "fd-fmnist", "--device", "cpu", "--seed", seed, *out)
            assert done.exit_code == 0, done.output
        path = out[1] if out else run / "eval" / "step-0000002.json"
        record = json.loads(path.read_text())
        assert record["ganzoo_output"] == "eval" and record["seed"] == 1


def test_sample_out_never_replaces_anything_but_its_own_images(run, tmp_path):
    eval_json = tmp_path / "e.json"
    assert invoke("eval", run, "--n", 8, "--metrics", "fd-fmnist", "--out", eval_json).exit_code == 0
    targets = [*run_files(run), *others(tmp_path), eval_json]
    (tmp_path / "mine.npz").write_bytes((tmp_path / "photo.png").read_bytes())
    (tmp_path / "links").mkdir()
    for index, target in enumerate([*targets, tmp_path / "mine.npz"]):
        out = target if target.suffix in (".png", ".npz") else tmp_path / "links" / f"{index}-{target.name}.png"
        if out != target:  # a run's config.json and the like cannot be a .png; a link named .png to them can
            os.symlink(target, out)
        for source in (run, run / "export" / "dcgan-G.onnx"):
            refused(["sample", source, "--n", 4, "--out", out, "--device", "cpu"], out)
        if out != target:
            assert state(target) == state(out)
    for out in (tmp_path / "again.png", tmp_path / "again.npz", run / "samples" / "final-seed0.png"):
        for source in (run, run / "export" / "dcgan-G.onnx", run):  # as `make demo` runs it, every time
            done = invoke("sample", source, "--n", 4, "--out", out, "--device", "cpu")
            assert done.exit_code == 0, done.output
    assert np.load(tmp_path / "again.npz")["images"].shape == (4, 32, 32, 1)


def test_export_never_replaces_a_file_that_is_not_an_export(run, tmp_path):
    out = tmp_path / "export"
    taken = photo(out / "dcgan-G.onnx")
    refused(["export", run, "--out", out], taken)
    refused(["export", run, "--out", run / "checkpoints"], run / "checkpoints" / "dcgan-G.onnx")
    assert not (run / "checkpoints" / "dcgan-G.onnx").exists()
    for _ in range(2):  # its own earlier export is replaced, at the default place and at a given one
        assert invoke("export", run).exit_code == 0
        assert invoke("export", run, "--out", tmp_path / "mine").exit_code == 0
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["dcgan-G.onnx"]  # no scratch file left behind


def test_a_new_run_is_never_made_inside_another_run(run, tmp_path):
    import torch
    from ganzoo_dcgan.reference_loop import RefDCGANGenerator

    torch.save(RefDCGANGenerator(8, 4, 1).state_dict(), tmp_path / "netG_epoch_1.pth")
    inside = run / "checkpoints" / "step-9999999"
    for args in (["import", tmp_path / "netG_epoch_1.pth", "--arch", "dcgan", "--out", inside],
                 ["train", "dcgan", *SMOKE, "--steps", 1, "--out", inside],
                 ["train", "dcgan", *SMOKE, "--steps", 1, "--out", inside, "--resume", "auto"]):
        result = invoke(*args)
        assert result.exit_code == 1, result.output
        assert f"Error: {inside} is inside the run directory {run}: a new run cannot live inside another run" \
            in result.output, result.output
        assert not inside.exists()
    assert invoke("info", run).exit_code == 0 and "step-9999999" not in invoke("info", run).output
    # pretrained get: refused before anything is downloaded (offline, the download would be the error)
    got = ganzoo("pretrained", "get", "horse2zebra", "--out", run / "translations" / "h2z",
                 env={"GANZOO_OFFLINE": "1", "GANZOO_HOME": str(tmp_path / "home")})
    assert got.returncode == 1 and "is inside the run directory" in got.stderr, got.stderr
    # import: a new or empty folder, never an existing one with anything in it
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    full = invoke("import", tmp_path / "netG_epoch_1.pth", "--arch", "dcgan", "--out", tmp_path / "full")
    assert full.exit_code == 1 and "already exists" in full.output
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    (tmp_path / "empty").mkdir()
    assert invoke("import", tmp_path / "netG_epoch_1.pth", "--arch", "dcgan", "--out", tmp_path / "empty").exit_code == 0


def test_a_folder_whose_config_json_is_not_a_run_is_no_run(tmp_path):
    """A project folder's own config.json (another tool's) does not make runs/ below it part of a run."""
    from ganzoo.outputs import enclosing_run, run_file

    (tmp_path / "config.json").write_text('{"name": "my app"}\n')
    assert enclosing_run(tmp_path / "runs" / "new") is None and run_file(tmp_path / "config.json") is None
    (tmp_path / "checkpoints").mkdir()  # a damaged run's config.json still marks its folder
    assert enclosing_run(tmp_path / "runs" / "new") == tmp_path


def test_bench_outputs_are_claimed_before_anything_is_measured(run, tmp_path):
    for option, target in (("--json", run / "config.json"), ("--json", photo(tmp_path / "photo.json")),
                           ("--markdown", tmp_path / "photo.json"), ("--plot", photo(tmp_path / "photo.png"))):
        refused(["bench", "dcgan", "--smoke", "--device", "cpu", option, target], target)
    same = invoke("bench", "--smoke", "--json", tmp_path / "x", "--markdown", tmp_path / "x")
    assert same.exit_code == 1 and "both name" in same.output
    wrong = invoke("bench", "--smoke", "--plot", tmp_path / "plot.svg")
    assert wrong.exit_code == 1 and "--plot must name a .png file" in wrong.output


def test_bench_rerun_replaces_its_own_results_and_tables(tmp_path):
    outputs = ["--json", tmp_path / "r.json", "--markdown", tmp_path / "r.md"]
    for _ in range(2):
        done = invoke("bench", "dcgan", "--smoke", "--device", "cpu", "--no-training", "--backends", "eager",
                      "--repeats", 1, *outputs)
        assert done.exit_code == 0, done.output
    assert json.loads((tmp_path / "r.json").read_text())["ganzoo_output"] == "bench"
    assert (tmp_path / "r.md").read_text().startswith("<!-- ganzoo_output=bench-tables -->\n")


@pytest.mark.slow
def test_bench_rerun_replaces_its_own_plot(tmp_path):
    outputs = ["--json", tmp_path / "r.json", "--markdown", tmp_path / "r.md", "--plot", tmp_path / "r.png"]
    for _ in range(2):
        done = ganzoo("bench", "dcgan", "--smoke", "--device", "cpu", "--no-inference", "--variants", "default",
                      *outputs)
        assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "r.json").read_text())["complete"] is True
