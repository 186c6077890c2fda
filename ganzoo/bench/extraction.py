"""Feature-extraction speed (`ganzoo bench --eval`): images/s per extractor and precision, and what
bf16/fp16 autocast does to the Frechet distance, measured in one run.

Throughput is ``Extractor.features`` on uint8 images held on the CPU (the copy to the device, resize,
network and the copy back all count), timed by ``timing.time_calls`` like the rest of the suite.
The FD effect takes two pairs of embedded Fashion-MNIST test images (32x32 grey): ``halves`` (two
disjoint sets of n real images, a small FD like a good generator's) and ``blurred`` (the first set
against the second blurred, a large FD); each precision's FD is compared with fp32's.

Weights: the bench never downloads. The fmnist extractor uses its shipped weights; inception and dinov2
use a file already in the caches ``ganzoo eval`` reads (torch hub's, Hugging Face's), else random weights
of the same architecture, and the record and the table say so: throughput does not depend on the
weights, but the FD effect measured then is that of random weights.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from .plan import EVAL_RESOLUTIONS, EvalPlan
from .report import percent
from .timing import noisy_note, time_calls

RANDOM_NOTE = "random weights (throughput only; the FD effect is for random weights)"
BLUR = 5  # box blur width of the "blurred" pair's second set


@dataclass
class Loaded:
    """One extractor's network, wrapped once per precision, and where its weights came from."""

    name: str
    by_precision: dict  # precision -> Extractor
    weights: dict  # {"kind": "shipped" | "cached" | "random", "file", "sha256", "note"}
    load_s: float


def load(name: str, device: torch.device, precisions: list[str], batch: int) -> Loaded:
    """The extractor ``name`` in every precision, its network loaded once; never downloads."""
    from ..metrics.extractors import dinov2, fmnist, inception
    from ..metrics.extractors.weights import sha256_of

    started = time.perf_counter()
    if name == "fmnist":
        by_precision = {p: fmnist.load(device, batch_size=batch, precision=p) for p in precisions}
        first = by_precision[precisions[0]]
        weights = {"kind": "shipped", "file": str(first.weights), "sha256": first.weights_sha256, "note": ""}
        return Loaded(name, by_precision, weights, time.perf_counter() - started)
    module = {"inception": inception, "dinov2": dinov2}[name]
    found = next((path for path in module.weights_source().cached if path.is_file()), None)
    if found is not None:
        net, digest = module.load_network(found), sha256_of(found)
        weights = {"kind": "cached", "file": str(found), "sha256": digest, "note": ""}
    else:
        net = module.random_network(device=device) if name == "dinov2" else module.random_network()
        digest = "random weights, seed 0"
        weights = {"kind": "random", "file": None, "sha256": None, "note": RANDOM_NOTE}
    by_precision = {p: module.wrap(net, device, found, digest, batch, p) for p in precisions}
    return Loaded(name, by_precision, weights, time.perf_counter() - started)


@dataclass
class Images:
    """The images every extractor sees: a batch at each resolution, and the FD pairs' three sets."""

    batches: dict[str, torch.Tensor]  # resolution label -> uint8 (batch, C, R, R)
    first: torch.Tensor  # n embedded test images
    second: torch.Tensor  # the next n
    blurred: torch.Tensor  # the second set, box-blurred

    @property
    def fd_sets(self) -> dict[str, torch.Tensor]:
        return {"first": self.first, "second": self.second, "blurred": self.blurred}


def images(plan: EvalPlan) -> Images:
    from ..api import IMAGES, DataSpec
    from ..data import embedded_images

    grey, _ = embedded_images(DataSpec(kind=IMAGES, resolution=32, channels=1))
    batches = {}
    for label, (size, channels) in EVAL_RESOLUTIONS.items():
        picked = grey[:plan.batch].float()
        if size != 32:
            picked = torch.nn.functional.interpolate(picked, size=(size, size), mode="bilinear", align_corners=False)
        batches[label] = picked.round().clamp(0, 255).to(torch.uint8).expand(-1, channels, -1, -1).contiguous()
    first, second = grey[:plan.n], grey[plan.n:2 * plan.n]
    blurred = torch.nn.functional.avg_pool2d(second.float(), BLUR, stride=1, padding=BLUR // 2,
                                             count_include_pad=False).round().to(torch.uint8)
    return Images(batches, first, second, blurred)


