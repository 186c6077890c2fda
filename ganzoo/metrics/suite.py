"""The metrics `ganzoo eval` offers, by name, and the extractor each one needs.

``fid`` is the Frechet distance on Inception features (Heusel et al. 2017),
``fd-dinov2`` on DINOv2 ViT-L/14 features (Stein et al. 2023), ``fd-fmnist`` on
the shipped Fashion-MNIST classifier's. ``kid`` (Binkowski et al. 2018) and
``pr`` (precision, recall, density, coverage: Kynkaanniemi et al. 2019, Naeem
et al. 2020) are computed on the features of one chosen extractor, and their
result keys name it (``kid-inception``), so numbers on different features are
never confused.
"""

from __future__ import annotations

from ..errors import UserError

FRECHET = {"fid": "inception", "fd-dinov2": "dinov2", "fd-fmnist": "fmnist"}
ON_FEATURES = ("kid", "pr")
METRICS = (*FRECHET, *ON_FEATURES)
RANKED = (*FRECHET, "kid")  # one number each, lower is better: these can pick a run's best checkpoint
PR_NEIGHBOURS = 3  # k of precision/recall/density/coverage

# The fewest images (of each set) a metric can be computed from, and why.
MIN_IMAGES = {**{name: (2, "a covariance needs two samples") for name in FRECHET},
              "kid": (2, "its unbiased estimate needs two samples per subset"),
              "pr": (PR_NEIGHBOURS + 1, f"each image needs {PR_NEIGHBOURS} nearest neighbours besides itself")}


def min_images(metrics: list[str]) -> tuple[int, str, str]:
    """(the fewest images every one of ``metrics`` can use, the metric that needs them, why)."""
    metric = max(metrics, key=lambda m: MIN_IMAGES[m][0])
    return MIN_IMAGES[metric][0], metric, MIN_IMAGES[metric][1]


def refuse_too_few(n: int, metrics: list[str], option: str) -> None:
    """One UserError when ``option``'s ``n`` images are fewer than a metric needs (checked before any work)."""
    need, metric, why = min_images(metrics)
    if n < need:
        raise UserError(f"{option} {n} is too few images for {metric}, which needs at least {need} ({why}); "
                        f"use {option} {need} or more")


def default_metrics(embedded: bool) -> str:
    return "fd-fmnist,kid,pr" if embedded else "fid,kid,pr"


def default_features(embedded: bool) -> str:
    """The extractor kid and pr use when none is named: the shipped classifier on the embedded data."""
    return "fmnist" if embedded else "inception"


def ranking_key(metric: str, features: str) -> str:
    """The result key (from ``compute``) whose value ranks checkpoints for a RANKED metric."""
    return f"kid-{features}" if metric == "kid" else metric


def parse_metrics(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in METRICS]
    if unknown or not names:
        raise UserError(f"unknown metric {', '.join(map(repr, unknown)) or repr(text)}; metrics: {', '.join(METRICS)}")
    return list(dict.fromkeys(names))


def extractors_needed(metrics: list[str], features: str) -> list[str]:
    """Extractor names, each once, in the order the metrics need them."""
    needed = [FRECHET[m] if m in FRECHET else features for m in metrics]
    return list(dict.fromkeys(needed))


def compute(metrics: list[str], features: str, real: dict, fake: dict, seed: int) -> dict[str, float]:
    """{result key: value} from per-extractor feature matrices ``real[name]`` and ``fake[name]``."""
    from . import frechet_distance_from_features
    from .kid import kernel_inception_distance
    from .prdc import precision_recall_density_coverage

    out: dict[str, float] = {}
    for metric in metrics:
        if metric in FRECHET:
            name = FRECHET[metric]
            out[metric] = float(frechet_distance_from_features(real[name], fake[name]))
        elif metric == "kid":
            size = min(1000, len(real[features]), len(fake[features]))
            mean, std = kernel_inception_distance(real[features], fake[features], subset_size=size, seed=seed)
            out[f"kid-{features}"], out[f"kid-{features}-std"] = float(mean), float(std)
        elif metric == "pr":
            for key, value in precision_recall_density_coverage(real[features], fake[features],
                                                                    k=PR_NEIGHBOURS).items():
                out[f"{key}-{features}"] = float(value)
    return out
