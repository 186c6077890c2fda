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


def _record(device_type: str, cases: dict[str, dict[str, float]]) -> dict:
    """A suite record with mean step times per architecture and variant."""
    return {"machine": {"device": f"a {device_type}", "device_type": device_type, "torch": "2.x", "commit": "abc",
                        "date": "today"},
            "cases": [{"arch": arch, "data": "32x32x1", "batch_size": 8,
                       "training": {"variants": {name: {"mean_s": s} for name, s in times.items()}}}
                      for arch, times in cases.items()]}


def test_choose_turns_a_setting_on_only_where_its_variant_ran_faster():
    table = choose([_record("cpu", {
        "fast-layout": {"reference": 1.0, "channels_last": 0.8, "fused-adam": 1.1},
        "slow-layout": {"reference": 1.0, "channels_last": 1.2, "fused-adam": 0.9}})])
    archs = table["cpu"]["architectures"]
    assert (archs["fast-layout"]["channels_last"], archs["fast-layout"]["optimizer"]) == ("on", "plain")
    assert (archs["slow-layout"]["channels_last"], archs["slow-layout"]["optimizer"]) == ("off", "fused")
    assert archs["fast-layout"]["evidence"]["channels_last"] == {"channels_last vs reference, 32x32x1 batch 8": 1.25}


def test_choose_weighs_every_size_of_an_architecture_alike():
    record = _record("cpu", {"a": {"reference": 1.0, "channels_last": 0.5}})
    record["cases"].append({"arch": "a", "data": "64x64x3", "batch_size": 8, "training": {"variants": {
        "reference": {"mean_s": 1.0}, "channels_last": {"mean_s": 1.9}}}})  # 2.0 and 0.526: geomean 1.03
    assert choose([record])["cpu"]["architectures"]["a"]["channels_last"] == "on"
    record["cases"][1]["training"]["variants"]["channels_last"]["mean_s"] = 2.1  # geomean 0.976
    assert choose([record])["cpu"]["architectures"]["a"]["channels_last"] == "off"


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


def test_the_shipped_table_is_what_choose_makes_of_the_committed_suite_record():
    """The table is measured, not guessed: regenerating it from the records it names gives it back."""
    shipped = measured_table()
    assert shipped, f"{TABLE} is missing"
    for device_type, entry in shipped.items():
        if device_type.startswith("_"):
            continue
        for arch, settings in entry["architectures"].items():
            assert registry.get(arch) is not None
            for key in ("channels_last", "optimizer"):
                ratios = list(settings["evidence"][key].values())
                product = 1.0
                for r in ratios:
                    product *= r
                assert (settings[key] in ("on", "fused")) == (product ** (1 / len(ratios)) > 1.0), (arch, key)


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
    record.write_text(json.dumps(_record("cuda", {"dcgan": {"reference": 1.0, "channels_last": 0.9,
                                                            "fused-adam": 0.95}})))
    out = tmp_path / "table.json"
    out.write_text(json.dumps({"cpu": {"architectures": {}}}))  # other device types are kept
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "choose_defaults.py"), str(record),
                           "--out", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    table = json.loads(out.read_text())
    assert table["cpu"] == {"architectures": {}}
    assert table["cuda"]["architectures"]["dcgan"]["channels_last"] == "on"
    assert "cuda dcgan: channels_last=on, optimizer=fused" in done.stdout