def measure(loaded: Loaded, precision: str, plan: EvalPlan, data: Images, device: torch.device,
            fp32: dict | None, echo=print) -> tuple[dict, dict]:
    """One (extractor, precision): throughput at each resolution and the FD pairs; compared with the fp32
    entry ``fp32`` (and its features) when given. Returns (the record entry, the features of the FD sets)."""
    from ..metrics import frechet_distance_from_features

    extractor = loaded.by_precision[precision]
    started = time.perf_counter()
    throughput = {}
    for label, batch in data.batches.items():
        timed = time_calls(lambda: extractor.features(batch), device, plan.repeats, warmup=plan.warmup)
        throughput[label] = {**timed, "batch": len(batch), "images_per_s": len(batch) / timed["median_s"]}
    features = {key: extractor.features(images) for key, images in data.fd_sets.items()}
    fd = {"halves": frechet_distance_from_features(features["first"], features["second"]),
          "blurred": frechet_distance_from_features(features["first"], features["blurred"])}
    entry = {"extractor": loaded.name, "precision": precision, "weights": loaded.weights,
             "description": extractor.describe(), "throughput": throughput, "n": plan.n,
             "fd": {pair: float(value) for pair, value in fd.items()}}
    if fp32 is not None:
        entry["vs_fp32"] = compare(entry, fp32["entry"], features["first"], fp32["features"]["first"])
    entry["seconds"] = time.perf_counter() - started
    echo(line(entry) + noisy_note(max(throughput.values(), key=lambda t: t["spread"] or 0.0)))
    return entry, features


def compare(entry: dict, reference: dict, features: np.ndarray, reference_features: np.ndarray) -> dict:
    """Throughput ratio per resolution, FD difference per pair (absolute and relative) and the median
    relative error of the features themselves, against the fp32 entry."""
    speedup = {label: row["images_per_s"] / reference["throughput"][label]["images_per_s"]
               for label, row in entry["throughput"].items()}
    fd = {pair: {"abs_diff": abs(value - reference["fd"][pair]),
                 "rel_diff": abs(value - reference["fd"][pair]) / abs(reference["fd"][pair])}
          for pair, value in entry["fd"].items()}
    errors = np.linalg.norm(features - reference_features, axis=1) / np.linalg.norm(reference_features, axis=1)
    return {"speedup": speedup, "fd": fd, "feature_rel_error_median": float(np.median(errors))}


def line(entry: dict) -> str:
    """One console line per (extractor, precision)."""
    rates = ", ".join(f"{label} {row['images_per_s']:,.1f} img/s" for label, row in entry["throughput"].items())
    text = (f"  {entry['extractor']:9s} {entry['precision']:4s} {rates}; FD halves {entry['fd']['halves']:.4g}, "
            f"blurred {entry['fd']['blurred']:.4g}")
    if "vs_fp32" in entry:
        vs = entry["vs_fp32"]
        text += (" (vs fp32: x" + "/x".join(f"{v:.2f}" for v in vs["speedup"].values()) + " speed, FD " +
                 ", ".join(f"{pair} {percent(d['rel_diff'])}" for pair, d in vs["fd"].items()) + ")")
    if entry["weights"]["kind"] == "random":
        text += " [random weights]"
    return text


def new_section(plan: EvalPlan) -> dict:
    """The section of the bench record before its first measurement."""
    return {"planned": plan.titles, "measured": [], "complete": False,
            "settings": {"batch": plan.batch, "repeats": plan.repeats, "warmup": plan.warmup, "n": plan.n,
                         "resolutions": list(EVAL_RESOLUTIONS), "blur": BLUR,
                         "images": "embedded Fashion-MNIST test images (32x32 grey); 256x256x3: the same images "
                                   "upsampled (bilinear), grey replicated to RGB"}}


def run_eval(plan: EvalPlan, device: torch.device, record: dict, echo=print, save=lambda record: None) -> dict:
    """Load every extractor (never downloading), probe, print the estimate, then measure each (extractor,
    precision), fp32 first, saving the record after each; the section is marked complete at the end."""
    from ..train.loggers import duration
    from .estimate import extraction_seconds, probe_extraction
    from .machine import device_name

    section = record.setdefault("eval", new_section(plan))
    echo(f"plan: feature extraction of {', '.join(plan.extractors)} in {', '.join(plan.precisions)} on "
         f"{device_name(device)}: {plan.warmup} warm-up + {plan.repeats} timed calls of {plan.batch} images at "
         f"{', '.join(EVAL_RESOLUTIONS)}; FD pairs of {plan.n} images")
    data = images(plan)
    loaded = {}
    for name in plan.extractors:
        loaded[name] = load(name, device, plan.precisions, plan.batch)
        kind = loaded[name].weights
        echo(f"  {name}: {kind['file'] if kind['kind'] != 'random' else RANDOM_NOTE} "
             f"(loaded in {loaded[name].load_s:.1f} s)")
    echo("estimating: one call per extractor, precision and resolution ...")
    found = probe_extraction(loaded, data.batches, device)
    estimates = {(name, p): extraction_seconds(plan, found, name, p) for name in plan.extractors
                 for p in plan.precisions}
    section["estimate_s"] = sum(estimates.values())
    echo(f"estimate: about {duration(section['estimate_s'])} (a quick measurement, {duration(found.seconds)}, "
         "times the calls planned)")
    for name in plan.extractors:
        fp32 = None
        for precision in plan.precisions:
            entry, features = measure(loaded[name], precision, plan, data, device, fp32, echo)
            entry["estimate_s"] = estimates[(name, precision)]
            section["measured"].append(entry)
            save(record)
            if precision == "fp32":
                fp32 = {"entry": entry, "features": features}
        del loaded[name]  # free its network before the next one
    section["complete"] = True
    return record
