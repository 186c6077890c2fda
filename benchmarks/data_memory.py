"""Memory of training on prepared data: does it grow with the dataset, do ranks share it, and does data
larger than the machine's memory train?

    python benchmarks/data_memory.py --work /big/disk/folder [--cases small,large,ranks,beyond]

Each case writes a synthetic prepared dataset (ganzoo.data.prepared.write_synthetic) and runs the real
``ganzoo train dcgan`` on it as a subprocess on the CPU, sampling /proc every 50 ms for the training
processes' anonymous (private) resident memory and their proportional set size (PSS: a page shared by k
processes counts 1/k to each, so the sum over processes counts the page cache's copy once). Images/s come from
the run's metrics.jsonl.

- small / large: 1,000 and 50,000 images at 256 px, one process: RssAnon must not grow with the count.
- ranks: the 50,000-image set with --nproc-per-node 1 and 2: the summed PSS of 2 ranks against 1.
- beyond: a dataset 1.15 times this machine's physical memory, trained for --beyond-steps steps.

Figures go to benchmarks/results/data-memory-<machine>.json and a markdown table on stdout (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ganzoo.bench.process_memory import MemorySampler

RESULTS = Path(__file__).resolve().parent / "results"
PAGE = os.sysconf("SC_PAGE_SIZE")


def _ganzoo() -> list[str]:
    return [str(Path(sys.executable).with_name("ganzoo"))]


def train(data: Path, run: Path, resolution: int, steps: int, nproc: int = 0, batch: int = 16) -> dict:
    """One real training subprocess on ``data``; its memory peaks, images/s and wall time."""
    shutil.rmtree(run, ignore_errors=True)
    command = [*_ganzoo(), "train", "dcgan", "--preset", "smoke", "--device", "cpu", "--data", str(data),
               "--set", f"resolution={resolution}", "--set", "channels=3", "--batch-size", str(batch),
               "--steps", str(steps), "--sample-every", str(10 * steps), "--checkpoint-every", str(10 * steps),
               "--set", f"log_every={max(1, steps // 4)}", "--out", str(run)]
    if nproc:
        command += ["--nproc-per-node", str(nproc)]
    began = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with MemorySampler(process.pid, interval=0.2, data=str(data.resolve())) as sampler:
        output, _ = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"training failed ({process.returncode}):\n{output[-3000:]}")
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    logged = [r for r in records if "images_per_sec" in r]
    return {"peak_rss_anon_mb": sampler.peak_anon / 1e6, "peak_rss_anon_sum_mb": sampler.peak_anon_sum / 1e6,
            "peak_pss_sum_mb": sampler.peak_pss_sum / 1e6, "processes": sampler.processes,
            "peak_data_pss_sum_mb": sampler.peak_data_pss_sum / 1e6,
            "images_per_sec": logged[-1]["images_per_sec"] if logged else None,
            "data_wait": logged[-1].get("data_wait") if logged else None,
            "wall_s": time.perf_counter() - began}


def dataset(work: Path, count: int, resolution: int) -> Path:
    from ganzoo.data.prepared import is_prepared, write_synthetic

    folder = work / f"synthetic-{count}-{resolution}px"
    if not is_prepared(folder):
        shutil.rmtree(folder, ignore_errors=True)
        began = time.perf_counter()
        write_synthetic(folder, count, 3, resolution, seed=0)
        print(f"wrote {folder} ({_disk(folder) / 1e9:.2f} GB) in {time.perf_counter() - began:.0f} s", flush=True)
    return folder


def _disk(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.iterdir())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="a folder on a disk with room for the datasets")
    parser.add_argument("--cases", default="small,large,ranks,beyond")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--large", type=int, default=50_000)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--beyond-steps", type=int, default=200)
    parser.add_argument("--keep", action="store_true", help="keep the datasets (they are large)")
    args = parser.parse_args()
    from ganzoo.bench.machine import cpu_model

    cases = args.cases.split(",")
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    total = os.sysconf("SC_PHYS_PAGES") * PAGE
    rows = []
    r = args.resolution
    if "small" in cases:
        rows.append({"case": "1,000 images, 1 process", "count": 1000,
                     **train(dataset(work, 1000, r), work / "run", r, args.steps)})
    if "large" in cases or "ranks" in cases:
        big = dataset(work, args.large, r)
        if "large" in cases:
            rows.append({"case": f"{args.large:,} images, 1 process", "count": args.large,
                         **train(big, work / "run", r, args.steps)})
        if "ranks" in cases:
            for n in (1, 2):
                rows.append({"case": f"{args.large:,} images, --nproc-per-node {n}", "count": args.large,
                             **train(big, work / "run", r, args.steps, nproc=n)})
        if not args.keep:
            shutil.rmtree(big)
    if "beyond" in cases:
        count = math.ceil(1.15 * total / (3 * r * r))
        beyond = dataset(work, count, r)
        size = _disk(beyond)
        row = {"case": f"{count:,} images ({size / 1e9:.1f} GB, {size / total:.2f}x memory), 1 process",
               "count": count, "dataset_gb": size / 1e9,
               **train(beyond, work / "run", r, args.beyond_steps, batch=32)}
        rows.append(row)
        if not args.keep:
            shutil.rmtree(beyond)
    shutil.rmtree(work / "run", ignore_errors=True)
    machine = f"CPU ({cpu_model()}, {os.cpu_count()} cores)"
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"data-memory-{_slug(machine)}.json"
    for row in rows:
        row.update(steps=args.beyond_steps if "memory)" in row["case"] else args.steps, resolution=r,
                   command=" ".join(sys.argv), date=time.strftime("%Y-%m-%d"))
    # Cases run now replace their earlier rows; the others are kept (the large case takes a while).
    earlier = json.loads(out.read_text())["rows"] if out.is_file() else []
    rows = [*[row for row in earlier if row["case"] not in {r["case"] for r in rows}], *rows]
    rows.sort(key=lambda row: (row["count"], row["case"]))
    record = {"machine": machine, "memory_gb": total / 1e9, "rows": rows}
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\n{machine}, {total / 1e9:.1f} GB memory, DCGAN smoke on the CPU ({out.name})\n")
    print("| case | steps | private memory (RssAnon), largest process, MB | PSS of all trainers, MB | "
          "of which the dataset's mapped pages, MB | images/s | data wait |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        wait = "" if row["data_wait"] is None else f"{100 * row['data_wait']:.0f}%"
        data = row.get("peak_data_pss_sum_mb")
        print(f"| {row['case']} | {row['steps']} | {row['peak_rss_anon_mb']:.0f} | {row['peak_pss_sum_mb']:.0f} | "
              f"{'' if data is None else f'{data:.0f}'} | {row['images_per_sec'] or 0:.0f} | {wait} |")


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")[:60]


if __name__ == "__main__":
    main()
