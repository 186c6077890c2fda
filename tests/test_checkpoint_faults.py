"""Damaged checkpoints, a full disk during a save, weights that do not fit: one message, and nothing lost.

When the newest checkpoint is damaged, `info`, `sample`, `export` and
`train --resume` name it and use the newest intact one; when none is intact
they name each. Faults are real files on disk (truncated, garbage, missing
keys, a pickled object); the full disk is a real small tmpfs where user
namespaces allow mounting one, else an injected ENOSPC from the write.
"""

import errno
import os
import random
import shutil
import struct
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest
import torch
from safetensors.torch import load_file, save_file

from ganzoo.train import checkpoint as ckpt
from ganzoo.train.checkpoint import writing
from helpers import SMOKE, invoke

TRAIN = [*SMOKE, "--batch-size", 8, "--sample-every", 1000, "--checkpoint-every", 2]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A dcgan run with checkpoints at steps 2 and 4 (keep_checkpoints=2)."""
    run = tmp_path_factory.mktemp("faults") / "run"
    result = invoke("train", "dcgan", *TRAIN, "--steps", 4, "--out", run)
    assert result.exit_code == 0, result.output
    assert [p.name for p in ckpt.checkpoint_dirs(run)] == ["step-0000002", "step-0000004"]
    return run


@pytest.fixture
def run(trained, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


def newest(run: Path) -> Path:
    return run / "checkpoints" / "step-0000004"


def rewrite_state(path: Path, change) -> None:
    state = torch.load(path / ckpt.TRAINER_STATE, weights_only=True)
    change(state)
    torch.save(state, path / ckpt.TRAINER_STATE)


def rewrite_networks(path: Path, change) -> None:
    tensors = load_file(path / ckpt.NETWORKS)
    change(tensors)
    save_file(tensors, path / ckpt.NETWORKS)


def edit_bytes(path: Path, change) -> None:
    path.write_bytes(change(path.read_bytes()))


GARBAGE = bytes(random.Random(13).randrange(256) for _ in range(4000))

# kind -> (damage applied to the newest checkpoint folder, the file it names, what the message says)
DAMAGE = {
    "trainer.pt missing a key": (lambda c: rewrite_state(c, lambda s: s.pop("optimizers")),
                                 ckpt.TRAINER_STATE, "key 'optimizers' is missing"),
    "trainer.pt wrong type": (lambda c: rewrite_state(c, lambda s: s["rng"].update(loss=[1, 2])),
                              ckpt.TRAINER_STATE, "'rng/loss' should be an RNG state (uint8 tensor), found list"),
    "trainer.pt garbage": (lambda c: (c / ckpt.TRAINER_STATE).write_bytes(GARBAGE),
                           ckpt.TRAINER_STATE, "not a trainer"),
    "trainer.pt truncated": (lambda c: edit_bytes(c / ckpt.TRAINER_STATE, lambda b: b[: len(b) // 2]),
                             ckpt.TRAINER_STATE, "not a readable PyTorch file"),
    "trainer.pt pickled object": (lambda c: torch.save({"step": 4, "x": PurePosixPath("/x")}, c / ckpt.TRAINER_STATE),
                                  ckpt.TRAINER_STATE, "refused unread: it holds a pickled object"),
    "networks truncated": (lambda c: edit_bytes(c / ckpt.NETWORKS, lambda b: b[: len(b) - 100]),
                           ckpt.NETWORKS, "(truncated or extended)"),
    "networks header truncated": (lambda c: edit_bytes(c / ckpt.NETWORKS, lambda b: b[:5]),
                                  ckpt.NETWORKS, "5 bytes, too short for a safetensors file"),
    "networks garbage": (lambda c: (c / ckpt.NETWORKS).write_bytes(GARBAGE), ckpt.NETWORKS, "-byte header in a 4000"),
    "networks header length 2^62": (lambda c: edit_bytes(c / ckpt.NETWORKS, lambda b: struct.pack("<Q", 2**62) + b[8:]),
                                    ckpt.NETWORKS, f"declares a {2**62}-byte header"),
    "networks header not JSON": (lambda c: edit_bytes(c / ckpt.NETWORKS, lambda b: b[:8] + b"\xff" + b[9:]),
                                 ckpt.NETWORKS, "the safetensors header is not valid JSON"),
    "empty folder": (lambda c: [p.unlink() for p in c.iterdir()], "", "missing (empty folder)"),
    "one of two files": (lambda c: (c / ckpt.TRAINER_STATE).unlink(), "", "trainer.pt missing"),
}


def assert_fell_back(result, run: Path, kind: str) -> None:
    """One warning naming the damaged checkpoint's file and the reason, and the checkpoint used instead."""
    _, file, reason = DAMAGE[kind]
    named = newest(run) / file if file else newest(run)
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, result.output
    assert f"skipping damaged checkpoint step-0000004 ({named}" in warnings[0] and reason in warnings[0], warnings[0]
    assert warnings[0].endswith(f"using {run / 'checkpoints' / 'step-0000002'}")
    assert "Traceback" not in result.output and "weights_only" not in result.output


