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

CUDA_ONLY = ("tf32_matmul", "tf32_conv", "cudnn_benchmark", "data_on_device")  # inert on a CPU


def _geomean(values: list[float]) -> float:
    product = 1.0
    for value in values:
        product *= value
    return product ** (1 / len(values))


def _settings(options: dict, reference: dict, device_type: str) -> tuple[str, str] | None:
    """(channels_last, optimizer) of a row that differs from the reference in those two alone (else None).

    Precision and compilation change what is computed or are chosen by the user, so such rows never
    decide; on a CPU the CUDA-only switches do nothing, so the default row counts there too.
    """
    for key, value in reference.items():
        if key in SETTINGS or (device_type != "cuda" and key in CUDA_ONLY):
            continue
        if options.get(key) != value:
            return None
    return options.get("channels_last"), options.get("optimizer")


def choose(records: list[dict], excluded: dict[str, dict[str, str]] | None = None) -> dict:
    """The measured table from suite records (``benchmarks/run_suite.py`` / ``ganzoo bench --json``).

    Per device type and architecture, every row that differs from the reference only in channels_last and
    the optimizer (reference, fused-adam, channels_last, and the default on a CPU) is one measured
    combination; the fastest combination over that architecture's cases wins (the geometric mean of its
    speed-ups over the reference, so every size counts alike), among those measured in every case. Effects
    interact (fused Adam alone can lose where it wins beside channels_last), so combinations are compared,
    not each setting alone. The speed-ups are kept as evidence, with the record they came from.

    ``excluded``: architecture -> {"channels_last=on, optimizer=fused": why}: combinations measured faster
    that must not be chosen (a learning test that came out worse with them); kept in the entry with the reason.
    """
    excluded = excluded or {}
    table: dict = {}
    for record in records:
        machine = record["machine"]
        device_type = machine["device_type"]
        device = table.setdefault(device_type, {"measured_on": machine["device"], "sources": [],
                                                "architectures": {}})
        device["sources"].append(f"{machine['device']}, torch {machine['torch']}, commit "
                                 f"{(machine.get('commit') or '?')[:10]}, {machine['date']}")
        found: dict[str, dict[tuple, dict[str, float]]] = {}
        cases: dict[str, set[str]] = {}
        for case in record["cases"]:
            variants = case.get("training", {}).get("variants", {})
            if "reference" not in variants:
                continue
            label = f"{case['data']} batch {case['batch_size']}"
            cases.setdefault(case["arch"], set()).add(label)
            reference = variants["reference"]
            for row in variants.values():
                pair = _settings(row.get("options", {}), reference["options"], device_type)
                if pair is not None:
                    found.setdefault(case["arch"], {}).setdefault(pair, {})[label] = round(
                        reference["mean_s"] / row["mean_s"], 3)
        for arch, pairs in found.items():
            complete = {f"channels_last={c}, optimizer={o}": ratios for (c, o), ratios in pairs.items()
                        if set(ratios) == cases[arch]}
            refused = {name: why for name, why in excluded.get(arch, {}).items() if name in complete}
            allowed = {name: ratios for name, ratios in complete.items() if name not in refused}
            best = max(allowed, key=lambda name: _geomean(list(allowed[name].values())))
            layout, optimizer = (part.split("=", 1)[1] for part in best.split(", "))
            device["architectures"][arch] = {"channels_last": layout, "optimizer": optimizer, "evidence": allowed,
                                             **({"excluded": {name: {"why": why, "speedups": complete[name]}
                                                              for name, why in refused.items()}} if refused else {})}
    return table
