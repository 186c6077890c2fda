"""Feed throughput (`ganzoo bench --feed`): images/s the training feed delivers from prepared data, per
resolution, against what the GPU targets need.

For each size a synthetic prepared dataset (``prepared.write_synthetic``, RGB) is written to a temporary
folder, then the real feed (ganzoo.train.feed: host-resident, read ahead, random flips) runs over it on the
CPU, and on CUDA when the bench runs there. Per (resolution, device):

- ``cold``: one pass of up to ``cold_batches`` batches after the shards were dropped from the page cache
  (``posix_fadvise(DONTNEED)``; a virtual disk may still be cached by its host);
- ``warm``: ``next()`` as the trainer calls it (float in [-1, 1] on the device), the cache warm;
- ``host``: ``next_raw()``, the uint8 crops the read-ahead thread hands over (pinned for CUDA): what the
  host can prepare for an accelerator, compared with the targets;
- ``in_step``: ``next()`` with read-ahead off, what a step would wait for each batch without it.

The consumer does nothing else, so each figure is the feed's own rate: in training the step's time hides
a read-ahead feed entirely when the feed is faster (the ``data_wait`` of a run or a training row says
whether it did).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .timing import noisy_note, synchronizer, time_calls

# What the GPU targets need from the feed: images/s per resolution (none named for 1024 px).
TARGETS = {64: (50_000, "DCGAN 64 px on one GPU"), 256: (200, "StyleGAN-lite 256 px per GPU")}


@dataclass(frozen=True)
class FeedSize:
    resolution: int
    count: int  # images in the synthetic dataset
    batch: int

    @property
    def label(self) -> str:
        return f"{self.resolution}x{self.resolution}x3"


# About 100-200 MB of pixels each, so a CPU run takes well under a minute; smoke: a few MB.
FEED_SIZES = (FeedSize(64, 8192, 128), FeedSize(256, 1024, 32), FeedSize(1024, 64, 8))
SMOKE_SIZES = (FeedSize(64, 256, 32), FeedSize(256, 32, 8), FeedSize(1024, 4, 2))


@dataclass
class FeedPlan:
    """The feed section: sizes, devices (the CPU, and the bench's CUDA device), timed batches per figure."""

    sizes: tuple[FeedSize, ...]
    devices: list[torch.device]
    repeats: int
    cold_batches: int

    @property
    def titles(self) -> list[str]:
        return [f"{size.resolution} px {device.type}" for size in self.sizes for device in self.devices]


def plan_feed(device: torch.device, smoke: bool = False) -> FeedPlan:
    devices = [torch.device("cpu")] + ([device] if device.type == "cuda" else [])
    if smoke:
        return FeedPlan(SMOKE_SIZES, devices, repeats=3, cold_batches=2)
    return FeedPlan(FEED_SIZES, devices, repeats=20, cold_batches=32)


def new_section(plan: FeedPlan) -> dict:
    from ..train.feed import READ_AHEAD

    return {"planned": plan.titles, "measured": [], "complete": False,
            "settings": {"repeats": plan.repeats, "cold_batches": plan.cold_batches, "read_ahead": READ_AHEAD,
                         "images": "prepared.write_synthetic (smooth random RGB), random left-right flips",
                         "targets": {str(r): {"images_per_s": n, "for": what} for r, (n, what) in TARGETS.items()}}}


def drop_from_page_cache(folder: Path) -> bool:
    """Ask the kernel to forget the cached pages of every file in ``folder`` (clean pages go); whether it could."""
    if not hasattr(os, "posix_fadvise"):
        return False
    for path in folder.iterdir():
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return True


def _feed(store, size: FeedSize, device: torch.device, read_ahead: int):
    from ..api import IMAGES, DataSpec
    from ..train.feed import READ_AHEAD, ImageFeed

    return ImageFeed(store, size.batch, 0, device, name="synthetic", spec=DataSpec(IMAGES, size.resolution, 3,
                                                                                   flip=True),
                     resident=False, read_ahead=READ_AHEAD if read_ahead is None else read_ahead)


def _rate(timed: dict, batch: int) -> dict:
    return {**timed, "images_per_s": batch / timed["mean_s"]}  # throughput: batches in flight make the median short


def measure_size(size: FeedSize, plan: FeedPlan, echo=print) -> list[dict]:
    """Every device's figures for one size, over one synthetic dataset written for it and removed after."""
    from ..data.prepared import open_prepared, write_synthetic

    rows = []
    with tempfile.TemporaryDirectory(prefix="ganzoo-bench-feed-") as folder:
        started = time.perf_counter()
        write_synthetic(folder, size.count, 3, size.resolution, seed=0)
        write_s = time.perf_counter() - started
        disk = sum(path.stat().st_size for path in Path(folder).iterdir())
        for device in plan.devices:
            rows.append(measure_device(Path(folder), size, device, plan, write_s, disk, open_prepared))
            echo(line(rows[-1]))
    return rows


def measure_device(folder: Path, size: FeedSize, device: torch.device, plan: FeedPlan, write_s: float,
                   disk: int, open_prepared) -> dict:
    from .machine import device_name

    sync = synchronizer(device)
    evicted = drop_from_page_cache(folder)
    store = open_prepared(folder).domains["images"]
    feed = _feed(store, size, device, None)
    try:
        batches = min(plan.cold_batches, feed.steps_per_epoch)
        started = time.perf_counter()
        for _ in range(batches):
            feed.next()
        sync()
        cold_s = time.perf_counter() - started
        warm = _rate(time_calls(feed.next, device, plan.repeats, warmup=1), size.batch)
        host = _rate(time_calls(feed.next_raw, device, plan.repeats, warmup=1), size.batch)
    finally:
        feed.close()
    in_step = _rate(time_calls(_feed(store, size, device, 0).next, device, plan.repeats, warmup=1), size.batch)
    target = TARGETS.get(size.resolution)
    row = {"resolution": size.resolution, "label": size.label, "count": size.count, "batch": size.batch,
           "disk_bytes": disk, "write_s": write_s, "device": device_name(device), "device_type": device.type,
           "cold": {"batches": batches, "seconds": cold_s, "images_per_s": batches * size.batch / cold_s,
                    "page_cache_dropped": evicted},
           "warm": warm, "host": host, "in_step": in_step,
           "target_images_per_s": target[0] if target else None, "target_for": target[1] if target else None}
    row["host_vs_target"] = host["images_per_s"] / target[0] if target else None
    return row


def line(row: dict) -> str:
    target = (f"; target {row['target_images_per_s']:,} ({row['target_for']}): host side "
              f"x{row['host_vs_target']:.2f}" if row["target_images_per_s"] else "")
    noisy = max((row["warm"], row["host"], row["in_step"]), key=lambda t: t["spread"] or 0.0)
    return (f"  {row['resolution']:4d} px {row['device_type']:4s} batch {row['batch']}: cold "
            f"{row['cold']['images_per_s']:,.0f} img/s, warm {row['warm']['images_per_s']:,.0f}, host side "
            f"{row['host']['images_per_s']:,.0f}, without read-ahead {row['in_step']['images_per_s']:,.0f}"
            f"{target}" + noisy_note(noisy))


def run_feed(plan: FeedPlan, record: dict, echo=print, save=lambda record: None) -> dict:
    """Measure every size on every device, saving the record after each size; complete at the end."""
    section = record.setdefault("feed", new_section(plan))
    echo(f"plan: feed throughput at {', '.join(str(s.resolution) for s in plan.sizes)} px on "
         f"{', '.join(d.type for d in plan.devices)}: synthetic prepared datasets of "
         f"{', '.join(f'{s.count:,}' for s in plan.sizes)} images, batches of "
         f"{', '.join(str(s.batch) for s in plan.sizes)}, {plan.repeats} timed batches per figure")
    for size in plan.sizes:
        section["measured"] += measure_size(size, plan, echo)
        save(record)
    section["complete"] = True
    return record


def feed_section(section: dict) -> str:
    """The feed section as markdown."""
    settings, measured = section["settings"], section["measured"]
    out = [f"### Feed throughput: the training feed over synthetic prepared datasets ({settings['read_ahead']} "
           f"batches read ahead; {settings['repeats']} timed batches per figure)", ""]
    if section.get("complete") is False:
        out += [f"**Incomplete**: {len(measured)} of {len(section['planned'])} planned measurements.", ""]
    out += ["| px | batch | images | MiB on disk | device | cold cache img/s | warm img/s | host side img/s | "
            "without read-ahead img/s | target img/s | host side vs target | p90/p10 (widest) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in measured:
        widest = max((row["warm"], row["host"], row["in_step"]), key=lambda t: t["spread"] or 0.0)
        spread = "" if widest["spread"] is None else f"{widest['spread']:.2f}" + (" **noisy**" if widest["noisy"]
                                                                                  else "")
        target = f"{row['target_images_per_s']:,} ({row['target_for']})" if row["target_images_per_s"] else ""
        versus = f"x{row['host_vs_target']:.2f}" if row["host_vs_target"] is not None else ""
        out.append(f"| {row['resolution']} | {row['batch']} | {row['count']:,} | {row['disk_bytes'] / 2**20:,.1f} | "
                   f"{row['device_type']} | {row['cold']['images_per_s']:,.0f} | {row['warm']['images_per_s']:,.0f} | "
                   f"{row['host']['images_per_s']:,.0f} | {row['in_step']['images_per_s']:,.0f} | {target} | "
                   f"{versus} | {spread} |")
    out += ["", "cold: the first batches after the shards left the page cache; warm: `next()` as training calls it "
            "(float on the device); host side: the uint8 crops the read-ahead thread hands over (pinned for CUDA), "
            "what this host can prepare for an accelerator; without read-ahead: `next()` making each batch itself."]
    return "\n".join(out).rstrip() + "\n"


def feed_noisy(section: dict) -> list[str]:
    return [f"feed {row['resolution']} px {row['device_type']} {kind}" for row in section.get("measured", [])
            for kind in ("warm", "host", "in_step") if row[kind].get("noisy")]
