"""What `channels_last=auto` and `optimizer=auto` mean: the configuration the benchmark suite measured fastest.

The choice depends on the device type and on the architecture (on the 2-core
CPU channels_last sped DCGAN up and slowed CycleGAN down), so it is not
guessed: ``python benchmarks/choose_defaults.py RESULTS.json`` reads a suite
record and writes ``ganzoo/data/measured_defaults.json``, one entry per device
type and architecture with the ratios it was chosen from. An architecture or
device the table does not hold (a third-party plugin, a GPU not yet measured)
gets the general rule: channels_last on CUDA only, fused Adam.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

TABLE = Path(__file__).resolve().parents[1] / "data" / "measured_defaults.json"
SETTINGS = ("channels_last", "optimizer")  # the TrainOptions that "auto" resolves; neither changes the algorithm


@dataclass(frozen=True)
class SpeedChoice:
    """The effective speed settings of a run, and where they came from."""

    channels_last: bool
    optimizer: str  # fused | foreach | plain
    source: str  # "measured fastest for ARCH on DEVICE" | "general rule: ..." | "as configured"

    def describe(self) -> str:
        layout = "channels_last" if self.channels_last else "NCHW"
        return f"{layout}, {self.optimizer} Adam ({self.source})"


@functools.cache
def measured_table(path: Path = TABLE) -> dict:
    """device type -> {"measured_on": ..., "architectures": {name: {setting: value, "evidence": ...}}}."""
    if not path.exists():
        return {}
    return json.loads(path.read_text())


def general_rule(device_type: str) -> dict:
    """Where nothing was measured: channels_last where cuDNN profits from it (CUDA), fused Adam everywhere."""
    return {"channels_last": "on" if device_type == "cuda" else "off", "optimizer": "fused"}


def resolve(arch_name: str | None, device_type: str, channels_last: str, optimizer: str,
            table: dict | None = None) -> SpeedChoice:
    """The run's channels_last (bool) and optimizer, "auto" taken from the measured table, else the general rule."""
    table = measured_table() if table is None else table
    device = table.get(device_type, {})
    measured = device.get("architectures", {}).get(arch_name) if arch_name else None
    fallback = general_rule(device_type)
    asked = {"channels_last": channels_last, "optimizer": optimizer}
    chosen = {}
    for key in SETTINGS:
        if asked[key] != "auto":
            chosen[key] = asked[key]
        elif measured is not None and key in measured:
            chosen[key] = measured[key]
        else:
            chosen[key] = fallback[key]
    autos = [key for key in SETTINGS if asked[key] == "auto"]
    if not autos:
        source = "as configured"
    elif measured is not None:
        source = f"measured fastest for {arch_name} on {device.get('measured_on', device_type)}"
    else:
        source = "general rule: not measured for this architecture and device"
    return SpeedChoice(channels_last=chosen["channels_last"] == "on", optimizer=chosen["optimizer"], source=source)


# -- choosing, from measurements ---------------------------------------------------------------

CHOICES = {  # setting -> (suite variant that turns it on alone, value when it wins, value when it loses)
    "channels_last": ("channels_last", "on", "off"),
    "optimizer": ("fused-adam", "fused", "plain"),
}


def _geomean(values: list[float]) -> float:
    product = 1.0
    for value in values:
        product *= value
    return product ** (1 / len(values))


def choose(records: list[dict]) -> dict:
    """The measured table from suite records (``benchmarks/run_suite.py`` / ``ganzoo bench --json``).

    Per device type and architecture, each setting is on when the suite variant that turns it on alone ran
    faster than the reference over that architecture's cases (the geometric mean of its speed-ups, so every
    size counts alike). The speed-ups are kept as evidence, with the record they came from.
    """
    table: dict = {}
    for record in records:
        machine = record["machine"]
        device = table.setdefault(machine["device_type"], {"measured_on": machine["device"], "sources": [],
                                                           "architectures": {}})
        device["sources"].append(f"{machine['device']}, torch {machine['torch']}, commit "
                                 f"{(machine.get('commit') or '?')[:10]}, {machine['date']}")
        speedups: dict[str, dict[str, list]] = {}
        for case in record["cases"]:
            variants = case.get("training", {}).get("variants", {})
            for key, (variant, _, _) in CHOICES.items():
                if variant in variants and "reference" in variants:
                    ratio = variants["reference"]["mean_s"] / variants[variant]["mean_s"]
                    speedups.setdefault(case["arch"], {}).setdefault(key, []).append(
                        (f"{case['data']} batch {case['batch_size']}", round(ratio, 3)))
        for arch, found in speedups.items():
            entry = device["architectures"].setdefault(arch, {"evidence": {}})
            for key, measured in found.items():
                variant, on, off = CHOICES[key]
                entry[key] = on if _geomean([ratio for _, ratio in measured]) > 1.0 else off
                entry["evidence"][key] = {f"{variant} vs reference, {case}": ratio for case, ratio in measured}
    return table
