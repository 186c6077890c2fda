"""Evaluation during training (--eval-every): logged, ranked, the best checkpoint kept and resumed exactly."""

import json
import os

import pytest
import torch

from ganzoo.train import checkpoint as ckpt
from helpers import SMOKE, checkpoint_tensors, invoke

EVAL = ["--eval-every", "4", "--eval-n", "300", "--batch-size", "8", "--checkpoint-every", "1000"]


def eval_records(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if any(k.startswith("eval/") for k in r)]


def test_training_logs_the_metric_links_the_best_and_matches_ganzoo_eval(tmp_path):
    run = tmp_path / "run"
    result = invoke("train", "dcgan", *SMOKE, *EVAL, "--steps", 10, "--set", "keep_checkpoints=1", "--out", run)
    assert result.exit_code == 0, result.output
    records = eval_records(run)
    # every 4 steps, and at the end of the run
    assert [r["step"] for r in records] == [4, 8, 10]
    scores = {r["step"]: r["eval/fd-fmnist"] for r in records}
    assert all(0 < value < float("inf") for value in scores.values())
    best_step = min(scores, key=scores.get)
    best = ckpt.best_checkpoint(run)
    assert best is not None and ckpt.step_of(best) == best_step
    assert (run / "checkpoints" / "best").readlink().as_posix() == f"step-{best_step:07d}"
    # keep_checkpoints=1 keeps the newest and, besides it, the best
    assert {ckpt.step_of(d) for d in ckpt.checkpoint_dirs(run)} == {best_step, 10}
    # the logged number is the one `ganzoo eval` gives for that checkpoint with the same n and seed
    evaluated = invoke("eval", run, "--step", "best", "--metrics", "fd-fmnist", "--n", 300, "--device", "cpu",
                       "--out", tmp_path / "best.json")
    assert evaluated.exit_code == 0, evaluated.output
    again = json.loads((tmp_path / "best.json").read_text())
    assert again["step"] == best_step
    assert again["results"]["samples"]["values"]["fd-fmnist"] == pytest.approx(scores[best_step], rel=1e-9)
    # the trainer state of the best checkpoint names it, and info shows it
    state = torch.load(best / ckpt.TRAINER_STATE, weights_only=True)
    assert state["best"]["step"] == best_step and state["best"]["value"] == pytest.approx(scores[best_step])
    assert f"best:         {best}" in invoke("info", run).output
    # and TensorBoard has the same numbers at the same steps
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard")).Reload()
    logged = {e.step: e.value for e in events.Scalars("eval/fd-fmnist")}
    assert logged == pytest.approx(scores, rel=1e-6)


def test_resume_keeps_the_best_so_far_and_evaluation_never_changes_training(tmp_path):
    one = invoke("train", "dcgan", *SMOKE, *EVAL, "--steps", 12, "--out", tmp_path / "one")
    assert one.exit_code == 0, one.output
    first = invoke("train", "dcgan", *SMOKE, *EVAL, "--steps", 8, "--out", tmp_path / "split")
    assert first.exit_code == 0, first.output
    second = invoke("train", "dcgan", "--resume", tmp_path / "split", "--steps", 12)
    assert second.exit_code == 0, second.output
    a, b = checkpoint_tensors(tmp_path / "one"), checkpoint_tensors(tmp_path / "split")
    assert "state/best/step" in a
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]) if torch.is_tensor(a[key]) else a[key] == b[key], key
    assert eval_records(tmp_path / "one") == [
        {**r, "eval/seconds": s["eval/seconds"]} for r, s in zip(eval_records(tmp_path / "split"),
                                                                  eval_records(tmp_path / "one"))]
    assert (ckpt.step_of(ckpt.best_checkpoint(tmp_path / "one"))
            == ckpt.step_of(ckpt.best_checkpoint(tmp_path / "split")) == a["state/best/step"])
    # the same run without evaluation trains to the same weights: evaluation draws no training randomness
    plain = invoke("train", "dcgan", *SMOKE, "--batch-size", "8", "--checkpoint-every", "1000", "--steps", 12,
                   "--out", tmp_path / "plain")
    assert plain.exit_code == 0, plain.output
    c = checkpoint_tensors(tmp_path / "plain")
    assert {k for k in a if not k.startswith("state/best/")} == c.keys()
    for key in c:
        assert torch.equal(a[key], c[key]) if torch.is_tensor(c[key]) else a[key] == c[key], key


def test_another_eval_setting_on_resume_ranks_afresh(tmp_path):
    run = tmp_path / "run"
    assert invoke("train", "dcgan", *SMOKE, *EVAL, "--steps", 4, "--out", run).exit_code == 0
    assert ckpt.step_of(ckpt.best_checkpoint(run)) == 4
    result = invoke("train", "dcgan", "--resume", run, "--steps", 6, "--eval-every", "6", "--eval-n", "200")
    assert result.exit_code == 0, result.output
    assert "ranking starts afresh" in result.output
    assert ckpt.step_of(ckpt.best_checkpoint(run)) == 6  # the only score on the new setting
    assert [r["step"] for r in eval_records(run)] == [4, 6]


def test_cyclegan_is_evaluated_in_both_directions(tmp_path):
    run = tmp_path / "run"
    result = invoke("train", "cyclegan", *SMOKE, "--steps", 2, "--eval-every", "2", "--eval-n", "50",
                    "--out", run)
    assert result.exit_code == 0, result.output
    (record,) = eval_records(run)
    assert {"eval/a2b/fd-fmnist", "eval/b2a/fd-fmnist"} <= record.keys()
    assert ckpt.step_of(ckpt.best_checkpoint(run)) == 2