@pytest.mark.parametrize("kind", DAMAGE)
def test_info_and_sample_name_a_damaged_newest_checkpoint_and_use_the_one_before(run, kind, tmp_path):
    DAMAGE[kind][0](newest(run))
    info = invoke("info", run)
    assert info.exit_code == 0, info.output
    assert_fell_back(info, run, kind)
    listed = next(line for line in info.output.splitlines() if line.startswith("checkpoints:"))
    assert listed == ("checkpoints:  step-0000002" if kind in ("empty folder", "one of two files")
                      else "checkpoints:  step-0000002, step-0000004")  # complete folders only
    assert "parameters:   D 10,976, G 18,672, G_ema 18,672 (step-0000002)" in info.output
    sample = invoke("sample", run, "--n", 4, "--out", tmp_path / "grid.png")
    assert sample.exit_code == 0, sample.output
    assert_fell_back(sample, run, kind)
    assert "(step 2, seed 0)" in sample.output


@pytest.mark.parametrize("kind", ["trainer.pt missing a key", "trainer.pt pickled object",
                                  "networks header length 2^62", "one of two files"])
def test_resume_falls_back_to_the_newest_intact_checkpoint_and_rewrites_the_damaged_step(run, kind):
    DAMAGE[kind][0](newest(run))
    result = invoke("train", "dcgan", *TRAIN, "--resume", run, "--steps", 5)
    assert result.exit_code == 0, result.output
    assert_fell_back(result, run, kind)
    assert "steps 2 -> 5" in result.output
    assert [p.name for p in ckpt.checkpoint_dirs(run)] == ["step-0000004", "step-0000005"]
    assert ckpt.newest_intact(run) == (run / "checkpoints" / "step-0000005", [])
    assert ckpt.problem(newest(run)) is None  # step 4 was trained again and replaced whole


def test_export_falls_back_too(run, tmp_path):
    DAMAGE["networks truncated"][0](newest(run))
    result = invoke("export", run, "--out", tmp_path / "onnx")
    assert result.exit_code == 0, result.output
    assert_fell_back(result, run, "networks truncated")
    assert (tmp_path / "onnx" / "dcgan-G.onnx").exists()


def test_no_intact_checkpoint_is_one_error_naming_each(run, tmp_path):
    DAMAGE["networks header length 2^62"][0](newest(run))
    DAMAGE["trainer.pt missing a key"][0](run / "checkpoints" / "step-0000002")
    for args in (["info", run], ["sample", run, "--out", tmp_path / "x.png"], ["export", run, "--out", tmp_path / "e"],
                 ["train", "dcgan", *TRAIN, "--resume", run, "--steps", 6]):
        result = invoke(*args)
        assert result.exit_code == 1, result.output
        error = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert len(error) == 1 and "Traceback" not in result.output, result.output
        assert error[0].startswith(f"Error: no intact checkpoint in {run / 'checkpoints'}: ")
        assert f"{newest(run) / ckpt.NETWORKS}: declares a {2**62}-byte header" in error[0]
        assert f"{run / 'checkpoints' / 'step-0000002' / ckpt.TRAINER_STATE}: key 'optimizers' is missing" in error[0]
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "e").exists()


def test_a_shape_mismatch_names_the_tensor_and_both_shapes(run):
    config = run / "config.json"
    config.write_text(config.read_text().replace('"ngf": 8', '"ngf": 16'))
    result = invoke("sample", run)
    assert result.exit_code == 1
    assert result.output.strip() == (f"Error: {newest(run) / ckpt.NETWORKS}: G_ema/main.0.linear.weight: checkpoint "
                                     "has (512, 16), the network built from config.json has (1024, 16)")


def test_a_checkpoint_without_the_runs_ema_names_G_ema(run):
    for folder in ckpt.checkpoint_dirs(run):
        rewrite_networks(folder, lambda t: [t.pop(k) for k in list(t) if k.startswith("G_ema/")])
    result = invoke("train", "dcgan", *TRAIN, "--resume", run, "--steps", 6)
    assert result.exit_code == 1
    expected = f"Error: {newest(run) / ckpt.NETWORKS}: no weights for network 'G_ema' (it has D, G)"
    assert result.output.strip() == expected


