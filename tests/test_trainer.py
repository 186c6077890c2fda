"""The trainer knows architectures only through the contract: phases, shared optimizers,
cadence, schedules, precision, compile, EMA and the non-finite guard, shown on a toy plugin."""

import contextlib
import dataclasses
import json

import numpy as np
import pytest
import torch
from torch import nn

from ganzoo import config, registry
from ganzoo.api import IMAGES, Adam, Architecture, DataSpec, Generator, Phase
from ganzoo.testing import synthetic_data
from ganzoo.train.ema import ema_beta, update_ema
from ganzoo.train.trainer import Trainer, TrainingDiverged, check_phases


@dataclasses.dataclass
class ToyConfig:
    batch_size: int = 4
    lr: float = 0.1
    reg_interval: int = 2
    poison: bool = False  # the D loss becomes NaN
    poison_loss_at: tuple[int, ...] = ()  # steps whose D loss becomes NaN, each once (a transient fault)
    poison_grad_at: tuple[int, ...] = ()  # steps whose D gradients become NaN while the loss stays finite, once
    halve_lr: bool = False


class ToyGAN(Architecture):
    """8x8 grey images from a linear generator; D has a main phase and a lazy regulariser."""

    name = "toy"
    summary = "toy"
    Config = ToyConfig

    def __init__(self):
        self.poisoned = set()  # (kind, step) already injected: a fault happens once, a rerun after rollback is clean

    def _poison(self, kind, steps, step):
        if step in steps and (kind, step) not in self.poisoned:
            self.poisoned.add((kind, step))
            return True
        return False

    def data_spec(self, cfg):
        return DataSpec(IMAGES, 8, 1)

    def build(self, cfg):
        G = nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Unflatten(1, (1, 8, 8)))
        D = nn.Sequential(nn.Flatten(), nn.Linear(64, 1), nn.Flatten(0))
        return {"G": G, "D": D}

    def phases(self, cfg):
        schedule = (lambda step, total: 0.5) if cfg.halve_lr else None
        adam = Adam(lr=cfg.lr, betas=(0.0, 0.99), schedule=schedule)
        return [Phase("D", ("D",), adam), Phase("Dreg", ("D",), None, interval=cfg.reg_interval, eager=True),
                Phase("G", ("G",), adam)]

    def loss(self, phase, nets, batch, ctx):
        G, D = nets["G"], nets["D"]
        real = batch["image"]
        if phase.name == "Dreg":
            return (D(real) ** 2).mean() * phase.interval
        fake = G(ctx.randn(real.shape[0], 4))
        if phase.name == "D":
            loss = nn.functional.softplus(D(fake.detach())).mean() + nn.functional.softplus(-D(real)).mean()
            if ctx.cfg.poison or self._poison("loss", ctx.cfg.poison_loss_at, ctx.step):
                return loss * float("nan")
            if self._poison("grad", ctx.cfg.poison_grad_at, ctx.step):  # d sqrt(x)/dx at 0 is inf; inf * 0 is NaN
                return loss + torch.sqrt(D[1].weight.sum() * 0.0)
            return loss
        return nn.functional.softplus(-D(fake)).mean()

    def generators(self, cfg):
        return {"G": Generator("G", ("z",), lambda n, seed: {
            "z": np.random.default_rng(seed).standard_normal((n, 4), dtype=np.float32)})}


def toy_trainer(tmp_path, steps=4, **values):
    arch = ToyGAN()
    resolved = config.resolve(arch, sets=values, flags={"steps": steps, "device": "cpu", "log_every": 1,
                                                        "sample_n": 4})
    return Trainer(arch, resolved, synthetic_data(arch, resolved.config, n=16), tmp_path / "run")


def metrics(tmp_path):
    return [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]


def test_lazy_phase_runs_on_its_interval_and_shares_the_main_optimizer(tmp_path):
    trainer = toy_trainer(tmp_path, steps=5, reg_interval=2)
    assert set(trainer.optimizers) == {("D",), ("G",)}
    trainer.run()
    ran = [r["step"] - 1 for r in metrics(tmp_path) if "loss/Dreg" in r]
    assert ran == [0, 2, 4]
    opt, _ = trainer.optimizers[("D",)]
    assert int(opt.state[next(iter(opt.state))]["step"]) == 5 + 3  # main steps + lazy steps


def test_lr_schedule_is_applied(tmp_path):
    trainer = toy_trainer(tmp_path, steps=1, halve_lr=True)
    trainer.run()
    assert all(group["lr"] == pytest.approx(0.05) for opt, _ in trainer.optimizers.values() for group in opt.param_groups)


def test_nonfinite_losses_skip_updates_then_stop_with_a_message(tmp_path):
    trainer = toy_trainer(tmp_path, steps=50, poison=True, max_nonfinite=3)
    D_before = [p.detach().clone() for p in trainer.nets["D"].parameters()]
    with pytest.raises(TrainingDiverged, match="phase 'D' was not finite for 3 consecutive runs of it, at step 2"):
        trainer.run()
    # The D main phase never stepped (the lazy phase did, on step 0 and 2). The third skip was in step 2; it
    # is read at the next log point, after that step (log_every=1).
    assert trainer.step == 3
    assert any(not torch.equal(a, b) for a, b in zip(D_before, trainer.nets["D"].parameters()))


