"""Does conditional DCGAN draw the class it is asked for, without losing quality? (issue 25, item 7)

Trains DCGAN on the embedded Fashion-MNIST at the demo's size (1,500 steps at batch 64, the
``fashion-mnist`` preset, seed 0, CPU) twice: unconditional and with ``num_classes=10`` (what
``ganzoo train dcgan --cond`` sets), then measures with the shipped fmnist classifier:

- class accuracy: ``--per-class`` images of each class from the EMA generator, the share the
  classifier puts in the class asked for (argmax over its 11 logits; the reject class counts as wrong);
- fd-fmnist: Frechet distance of the classifier's features, generated against the 10,000 real images;
  the conditional run's images are the same per-class set (a uniform label draw, as the embedded test
  split has 1,000 images per class), the unconditional run's as many images by seed;
- intra-class fd-fmnist (the mean over classes of each class's distance to that class's real images).

    PYTHONPATH=.:plugins python benchmarks/conditional_dcgan.py --out /tmp/cond-dcgan

The issue's target: accuracy >= 0.8 and fd-fmnist no more than 10% above the unconditional run's.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from ganzoo import config, registry
from ganzoo.data import load_images
from ganzoo.metrics.extractors import fmnist
from ganzoo.metrics.frechet import frechet_distance_from_features
from ganzoo.sampling import generate
from ganzoo.train.trainer import Trainer


def train(arch, out: Path, steps: int, batch: int, num_classes: int, sets: dict, every: int):
    resolved = config.resolve(arch, preset="fashion-mnist", sets={"num_classes": num_classes, **sets},
                              flags={"device": "cpu", "seed": 0, "steps": steps, "batch_size": batch,
                                     "log_every": 100, "sample_every": steps, "checkpoint_every": every or steps,
                                     "keep_checkpoints": 1000})
    trainer = Trainer(arch, resolved, load_images(None, arch.data_spec(resolved.config)), out)
    start = time.perf_counter()
    trainer.run()
    return trainer, resolved.config, time.perf_counter() - start


def features(extractor, images: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return torch.cat([extractor.embed(images[i:i + 500]) for i in range(0, len(images), 500)]).double().numpy()


def classes(extractor, images: torch.Tensor) -> torch.Tensor:
    classify = extractor.extra["classify"]
    with torch.no_grad():
        return torch.cat([classify(images[i:i + 500]).argmax(1) for i in range(0, len(images), 500)])


def measure(arch, trainer, cfg, extractor, real, real_labels, per_class: int) -> dict:
    spec = arch.generators(cfg)["G"]
    G = trainer.sampling_nets()[spec.role].eval()
    cpu = torch.device("cpu")
    n = per_class * 10
    result = {}
    if cfg.num_classes:
        labels = np.repeat(np.arange(10), per_class)
        images = generate(G, spec, n, 123, cpu, labels=labels)
        predicted = classes(extractor, images).numpy()
        per = [float((predicted[labels == c] == c).mean()) for c in range(10)]
        result["class_accuracy"] = float((predicted == labels).mean())
        result["class_accuracy_per_class"] = per
        fake_features = features(extractor, images)
        real_features = features(extractor, real)
        intra = [frechet_distance_from_features(fake_features[labels == c], real_features[real_labels == c])
                 for c in range(10)]
        result["intra_fd_fmnist"] = float(np.mean(intra))
        result["intra_fd_fmnist_per_class"] = intra
    else:
        images = generate(G, spec, n, 123, cpu)
        fake_features, real_features = features(extractor, images), features(extractor, real)
        predicted = classes(extractor, images).numpy()
        result["class_histogram"] = np.bincount(predicted, minlength=11).tolist()
    result["fd_fmnist"] = frechet_distance_from_features(fake_features, real_features)
    return result


def accuracy_by_checkpoint(arch, cfg, run_dir: Path, extractor, per_class: int) -> dict[int, float]:
    """Class accuracy of each checkpoint's EMA generator: how fast the classes are learnt."""
    from ganzoo.train import checkpoint as ckpt

    spec = arch.generators(cfg)["G"]
    labels = np.repeat(np.arange(10), per_class)
    out = {}
    for folder in ckpt.checkpoint_dirs(run_dir):
        weights = ckpt.load_networks(folder)
        G = arch.build(cfg)["G"]
        G.load_state_dict(weights.get("G_ema", weights["G"]))
        images = generate(G.eval(), spec, len(labels), 123, torch.device("cpu"), labels=labels)
        out[ckpt.step_of(folder)] = float((classes(extractor, images).numpy() == labels).mean())
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--per-class", type=int, default=2000)
    parser.add_argument("--only", choices=["cond", "uncond"], default=None)
    parser.add_argument("--set", action="append", default=[], help="KEY=VALUE for both runs (lr=1e-4)")
    parser.add_argument("--every", type=int, default=0, help="also the class accuracy of every N steps' checkpoint")
    args = parser.parse_args()
    sets = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    torch.set_num_threads(max(1, torch.get_num_threads()))
    arch = registry.get("dcgan")
    extractor = fmnist.load("cpu")
    data = load_images(None, arch.data_spec(arch.make_config({"resolution": 32, "channels": 1, "num_classes": 10})))
    results = {"real_class_accuracy": float((classes(extractor, data.images) == data.labels).float().mean())}
    print("the classifier on the real images:", results["real_class_accuracy"], flush=True)
    for name, k in (("uncond", 0), ("cond", 10)):
        if args.only and name != args.only:
            continue
        trainer, cfg, seconds = train(arch, args.out / name, args.steps, args.batch_size, k, sets, args.every)
        results[name] = {"train_seconds": round(seconds, 1),
                         **measure(arch, trainer, cfg, extractor, data.images, data.labels.numpy(), args.per_class)}
        if k and args.every:
            results[name]["class_accuracy_by_step"] = accuracy_by_checkpoint(arch, cfg, args.out / name, extractor,
                                                                              args.per_class // 4)
        print(name, json.dumps(results[name]), flush=True)
    if "cond" in results and "uncond" in results:
        results["fd_ratio"] = results["cond"]["fd_fmnist"] / results["uncond"]["fd_fmnist"]
        print(f"class accuracy {results['cond']['class_accuracy']:.3f} (target >= 0.8); fd-fmnist "
              f"{results['cond']['fd_fmnist']:.2f} conditional, {results['uncond']['fd_fmnist']:.2f} unconditional, "
              f"ratio {results['fd_ratio']:.3f} (target <= 1.1)")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"sets": sets, "steps": args.steps, **results}, indent=1))


if __name__ == "__main__":
    main()