@pytest.mark.parametrize("args, message", [
    (["--eval-every", "2", "--eval-metric", "pr"], "eval_metric"),
    (["--eval-every", "2", "--eval-metric", "nope"], "fd-fmnist"),
    (["--eval-every", "-1"], "eval_every"),
    (["--eval-every", "2", "--eval-n", "20000"], "--eval-n 20000 is more than the 10000 real images"),
    (["--eval-every", "2", "--eval-weights", "/nonexistent/w.pth"], "/nonexistent/w.pth"),
])
def test_bad_eval_options_are_named_and_nothing_is_made(tmp_path, args, message):
    run = tmp_path / "run"
    result = invoke("train", "dcgan", *SMOKE, "--steps", 2, *args, "--out", run)
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not run.exists()


def test_missing_extractor_weights_offline_stop_before_the_run_starts(tmp_path, monkeypatch):
    monkeypatch.setenv("GANZOO_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    run = tmp_path / "run"
    result = invoke("train", "dcgan", *SMOKE, "--steps", 2, "--eval-every", "2", "--eval-metric", "fid",
                    "--out", run)
    assert result.exit_code == 1
    assert "weights-inception-2015-12-05" in result.output and str(tmp_path / "torch") in result.output
    assert "--eval-weights FILE" in result.output and "Traceback" not in result.output
    assert not run.exists()


def test_eval_step_best_without_a_link_says_how_to_make_one(tmp_path):
    run = tmp_path / "run"
    assert invoke("train", "dcgan", *SMOKE, "--steps", 1, "--out", run).exit_code == 0
    result = invoke("eval", run, "--step", "best")
    assert result.exit_code == 1 and "--eval-every" in result.output


def _tiny_checkpoint(run, step, keep):
    net = torch.nn.Linear(2, 2)
    state = {"step": step, "optimizers": {}, "scaler": {}, "rng": {"loss": torch.get_rng_state(),
             "torch": torch.get_rng_state()}, "data": {"epoch": 0, "index": 0}, "nonfinite": {}}
    return ckpt.save_checkpoint(run, step, {"G": net}, state, keep=keep)


def test_pruning_keeps_the_newest_and_the_best(tmp_path):
    _tiny_checkpoint(tmp_path, 1, keep=2)
    ckpt.mark_best(tmp_path, 1)
    for step in (2, 3, 4):
        _tiny_checkpoint(tmp_path, step, keep=2)
    assert [ckpt.step_of(d) for d in ckpt.checkpoint_dirs(tmp_path)] == [1, 3, 4]
    ckpt.mark_best(tmp_path, 4)  # a new best among the newest: the old best is an ordinary checkpoint again
    ckpt.prune(tmp_path, 2, 4)
    assert [ckpt.step_of(d) for d in ckpt.checkpoint_dirs(tmp_path)] == [3, 4]
    assert ckpt.best_checkpoint(tmp_path).name == "step-0000004"


def test_a_best_link_is_only_followed_to_a_sibling_checkpoint(tmp_path):
    _tiny_checkpoint(tmp_path, 1, keep=2)
    link = tmp_path / "checkpoints" / "best"
    for target in (str(tmp_path / "checkpoints" / "step-0000001"), "../checkpoints/step-0000001", "step-0000009"):
        link.unlink(missing_ok=True)
        os.symlink(target, link)
        assert ckpt.best_checkpoint(tmp_path) is None, target


def test_a_killed_runs_half_made_best_link_is_cleaned_up(tmp_path):
    _tiny_checkpoint(tmp_path, 1, keep=2)
    stale = tmp_path / "checkpoints" / ".best.tmp-999999999"
    os.symlink("step-0000001", stale)
    assert stale in ckpt.remove_stale(tmp_path)
    assert not stale.is_symlink()


def test_a_damaged_best_record_in_the_trainer_state_is_named(tmp_path):
    state = {"step": 1, "optimizers": {}, "scaler": {}, "rng": {"loss": torch.get_rng_state(),
             "torch": torch.get_rng_state()}, "data": {"epoch": 0, "index": 0}, "nonfinite": {},
             "best": {"step": 1, "value": "low", "signature": "{}"}}
    with pytest.raises(ckpt.DamagedCheckpoint, match="'best/value' should be a number"):
        ckpt.check_trainer_state(state, tmp_path / "trainer.pt")


def test_sample_and_export_take_a_step_or_best(tmp_path):
    run = tmp_path / "run"
    assert invoke("train", "dcgan", *SMOKE, *EVAL, "--steps", 8, "--checkpoint-every", "2", "--out", run).exit_code == 0
    best = ckpt.step_of(ckpt.best_checkpoint(run))
    sampled = invoke("sample", run, "--step", "best", "--n", 2, "--out", tmp_path / "best.png")
    assert sampled.exit_code == 0 and f"(step {best}, seed 0)" in sampled.output
    older = invoke("sample", run, "--step", 6, "--n", 2, "--out", tmp_path / "six.png")
    assert older.exit_code == 0 and "(step 6, seed 0)" in older.output
    gone = invoke("sample", run, "--step", 2, "--n", 2, "--out", tmp_path / "two.png")
    assert gone.exit_code == 1 and "steps kept: " in gone.output
    bad = invoke("sample", run, "--step", "newest")
    assert bad.exit_code == 2 and "takes a step number or 'best'" in bad.output
    exported = invoke("export", run, "--step", "best", "--out", tmp_path / "export")
    assert exported.exit_code == 0, exported.output
    (model,) = (tmp_path / "export").glob("*.onnx")
    from ganzoo.runtime import load

    assert json.loads(load(model, "cpu").metadata.raw["plugin"])["step"] == best
    refused = invoke("sample", model, "--step", 4)
    assert refused.exit_code == 1 and "a model file has none" in refused.output