def test_phases_are_checked():
    nets = {"G": nn.Linear(1, 1)}
    with pytest.raises(ValueError, match="unknown networks"):
        check_phases([Phase("D", ("D",), Adam(1e-3))], nets)
    with pytest.raises(ValueError, match="no optimizer"):
        check_phases([Phase("Greg", ("G",), None)], nets)
    with pytest.raises(ValueError, match="different optimizers"):
        check_phases([Phase("a", ("G",), Adam(1e-3)), Phase("b", ("G",), Adam(2e-3))], nets)


def test_ema_arithmetic_includes_buffers():
    live = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    ema = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    live[1].running_mean.fill_(2.0)
    live[1].num_batches_tracked.fill_(7)
    expected = {k: 0.9 * v_e + 0.1 * v_l for (k, v_e), v_l in zip(ema.state_dict().items(), live.state_dict().values())
                if v_e.is_floating_point()}
    update_ema(ema, live, beta=0.9)
    for key, value in ema.state_dict().items():
        if key in expected:
            torch.testing.assert_close(value, expected[key])
    assert ema[1].num_batches_tracked.item() == 7


def test_ema_half_life_and_rampup():
    assert ema_beta(32, 10**9, ema_kimg=10, ema_rampup=0.05) == pytest.approx(0.5 ** (32 / 10_000))
    assert ema_beta(32, 320, ema_kimg=10, ema_rampup=0.05) == pytest.approx(0.5 ** (32 / 16))
    assert ema_beta(32, 320, ema_kimg=10, ema_rampup=0) == pytest.approx(0.5 ** (32 / 10_000))


def test_ema_off_means_no_ema_networks(tmp_path):
    trainer = toy_trainer(tmp_path, steps=1, ema_kimg=0)
    trainer.run()
    from safetensors.torch import load_file

    keys = load_file(tmp_path / "run" / "checkpoints" / "step-0000001" / "networks.safetensors").keys()
    assert not any(k.startswith("G_ema/") for k in keys) and any(k.startswith("G/") for k in keys)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_on_cpu(tmp_path, precision):
    arch = registry.get("dcgan")
    resolved = config.resolve(arch, preset="smoke", flags={"steps": 3, "device": "cpu", "precision": precision,
                                                                  "log_every": 1})
    trainer = Trainer(arch, resolved, synthetic_data(arch, resolved.config), tmp_path / "run")
    trainer.run()
    assert all(np.isfinite(r["loss/G"]) and np.isfinite(r["loss/D"]) for r in metrics(tmp_path))
    state = torch.load(tmp_path / "run" / "checkpoints" / "step-0000003" / "trainer.pt", weights_only=True)
    assert bool(state["scaler"]) == (precision == "fp16")


def test_compiled_training_matches_eager(tmp_path):
    arch = registry.get("dcgan")
    results = {}
    for compile_ in (False, True):
        resolved = config.resolve(arch, preset="smoke", flags={"steps": 2, "device": "cpu", "compile": compile_})
        trainer = Trainer(arch, resolved, synthetic_data(arch, resolved.config), tmp_path / f"run-{compile_}")
        trainer.run()
        results[compile_] = {k: v.clone() for k, v in trainer.nets["G"].state_dict().items()}
    for key, value in results[False].items():
        torch.testing.assert_close(results[True][key], value, rtol=1e-3, atol=1e-5)


def test_tensorboard_events_are_written(tmp_path):
    pytest.importorskip("tensorboard")
    toy_trainer(tmp_path, steps=2).run()
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


def cuda_numerics() -> tuple[bool, bool, bool]:
    return (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)


@pytest.mark.parametrize("options", [{"tf32_matmul": "on", "tf32_conv": "off", "cudnn_benchmark": "on"},
                                     {"tf32_matmul": "off", "tf32_conv": "on", "cudnn_benchmark": "off"}])
def test_tf32_and_cudnn_autotuning_hold_while_the_run_trains_and_only_then(tmp_path, options):
    """Process-wide switches: the Engine applies the run's options inside run() and puts the old values back."""
    before = cuda_numerics()
    trainer = toy_trainer(tmp_path, steps=2, **options)
    assert cuda_numerics() == before  # building a trainer changes nothing
    seen = []
    trainer.timing = lambda part: seen.append(cuda_numerics()) or contextlib.nullcontext()
    trainer.run()
    expected = tuple(options[k] == "on" for k in ("tf32_matmul", "tf32_conv", "cudnn_benchmark"))
    assert seen and set(seen) == {expected}
    assert cuda_numerics() == before
    assert {k: getattr(trainer.opts, k) for k in options} == {k: v == "on" for k, v in options.items()}


def test_the_fast_path_is_the_default_and_is_recorded_in_config_json(tmp_path):
    from helpers import SMOKE, invoke

    assert invoke("train", "dcgan", *SMOKE, "--steps", 1, "--out", tmp_path / "run").exit_code == 0
    train = json.loads((tmp_path / "run" / "config.json").read_text())["train"]
    assert (train["tf32_matmul"], train["tf32_conv"], train["cudnn_benchmark"]) == (True, True, True)


def test_a_dataset_of_the_wrong_kind_is_refused():
    from ganzoo.data.unpaired import UnpairedSet
    from ganzoo.train.feed import make_feed

    images = torch.zeros(8, 1, 8, 8, dtype=torch.uint8)
    with pytest.raises(TypeError, match="DataSpec kind 'images' needs an ImageSet, got UnpairedSet"):
        make_feed(UnpairedSet(images, images, "x", "x"), 2, 0, torch.device("cpu"), DataSpec(IMAGES, 8, 1))
