"""The full benchmark suite on this machine: every configuration of suite.json for its device type.

Writes benchmarks/results/<device>-suite.json and .md, and docs/images/bench-<device>.png
(the speed-up of each optimisation over the reference, per architecture).

    python benchmarks/run_suite.py            # CUDA when present, else the CPU list
    python benchmarks/run_suite.py --device cpu --only dcgan
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from ganzoo.bench import machine, run_case
from ganzoo.bench.report import markdown, speedup_plot
from ganzoo.fileio import atomic_write, write_json
from ganzoo.train.engine import pick_device

HERE = Path(__file__).resolve().parent


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="auto")
    parser.add_argument("--only", help="run only the entries that include this architecture")
    parser.add_argument("--peak-tflops", type=float)
    args = parser.parse_args()
    device = pick_device(args.device)
    suite = json.loads((HERE / "suite.json").read_text())["cuda" if device.type == "cuda" else "cpu"]
    record = {"machine": machine.describe(device), "cases": []}
    name = slug(record["machine"]["device"].split(" (")[0])
    for entry in suite:
        entry = dict(entry)
        archs, size = entry.pop("archs"), entry.pop("size")
        for arch in archs:
            if args.only and arch != args.only:
                continue
            record["cases"].append(run_case(arch, size, device, peak_tflops=args.peak_tflops, **entry))
            # written after every case, so a long suite that is stopped keeps what it measured
            write_json(HERE / "results" / f"{name}-suite.json", record)
            atomic_write(HERE / "results" / f"{name}-suite.md", lambda f: f.write(markdown(record)), mode="w")
    plot = speedup_plot([record], HERE.parent / "docs" / "images" / f"bench-{name}.png")
    print(f"results: {HERE / 'results' / f'{name}-suite.json'} (.md), plot: {plot}")


if __name__ == "__main__":
    main()
