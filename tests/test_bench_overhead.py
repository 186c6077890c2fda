"""The host-overhead section: the Trainer against a bare loop that computes exactly what it computes.

The comparison means something only if the two do the same work; with the EMA
off they must hold bitwise-equal weights after a lazy-regularisation window.
Speeds are never asserted, only the record's fields.
"""

import json

import pytest
import torch
from torch import nn

from ganzoo import config, registry
from ganzoo.bench.bare_loop import BareLoop
from ganzoo.bench.overhead import LOOPS
from ganzoo.bench.report import case_section, markdown
from ganzoo.bench.training import lazy_window
from ganzoo.testing import synthetic_data
from ganzoo.train.ema import update_ema
from ganzoo.train.trainer import Trainer
from helpers import invoke

BUILT_IN = ["dcgan", "cyclegan", "stylegan-lite"]


def _tensors(nets: dict) -> dict[str, torch.Tensor]:
    return {f"{role}.{key}": t.detach().clone() for role, m in nets.items() for key, t in m.state_dict().items()}


@pytest.mark.parametrize("name", BUILT_IN)
def test_the_bare_loop_computes_bitwise_what_the_trainer_computes(name, tmp_path):
    """Same config, seed and data, EMA off: after a whole lazy window and one step more (StyleGAN-lite's R1 and
    path-length phases included) every weight and buffer of every network is bitwise the same."""
    arch = registry.get(name)
    resolved = config.resolve(arch, preset="smoke", data="synthetic", flags={"device": "cpu", "ema_kimg": 0.0})
    data = synthetic_data(arch, resolved.config, n=64)
    trainer = Trainer(arch, resolved, data, tmp_path)
    bare = BareLoop(arch, resolved, data)
    before = _tensors(bare.nets)
    assert before.keys() == _tensors(trainer.nets).keys()
    steps = lazy_window(trainer) + 1
    assert steps == (17 if name == "stylegan-lite" else 2)
    for _ in range(steps):
        trainer.train_step()
        bare.train_step()
    assert trainer.step == bare.step == steps
    ours, theirs = _tensors(trainer.nets), _tensors(bare.nets)
    differ = [key for key in ours if not torch.equal(ours[key], theirs[key])]
    assert not differ, f"{name}: the bare loop computed something else for {differ[:5]}"
    moved = [key for key in ours if ours[key].is_floating_point() and not torch.equal(ours[key], before[key])]
    assert len(moved) > len(ours) // 2  # they trained, so equality is not the untouched initial weights


class _Reassigns(nn.Module):
    """A network that replaces its buffer by a new tensor each forward, instead of writing into it."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2)
        self.register_buffer("seen", torch.zeros(2))

    def forward(self, x):
        self.seen = self.seen + x.detach().mean(0)  # nn.Module.__setattr__ puts the new tensor in _buffers
        return self.lin(x)


def test_the_ema_averages_a_buffer_the_network_reassigned():
    """The EMA lists a network's submodules once (not its tensors), so it follows a buffer replaced later."""
    live = _Reassigns()
    ema = _Reassigns()
    ema.load_state_dict(live.state_dict())
    update_ema(ema, live, 0.5)  # the first update lists the submodules
    live(torch.ones(3, 2))
    live(torch.ones(3, 2))
    update_ema(ema, live, 0.5)
    assert torch.equal(ema.seen, torch.full((2,), 1.0))  # lerp(0, 2, 0.5): the new buffer, not the old zeros
    with torch.no_grad():
        live.lin.weight.add_(2.0)
    weight = ema.lin.weight.clone()
    update_ema(ema, live, 0.75)
    assert torch.equal(ema.lin.weight, torch.lerp(weight, live.lin.weight, 0.25))


def test_host_overhead_records_each_loop_and_the_ratios(tmp_path):
    out = tmp_path / "r.json"
    result = invoke("bench", "dcgan", "--size", "smoke", "--device", "cpu", "--no-training", "--no-inference",
                    "--host-overhead", "--warmup", "1", "--steps", "17", "--json", out, "--markdown", tmp_path / "r.md")
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    [case] = record["cases"]
    assert "training" not in case and "inference" not in case
    section = case["host_overhead"]
    assert list(section["loops"]) == list(LOOPS) == ["trainer", "trainer-no-ema", "bare"]
    assert section["block_steps"] == 8 and section["rounds"] == 3 and section["warmup"] == 1  # 17 steps: 3 blocks
    assert section["threads"] == torch.get_num_threads() and section["ema_kimg"] == 10.0  # the default: EMA on
    for row in section["loops"].values():
        assert len(row["block_mean_s"]) == 3 and all(s > 0 for s in row["block_mean_s"])
        assert sorted(row["block_mean_s"])[1] == row["median_s"] and row["cpu_median_s"] > 0
        assert row["noisy"] == (row["spread"] > 1.5)
    loops = section["loops"]
    assert section["ratio"] == pytest.approx(loops["trainer"]["median_s"] / loops["bare"]["median_s"])
    assert section["ratio_no_ema"] == pytest.approx(loops["trainer-no-ema"]["median_s"] / loops["bare"]["median_s"])
    assert section["cpu_ratio"] == pytest.approx(loops["trainer"]["cpu_median_s"] / loops["bare"]["cpu_median_s"])
    assert "host overhead: trainer " in result.output and "bare loop" in result.output
    tables = (tmp_path / "r.md").read_text()
    assert tables == markdown(record) and case_section(case) in tables
    assert "| trainer-no-ema |" in tables and f"| x{section['ratio']:.3f} |" in tables
    assert "| bare |" in tables and "| x1.000 |" in tables
