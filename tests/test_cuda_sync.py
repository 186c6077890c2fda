"""On CUDA a training step of the fast path makes no host-device synchronisation, logging included (issue 17).

``torch.cuda.set_sync_debug_mode("error")`` raises on any synchronising call (a blocking copy, ``.item()``,
a boolean mask...). It is on over several steps of the real ``run()`` with a log point every 2 steps, after
2 warm-up steps; the checkpoint and preview that end a run are ``host_reads.permitted`` blocks, which turn
the mode off while they copy weights and images to the host. Skips without CUDA.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from ganzoo import config, registry
from ganzoo.testing import synthetic_data
from ganzoo.train.trainer import Trainer

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ganzoo-wgan-gp"
FAST = {"device": "cuda", "optimizer": "fused", "channels_last": "on", "precision": "bf16"}


def _architecture(name: str):
    if name == "wgan-gp":
        sys.path.insert(0, str(EXAMPLE))
        from ganzoo_wgan_gp import WGANGP

        return WGANGP()
    return registry.get(name)


@pytest.mark.parametrize("compiled", [False, True], ids=["fast", "fast+compile"])
@pytest.mark.parametrize("name", ["dcgan", "cyclegan", "stylegan-lite", "wgan-gp"])
def test_no_host_sync_in_steps_and_log_points(name, compiled, tmp_path):
    arch = _architecture(name)
    flags = {**FAST, "compile": compiled, "steps": 9, "log_every": 2, "sample_every": 10**9,
             "checkpoint_every": 10**9}
    resolved = config.resolve(arch, preset="smoke", data=None, flags=flags)
    trainer = Trainer(arch, resolved, synthetic_data(arch, resolved.config, n=max(32, 2 * resolved.config.batch_size)),
                      tmp_path)
    trainer.run(until=2)  # warm-up: compiles, cuDNN autotuning, the first preview and checkpoint
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        trainer.run()  # steps 3-9, log points at 4, 6, 8 and 9; a synchronising call raises
    finally:
        torch.cuda.set_sync_debug_mode(0)
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6, 8, 9]
