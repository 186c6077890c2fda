"""The full benchmark suite on this machine: every configuration of suite.json for its device type.

Writes benchmarks/results/<device>-suite.json and .md, and docs/images/bench-<device>.png
(the speed-up of each optimisation over the reference, per architecture).

    python benchmarks/run_suite.py            # CUDA when present, else the CPU list
    python benchmarks/run_suite.py --device cpu --only dcgan
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ganzoo.bench import machine, run_case
from ganzoo.bench.report import markdown, speedup_plot
from ganzoo.fileio import atomic_write, write_json
from ganzoo.train.engine import pick_device

HERE = Path(__file__).resolve().parent


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="auto")
    parser.add_argument("--only", help="run only the entries that include this architecture")
    parser.add_argument("--peak-tflops", type=float)
    parser.add_argument("--results", type=Path, default=HERE / "results",
                        help="folder for DEVICE-suite.json and .md (default benchmarks/results)")
    args = parser.parse_args()
    device = pick_device(args.device)
    suite = json.loads((HERE / "suite.json").read_text())["cuda" if device.type == "cuda" else "cpu"]
    entries = [(arch, dict(entry)) for entry in suite for arch in entry["archs"] if not args.only or arch == args.only]
    record = {"machine": machine.describe(device), "complete": False,
              "planned": [f"{arch} {entry['size']}" for arch, entry in entries], "cases": []}
    name = machine.slug(record["machine"]["device"])

    def save():  # after every case, so a long suite that is stopped keeps what it measured
        write_json(args.results / f"{name}-suite.json", record)
        atomic_write(args.results / f"{name}-suite.md", lambda f: f.write(markdown(record)), mode="w")

    for arch, entry in entries:
        entry.pop("archs")
        size = entry.pop("size")
        record["cases"].append(run_case(arch, size, device, peak_tflops=args.peak_tflops, **entry))
        save()
    record["complete"] = True
    save()
    plot = speedup_plot([record], HERE.parent / "docs" / "images" / f"bench-{name}.png")
    print(f"results: {args.results / f'{name}-suite.json'} (.md), plot: {plot}")


if __name__ == "__main__":
    main()
