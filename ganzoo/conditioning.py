"""Class-conditional runs: the class count an architecture is conditioned on, fitted to the data and checked.

An architecture that can be conditional names its class-count Config key
(``Architecture.class_count_key``). ``ganzoo train --cond`` sets that key to the
number of classes the data has; ``--set KEY=N`` must agree with the data. The
class names (index = label) are recorded in config.json (``rundir.CLASSES``),
so ``--class NAME``, the grids and evaluation name them, and a resume or an
``--init`` on data with another class list is refused with both lists named:
the networks' label inputs mean those classes.
"""

from __future__ import annotations

import dataclasses

from .errors import UserError

def conditional_architectures() -> list[str]:
    """Names of the installed architectures that can be conditional (those that load)."""
    from . import registry

    names = []
    for entry in registry.load_all():
        cls = registry.load(entry)
        if cls is not None and getattr(cls, "class_count_key", None):
            names.append(entry.name)
    return names


def refuse_unconditional(arch) -> None:
    """``--cond`` for an architecture that cannot be conditional: one line naming those that can."""
    if arch.class_count_key:
        return
    able = conditional_architectures()
    raise UserError(f"{arch.name} cannot be conditional (--cond): it takes no class labels"
                    + (f"; conditional architectures: {', '.join(able)}" if able else ""))


def wants_labels(arch, cfg, cond: bool) -> bool:
    """Whether a run trains on labels: ``--cond``, or a class count already in its config."""
    if cond:
        refuse_unconditional(arch)
    return cond or arch.num_classes(cfg) > 0


def labelled_spec(arch, cfg, cond: bool):
    """The DataSpec the data is loaded with: the architecture's, asking for labels when the run is conditional
    (before ``--cond`` has set the class count, the architecture's own spec does not ask yet)."""
    spec = arch.data_spec(cfg)
    if wants_labels(arch, cfg, cond) and not spec.labels:
        spec = dataclasses.replace(spec, labels=True)
    return spec


def shown(classes) -> str:
    """A class list for a message: '2 classes (cats, dogs)', shortened as `ganzoo data prepare` shortens it."""
    from .data.class_labels import describe_classes

    if classes is None:
        return "no classes (unconditional)"
    count, listed = describe_classes(classes).split(" ", 1)
    return f"{count} classes {listed}"


def fit_class_count(arch, resolved, classes, source: str, cond: bool):
    """``resolved`` with the class count set to the data's (``--cond``), or checked against it (``--set``).

    ``classes``: the data's class names. The result is validated, and its DataSpec is the labelled one.
    """
    from .config import validate

    if classes is None:  # the data layer names what a labelled source is; this is the last word if it did not
        raise UserError(f"{source} has no class labels: a conditional run needs one class per image")
    key, count = arch.class_count_key, len(classes)
    if count == 0:
        raise UserError(f"{source} has labels but no classes: a conditional run needs at least one")
    current = arch.num_classes(resolved.config)
    if current == count:
        return resolved
    if current != 0 or not cond:
        raise UserError(f"{key}={current} but {source} has {shown(classes)}: leave {key} out and pass --cond "
                        f"to condition on the data's classes")
    config = dataclasses.replace(resolved.config, **{key: count})
    validate(arch, config, lambda k: "--cond", resolved.train)
    return dataclasses.replace(resolved, config=config, overrides={**resolved.overrides, key: count})


def refuse_other_classes(recorded, classes, what: str) -> None:
    """A run (resumed, or the source of ``--init``) trained on ``recorded`` classes; the data now has
    ``classes``. Any difference, in count, names or order, is refused with both lists."""
    if recorded is None and classes is None:
        return
    if recorded is not None and classes is not None and list(recorded) == list(classes):
        return
    raise UserError(f"{what} was trained on {shown(recorded)}, but this run's data has {shown(classes)}: "
                    "a conditional network's labels mean its own classes; use data with the same class list "
                    "(in the same order), or start a new run")
