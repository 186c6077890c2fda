"""Write ganzoo/data/measured_defaults.json (what channels_last=auto and optimizer=auto choose) from suite records.

    python benchmarks/choose_defaults.py benchmarks/results/amd-epyc-suite.json [more records...]

Each record's device type replaces that device type's entry; the others are kept. See ganzoo/train/speed_defaults.py.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ganzoo.fileio import write_json
from ganzoo.train.speed_defaults import TABLE, choose

ABOUT = ("What channels_last=auto and optimizer=auto choose, per device type and architecture: the setting's "
         "variant against the reference in the benchmark suite. Written by benchmarks/choose_defaults.py; "
         "read by ganzoo/train/speed_defaults.py.")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("records", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=TABLE)
    parser.add_argument("--exclude", action="append", default=[], metavar="ARCH:COMBINATION:WHY",
                        help='a combination not to choose, e.g. "stylegan-lite:channels_last=on, optimizer=fused:'
                             'its learning test came out worse" (kept in the table with the reason)')
    args = parser.parse_args(argv)
    excluded: dict[str, dict[str, str]] = {}
    for item in args.exclude:
        arch, combination, why = item.split(":", 2)
        excluded.setdefault(arch, {})[combination] = why
    chosen = choose([json.loads(path.read_text()) for path in args.records], excluded)
    table = json.loads(args.out.read_text()) if args.out.exists() else {}
    table = {"_about": ABOUT, **{k: v for k, v in table.items() if k != "_about"}, **chosen}
    write_json(args.out, table)
    for device, entry in chosen.items():
        for arch, settings in entry["architectures"].items():
            print(f"{device} {arch}: " + ", ".join(f"{k}={v}" for k, v in settings.items()
                                                   if k in ("channels_last", "optimizer")))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
