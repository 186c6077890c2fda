"""The metrics `ganzoo eval` offers, by name, and the extractor each one needs.

``fid`` is the Frechet distance on Inception features (Heusel et al. 2017),
``fd-dinov2`` on DINOv2 ViT-L/14 features (Stein et al. 2023), ``fd-fmnist`` on
the shipped Fashion-MNIST classifier's. ``kid`` (Binkowski et al. 2018) and
``pr`` (precision, recall, density, coverage: Kynkaanniemi et al. 2019, Naeem
et al. 2020) are computed on the features of one chosen extractor, and their
result keys name it (``kid-inception``), so numbers on different features are
never confused.

A class-conditional generator adds, where they apply (``metrics.conditional``):
``intra-fid``, ``intra-fd-dinov2`` and ``intra-fd-fmnist``, the mean over classes
of the per-class Frechet distance on that extractor (StudioGAN's iFID), and
``class-accuracy``, the fraction of generated images the fmnist classifier puts
in the class asked for (Fashion-MNIST's ten classes only). Accuracy is the one
metric where higher is better.
"""

from __future__ import annotations

from ..errors import UserError

FRECHET = {"fid": "inception", "fd-dinov2": "dinov2", "fd-fmnist": "fmnist"}
ON_FEATURES = ("kid", "pr")
INTRA = {"intra-fid": "inception", "intra-fd-dinov2": "dinov2", "intra-fd-fmnist": "fmnist"}  # per class, mean
ACCURACY = "class-accuracy"
ACCURACY_EXTRACTOR = "fmnist"  # the classifier that judges the class
CONDITIONAL = (*INTRA, ACCURACY)  # only for a class-conditional generator
METRICS = (*FRECHET, *ON_FEATURES, *CONDITIONAL)
RANKED = (*FRECHET, "kid", *CONDITIONAL)  # one number each: these can pick a run's best checkpoint
HIGHER_IS_BETTER = (ACCURACY,)  # every other ranked metric is a distance: lower is better
PR_NEIGHBOURS = 3  # k of precision/recall/density/coverage

# The fewest images (of each set) a metric can be computed from, and why.
MIN_IMAGES = {**{name: (2, "a covariance needs two samples") for name in FRECHET},
              "kid": (2, "its unbiased estimate needs two samples per subset"),
              "pr": (PR_NEIGHBOURS + 1, f"each image needs {PR_NEIGHBOURS} nearest neighbours besides itself"),
              **{name: (2, "a covariance needs two samples of each class") for name in INTRA},
              ACCURACY: (1, "a fraction needs one image")}


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


def default_metrics(embedded: bool, conditional: bool = False) -> str:
    """fd-fmnist,kid,pr on the embedded data, fid,kid,pr otherwise; a conditional generator on the embedded data
    adds intra-fd-fmnist and class-accuracy, which reuse the fmnist features already computed (no other data's
    default adds intra-fid: with many classes its per-class n is small and each 2048-d FD costs seconds)."""
    if embedded:
        return "fd-fmnist,kid,pr" + (f",intra-fd-fmnist,{ACCURACY}" if conditional else "")
    return "fid,kid,pr"


def better(metric: str, value: float, than: float) -> bool:
    """Whether ``value`` of a RANKED metric beats ``than``: higher for accuracy, lower for a distance."""
    return value > than if metric in HIGHER_IS_BETTER else value < than


def direction(metric: str) -> str:
    return "higher is better" if metric in HIGHER_IS_BETTER else "lower is better"


def default_features(embedded: bool) -> str:
    """The extractor kid and pr use when none is named: the shipped classifier on the embedded data."""
    return "fmnist" if embedded else "inception"


def ranking_key(metric: str, features: str) -> str:
    """The result key (from ``compute``) whose value ranks checkpoints for a RANKED metric."""
    return f"kid-{features}" if metric == "kid" else metric


def extractor_of(metric: str, features: str) -> str:
    """The extractor whose features ``metric`` is computed on."""
    if metric in FRECHET:
        return FRECHET[metric]
    if metric in INTRA:
        return INTRA[metric]
    return ACCURACY_EXTRACTOR if metric == ACCURACY else features


def parse_metrics(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in METRICS]
    if unknown or not names:
        raise UserError(f"unknown metric {', '.join(map(repr, unknown)) or repr(text)}; metrics: {', '.join(METRICS)}")
    return list(dict.fromkeys(names))


def extractors_needed(metrics: list[str], features: str) -> list[str]:
    """Extractor names, each once, in the order the metrics need them."""
    return list(dict.fromkeys(extractor_of(m, features) for m in metrics))


def refuse_inapplicable(metrics: list[str], task, what: str, option: str = "") -> None:
    """One UserError when a conditional metric is asked of a generator it does not apply to, saying why:
    ``what`` names the generator (a run, a model), ``task`` is its metrics.sources.Task, ``option`` the option
    that asked (``--eval-metric``)."""
    from ..conditioning import shown
    from ..data.embedded import CLASS_NAMES

    wanted = [m for m in metrics if m in CONDITIONAL]
    if not wanted:
        return
    asked = f"{option} " if option else ""
    if task.labels is None:
        kind = (f"its generator translates images ({task.label})" if task.label
                else "it is unconditional (it takes no class labels)")
        raise UserError(f"{asked}{', '.join(wanted)} {'needs' if len(wanted) == 1 else 'need'} a class-conditional "
                        f"generator, and {what} is not: {kind}")
    if ACCURACY in wanted and list(task.labels.classes) != list(CLASS_NAMES):
        raise UserError(f"{asked}{ACCURACY} needs a generator of Fashion-MNIST's ten classes (the fmnist classifier knows "
                        f"only those), and {what} has {shown(task.labels.classes)}; intra-class FD applies "
                        f"(e.g. --metrics {','.join(m for m in INTRA)})")


def compute(metrics: list[str], features: str, real: dict, fake: dict, seed: int,
            labels=None) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """({result key: value}, {metric: {class name: value}}) from per-extractor feature matrices ``real[name]``
    and ``fake[name]``; ``labels`` (evaluate.ClassLabels) holds a conditional generator's classes, the labels of
    the real and generated rows, the classes present and the classifier's predictions (for class-accuracy)."""
    from . import frechet_distance_from_features
    from .conditional import class_accuracy, intra_class_frechet
    from .kid import kernel_inception_distance
    from .prdc import precision_recall_density_coverage

    out: dict[str, float] = {}
    per_class: dict[str, dict[str, float]] = {}
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
        elif metric in INTRA:
            name = INTRA[metric]
            out[metric], values, _ = intra_class_frechet(real[name], labels.real, fake[name], labels.generated,
                                                         labels.present)
            per_class[metric] = {labels.classes[c]: value for c, value in values.items()}
        elif metric == ACCURACY:
            out[metric], values = class_accuracy(labels.predicted, labels.generated, len(labels.classes))
            per_class[metric] = {labels.classes[c]: value for c, value in values.items()}
    return out, per_class
