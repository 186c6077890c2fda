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
            for key, value in precision_recall_density_coverage(real[features], fake[features], k=3).items():
                out[f"{key}-{features}"] = float(value)
    return out