def test_weights_with_nan_are_refused_by_sample_and_export_naming_the_tensor(run, tmp_path):
    rewrite_networks(newest(run), lambda t: t["D/main.0.weight"].fill_(float("inf")))
    assert invoke("sample", run, "--n", 4, "--out", tmp_path / "d.png").exit_code == 0  # D draws nothing
    rewrite_networks(newest(run), lambda t: t["G_ema/main.3.weight"][0].fill_(float("nan")))
    older = ckpt.step_of(ckpt.checkpoint_dirs(run)[-2])  # the one before is finite: named as the way out
    expected = (f"Error: {newest(run) / ckpt.NETWORKS}: tensor G_ema/main.3.weight holds NaN or inf; refusing to use "
                f"these weights (they cannot make images); the newest checkpoint with finite weights is step {older}: "
                f"pass --step {older}")
    for args in (["sample", run, "--out", tmp_path / "x.png"], ["export", run, "--out", tmp_path / "e"]):
        result = invoke(*args)
        assert result.exit_code == 1 and result.output.strip() == expected, result.output
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "e").exists()


def _user_namespaces() -> bool:
    """Whether this machine lets an unprivileged process mount a tmpfs of its own (a real small filesystem)."""
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-Urm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /tmp"],
                           capture_output=True)
    return probe.returncode == 0


USERNS = _user_namespaces()


def assert_full_disk_reported(returncode, stderr, run_dir: Path, left: list[str], kept: Path) -> None:
    lines = stderr.strip().splitlines()
    assert returncode == 1 and "Traceback" not in stderr, stderr
    root = run_dir / "checkpoints"
    assert lines[-1] == (f"Error: cannot write checkpoint {root / 'step-0000002' / ckpt.TRAINER_STATE}: No space left "
                         f"on device; the previous checkpoint {root / 'step-0000001'} is kept"), stderr
    assert left == ["step-0000001"]  # the temporary folder is gone
    assert ckpt.problem(kept) is None
    assert ckpt.load_networks(kept) and ckpt.load_trainer_state(kept)["step"] == 1


@pytest.mark.skipif(not USERNS, reason="no user namespaces to mount a small tmpfs (the injected test runs instead)")
def test_a_full_disk_during_a_save_is_one_error_and_keeps_the_previous_checkpoint(tmp_path):
    """A real ENOSPC: checkpoints/ is a 700 KiB tmpfs, one checkpoint takes ~470 KiB."""
    run_dir, saved = tmp_path / "run", tmp_path / "saved"
    (run_dir / "checkpoints").mkdir(parents=True)
    exe = Path(sys.executable).with_name("ganzoo")
    train = [str(exe), "train", "dcgan", *map(str, TRAIN), "--checkpoint-every", "1", "--steps", "5",
             "--set", "keep_checkpoints=1", "--out", str(run_dir)]
    script = ('t="$1"; shift; mount -t tmpfs -o size=700k tmpfs "$t/run/checkpoints" || exit 99; "$@" 2>"$t/stderr"; '
              'rc=$?; ls -A "$t/run/checkpoints" >"$t/left"; cp -a "$t/run/checkpoints/." "$t/saved"; exit $rc')
    saved.mkdir()
    result = subprocess.run(["unshare", "-Urm", "sh", "-c", script, "sh", str(tmp_path), *train],
                            capture_output=True, text=True)
    assert result.returncode != 99, result.stderr
    assert_full_disk_reported(result.returncode, (tmp_path / "stderr").read_text(), run_dir,
                              (tmp_path / "left").read_text().split(), saved / "step-0000001")


@pytest.mark.skipif(USERNS, reason="the real full-disk test runs here")
def test_an_injected_full_disk_during_a_save_is_one_error_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    """Where no small filesystem can be mounted: ENOSPC from step 2's trainer.pt, after a partial write."""
    real = writing._write_synced

    def full_disk(path, write):
        if path.name == ckpt.TRAINER_STATE and ".step-0000002." in path.parent.name:
            path.write_bytes(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(path, write)

    monkeypatch.setattr(writing, "_write_synced", full_disk)
    run_dir = tmp_path / "run"
    result = invoke("train", "dcgan", *TRAIN, "--checkpoint-every", 1, "--steps", 5, "--set", "keep_checkpoints=1",
                    "--out", run_dir)
    assert_full_disk_reported(result.exit_code, result.output, run_dir, sorted(os.listdir(run_dir / "checkpoints")),
                              run_dir / "checkpoints" / "step-0000001")
