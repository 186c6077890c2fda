"""A training run reads nothing from the device except where it must (issue 17): the CPU stand-in for CUDA's
sync debug mode (tests/test_cuda_sync.py) is a TorchFunctionMode spy (ganzoo.train.host_reads) over the real
Trainer's run(), with logging every 2 steps and the default options (fused Adam)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from ganzoo import config, registry
from ganzoo.testing import synthetic_data
from ganzoo.train.host_reads import HostRead, HostReadSpy, permitted
from ganzoo.train.trainer import Trainer

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ganzoo-wgan-gp"


def _architecture(name: str):
    if name == "wgan-gp":
        sys.path.insert(0, str(EXAMPLE))
        from ganzoo_wgan_gp import WGANGP

        return WGANGP()
    return registry.get(name)


@pytest.mark.parametrize("name", ["dcgan", "wgan-gp", pytest.param("cyclegan", marks=pytest.mark.slow),
                                  pytest.param("stylegan-lite", marks=pytest.mark.slow)])
def test_a_run_reads_the_device_only_for_metrics_previews_and_checkpoints(name, tmp_path):
    arch = _architecture(name)
    # The fast path: fused Adam takes found_inf on the device. (The plain and foreach optimizers pay one
    # documented host read to skip a step; on a CPU, optimizer=auto may choose plain for speed.)
    flags = {"device": "cpu", "steps": 7, "log_every": 2, "sample_every": 10**9, "checkpoint_every": 10**9,
             "optimizer": "fused"}
    resolved = config.resolve(arch, preset="smoke", data=None, flags=flags)
    data = synthetic_data(arch, resolved.config, n=max(32, 2 * resolved.config.batch_size))
    trainer = Trainer(arch, resolved, data, tmp_path)
    spy = HostReadSpy()
    with spy:
        trainer.run()  # a read outside permitted() raises HostRead here
    assert spy.unexpected() == []
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4, 6, 7]
    assert all(r["sec_per_step"] > 0 and r["images_per_sec"] > 0 for r in records)
    assert any(k.startswith("loss/") for k in records[0])
    metrics = [r for r in spy.reads if r.reason == "metrics"]
    assert [r.op for r in metrics] == ["tolist"] * len(records)  # ONE copy read per log point
    assert {r.reason for r in spy.reads} <= {"metrics", "preview", "checkpoint"}


@pytest.mark.parametrize("read", [
    lambda t: t.item(), lambda t: bool(t.sum() > 0), lambda t: float(t.sum()), lambda t: int(t[0]),
    lambda t: t.tolist(), lambda t: t[t > 0], lambda t: t.nonzero(), lambda t: torch.where(t > 0),
    lambda t: [1, 2, 3][t.long()[0]], lambda t: t.numpy(), lambda t: torch.equal(t, t),
])
def test_the_spy_raises_on_each_kind_of_read(read):
    t = torch.ones(3)
    with HostReadSpy() as spy, pytest.raises(HostRead):
        read(t)
    assert len(spy.reads) >= 1 and spy.reads[0].reason is None


def test_the_spy_records_a_permitted_read_and_lets_device_work_pass():
    t = torch.ones(3)
    with HostReadSpy() as spy:
        (t * 2 + 1).sum().reshape(1)
        with permitted("checkpoint"):
            assert t.sum().item() == 3.0
    assert [(r.op, r.reason) for r in spy.reads] == [("item", "checkpoint")]
