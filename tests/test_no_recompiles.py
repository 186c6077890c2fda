"""With compile on, every architecture compiles in its first step and never again (issue 17).

A recompile after warm-up costs seconds per step on a GPU; dynamo's own records
(ganzoo.bench.compiles, shared with benchmarks/recompiles.py) are read over two
lazy-regularisation windows + 2 steps of the real Trainer at the smoke preset.
Inductor compiles are slow on a CPU (12-45 s per architecture), hence slow.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from ganzoo import config, registry
from ganzoo.bench.compiles import reset, snapshot, train_counting
from ganzoo.bench.training import lazy_window
from ganzoo.testing import synthetic_data
from ganzoo.train.trainer import Trainer

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ganzoo-wgan-gp"
FLAGS = {"device": "cpu", "compile": True, "steps": 10**9, "log_every": 10**9, "sample_every": 10**9,
         "checkpoint_every": 10**9}


def _architecture(name: str):
    if name == "wgan-gp":
        sys.path.insert(0, str(EXAMPLE))
        from ganzoo_wgan_gp import WGANGP

        return WGANGP()
    return registry.get(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dcgan", "cyclegan", "stylegan-lite", "wgan-gp"])
def test_no_recompile_after_the_first_step(name, tmp_path):
    arch = _architecture(name)
    resolved = config.resolve(arch, preset="smoke", data=None, flags=FLAGS)
    trainer = Trainer(arch, resolved, synthetic_data(arch, resolved.config, n=max(32, 2 * resolved.config.batch_size)),
                      tmp_path)
    window = lazy_window(trainer)
    reset()
    with trainer.engine.numerics():
        counts = train_counting(trainer, 2 * window + 2, {"step0": 0})
    reset()
    first, end = counts["step0"], counts["end"]
    assert first["frames"] > 0, "compile was on, so step 0 compiled something"
    assert end == first, f"{name} compiled again after step 0 (over {2 * window + 2} steps): {first} -> {end}"
    assert end["breaks"] == 0 and end["limit_hits"] == 0


def test_the_count_sees_a_recompile():
    """The assertion above can fail: a compiled module fed a new shape after its first call is counted."""
    reset()
    net = torch.compile(torch.nn.Linear(3, 2))
    net(torch.randn(4, 3))
    first = snapshot()
    net(torch.randn(4, 3))
    assert snapshot() == first  # same guards: no new compile
    net(torch.randn(4, 3, requires_grad=True))
    changed = snapshot()
    reset()
    assert first["frames"] == 1 and changed["recompiles"] == 1 and changed["frames"] == 2


@pytest.mark.slow
def test_every_compiled_bench_variant_compiles_afresh_and_never_reaches_the_limit():
    """A bench process builds a Trainer per variant and case: dynamo's cache, keyed on the networks' code,
    would fill across them and run the later ones eagerly past recompile_limit. Each compiled variant starts
    from a fresh compiler, so none is refused, and each compiles its networks itself."""
    from ganzoo.bench.training import REFERENCE, TrainingCase, run_variant

    reset()
    arch = registry.get("dcgan")
    for resolution in (32, 64):  # what a suite run does: cases of several sizes, variants of several states
        case = TrainingCase(arch, {"resolution": resolution}, None, "smoke", None, torch.device("cpu"))
        for layout in ("off", "on"):
            for precision in ("fp32", "bf16"):
                options = {**REFERENCE, "compile": True, "channels_last": layout, "precision": precision}
                run_variant(case, options, warmup=1, steps=1)
                counts = snapshot()
                assert counts["limit_hits"] == 0, (resolution, layout, precision, counts)
                assert counts["frames"] >= 2  # this variant's own compiles: dynamo was reset before it
