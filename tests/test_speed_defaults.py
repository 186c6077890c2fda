"""channels_last=auto and optimizer=auto: the measured-fastest settings per device type and architecture."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ganzoo import config, registry
from ganzoo.testing import synthetic_data
from ganzoo.train.speed_defaults import TABLE, choose, measured_table, resolve
from ganzoo.train.trainer import Trainer

from helpers import SMOKE, invoke

ROOT = Path(__file__).resolve().parents[1]


REFERENCE = {"precision": "fp32", "channels_last": "off", "compile": False, "optimizer": "plain",
             "data_on_device": "off", "tf32_matmul": False, "tf32_conv": True, "cudnn_benchmark": False}
ROWS = {"reference": {}, "fused-adam": {"optimizer": "fused"}, "channels_last": {"channels_last": "on"},
        "bf16": {"precision": "bf16"},
        "default": {"channels_last": "on", "optimizer": "fused", "tf32_matmul": True, "cudnn_benchmark": True,
                    "data_on_device": "auto"}}


def _case(arch: str, data: str, times: dict[str, float]) -> dict:
    return {"arch": arch, "data": data, "batch_size": 8, "training": {"variants": {
        name: {"mean_s": s, "options": {**REFERENCE, **ROWS[name]}} for name, s in times.items()}}}


def _record(device_type: str, cases: list[dict]) -> dict:
    """A suite record with mean step times per architecture and row."""
    return {"machine": {"device": f"a {device_type}", "device_type": device_type, "torch": "2.x", "commit": "abc",
                        "date": "today"}, "cases": cases}


def test_choose_takes_the_fastest_measured_combination_not_each_setting_alone():
    """fused Adam alone loses and channels_last alone loses, but the two together (the default row, whose
    CUDA-only switches do nothing on a CPU) win: the combination is chosen. Precision never decides."""
    table = choose([_record("cpu", [_case("a", "32x32x1", {"reference": 1.0, "fused-adam": 1.05,
                                                           "channels_last": 1.02, "default": 0.9, "bf16": 0.5})])])
    entry = table["cpu"]["architectures"]["a"]
    assert (entry["channels_last"], entry["optimizer"]) == ("on", "fused")
    assert entry["evidence"]["channels_last=on, optimizer=fused"] == {"32x32x1 batch 8": 1.111}
    table = choose([_record("cpu", [_case("a", "32x32x1", {"reference": 1.0, "fused-adam": 0.8,
                                                           "channels_last": 1.2, "default": 0.9})])])
    entry = table["cpu"]["architectures"]["a"]
    assert (entry["channels_last"], entry["optimizer"]) == ("off", "fused")


def test_an_excluded_combination_is_not_chosen_and_the_table_says_why():
    record = _record("cpu", [_case("a", "32x32x1", {"reference": 1.0, "fused-adam": 0.95, "channels_last": 0.8,
                                                    "default": 0.7})])
    table = choose([record], {"a": {"channels_last=on, optimizer=fused": "learned worse",
                                    "channels_last=on, optimizer=plain": "learned worse"}})
    entry = table["cpu"]["architectures"]["a"]
    assert (entry["channels_last"], entry["optimizer"]) == ("off", "fused")
    assert entry["excluded"]["channels_last=on, optimizer=fused"] == {"why": "learned worse",
                                                                     "speedups": {"32x32x1 batch 8": 1.429}}
    assert set(entry["evidence"]) == {"channels_last=off, optimizer=plain", "channels_last=off, optimizer=fused"}


def test_on_cuda_the_default_row_does_not_decide_because_its_numerics_differ():
    table = choose([_record("cuda", [_case("a", "64x64x3", {"reference": 1.0, "fused-adam": 0.95,
                                                            "channels_last": 0.97, "default": 0.5})])])
    entry = table["cuda"]["architectures"]["a"]
    assert (entry["channels_last"], entry["optimizer"]) == ("off", "fused")
    assert "channels_last=on, optimizer=fused" not in entry["evidence"]


def test_choose_weighs_every_size_of_an_architecture_alike():
    small = _case("a", "32x32x1", {"reference": 1.0, "channels_last": 0.5})
    large = _case("a", "64x64x3", {"reference": 1.0, "channels_last": 1.9})  # 2.0 and 0.526: geomean 1.03
    assert choose([_record("cpu", [small, large])])["cpu"]["architectures"]["a"]["channels_last"] == "on"
    large["training"]["variants"]["channels_last"]["mean_s"] = 2.1  # geomean 0.976
    assert choose([_record("cpu", [small, large])])["cpu"]["architectures"]["a"]["channels_last"] == "off"


def test_auto_takes_the_table_an_explicit_value_wins_and_the_unmeasured_get_the_general_rule():
    table = {"cpu": {"measured_on": "a CPU", "architectures": {"x": {"channels_last": "on", "optimizer": "plain"}}}}
    measured = resolve("x", "cpu", "auto", "auto", table)
    assert (measured.channels_last, measured.optimizer) == (True, "plain")
    assert "measured fastest for x on a CPU" in measured.describe()
    assert resolve("x", "cpu", "off", "auto", table).channels_last is False
    assert resolve("x", "cpu", "off", "foreach", table).source == "as configured"
    unmeasured = resolve("third-party", "cpu", "auto", "auto", table)
    assert (unmeasured.channels_last, unmeasured.optimizer) == (False, "fused")
    assert "general rule" in unmeasured.source
    assert resolve("x", "cuda", "auto", "auto", table).channels_last is True  # no CUDA entry: the rule


def test_the_shipped_table_holds_the_fastest_combination_of_its_evidence():
    """The table is measured, not guessed: each choice is the best of the combinations it records."""
    shipped = measured_table()
    assert shipped, f"{TABLE} is missing"
    for device_type, entry in shipped.items():
        if device_type.startswith("_"):
            continue
        for arch, settings in entry["architectures"].items():
            assert registry.get(arch) is not None
            scores = {}
            for pair, ratios in settings["evidence"].items():
                product = 1.0
                for r in ratios.values():
                    product *= r
                scores[pair] = product ** (1 / len(ratios))
            best = max(scores, key=scores.get)
            assert best == f"channels_last={settings['channels_last']}, optimizer={settings['optimizer']}", arch


@pytest.mark.parametrize("arch_name", ["dcgan", "cyclegan", "stylegan-lite"])
def test_the_trainer_lays_out_its_networks_and_picks_adam_as_the_table_says(tmp_path, arch_name):
    arch = registry.get(arch_name)
    resolved = config.resolve(arch, preset="smoke", flags={"device": "cpu"})
    assert (resolved.train.channels_last, resolved.train.optimizer) == ("auto", "auto")
    trainer = Trainer(arch, resolved, synthetic_data(arch, resolved.config), tmp_path)
    expected = measured_table()["cpu"]["architectures"][arch_name]
    convs = [w for net in trainer.nets.values() for w in net.parameters()  # kernels whose layout can differ
             if w.dim() == 4 and w.shape[1] > 1 and w.shape[-1] > 1]
    assert convs
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in convs) == \
        (expected["channels_last"] == "on")
    for optimizer, _ in trainer.optimizers.values():
        assert bool(optimizer.defaults["fused"]) == (expected["optimizer"] == "fused")


def test_train_says_which_speed_settings_it_chose_and_why(tmp_path):
    result = invoke("train", "dcgan", *SMOKE, "--steps", "1", "--out", str(tmp_path / "run"))
    expected = measured_table()["cpu"]["architectures"]["dcgan"]
    layout = "channels_last" if expected["channels_last"] == "on" else "NCHW"
    assert f"speed settings: {layout}, {expected['optimizer']} Adam (measured fastest for dcgan on " in result.output
    result = invoke("train", "dcgan", *SMOKE, "--steps", "1", "--set", "channels_last=off", "--set",
                    "optimizer=foreach", "--out", str(tmp_path / "run2"))
    assert "speed settings: NCHW, foreach Adam (as configured)" in result.output


def test_config_json_records_what_auto_chose_so_a_resume_keeps_it(tmp_path):
    """A later measured table must not change a resumed run's layout or optimizer (exact resume)."""
    run = tmp_path / "run"
    invoke("train", "dcgan", *SMOKE, "--steps", "1", "--out", str(run))
    recorded = json.loads((run / "config.json").read_text())["train"]
    expected = measured_table()["cpu"]["architectures"]["dcgan"]
    assert (recorded["channels_last"], recorded["optimizer"]) == (expected["channels_last"], expected["optimizer"])
    result = invoke("train", "dcgan", "--resume", str(run), "--steps", "2", "--device", "cpu")
    layout = "channels_last" if expected["channels_last"] == "on" else "NCHW"
    assert f"speed settings: {layout}, {expected['optimizer']} Adam (as configured)" in result.output


def test_choose_defaults_script_writes_the_table_from_a_record(tmp_path):
    record = tmp_path / "suite.json"
    record.write_text(json.dumps(_record("cuda", [_case("dcgan", "64x64x3", {"reference": 1.0, "channels_last": 0.9,
                                                                          "fused-adam": 0.95})])))
    out = tmp_path / "table.json"
    out.write_text(json.dumps({"cpu": {"architectures": {}}}))  # other device types are kept
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "choose_defaults.py"), str(record),
                           "--out", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    table = json.loads(out.read_text())
    assert table["cpu"] == {"architectures": {}}
    assert table["cuda"]["architectures"]["dcgan"]["channels_last"] == "on"  # 1.11 beats fused Adam's 1.05
    assert "cuda dcgan: channels_last=on, optimizer=plain" in done.stdout
