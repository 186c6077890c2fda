"""What `ganzoo eval` measures: images from a run's checkpoint or an exported model, and the real images to compare.

A sampling generator is drawn in fixed chunks, each from its own seed derived
from ``--seed`` (numpy SeedSequence), so a run directory and its ONNX export
make the same images for the same seed whatever the batch size. An
image-to-image generator translates held-out images of its source domain
(``testA/`` when the folder has one, else ``trainA/``; the embedded pair has
no held-out split) and is compared with real images of its target domain, in
each direction, as the CycleGAN literature reports it.

A class-conditional generator is asked, per chunk, for classes drawn from the
real data's labels (``metrics.conditional.chunk_labels``: stylegan2-ada's
draw, from the seed and the chunk's index), so a run and its export are asked
for the same classes too; an unconditional one is called exactly as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..api import IMAGES, DataSpec
from ..errors import UserError

CHUNK = 500  # images per generator call: fixed, so results never depend on --batch-size


def chunk_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


@dataclass
class TaskLabels:
    """A conditional generator's classes: their names (index = label), the label of every real image of the
    task, and the labels the first n generated images are asked for."""

    classes: list[str]
    real: np.ndarray  # int64 (N,), one per image of Task.real
    generated: Callable[[int], np.ndarray]  # n -> int64 (n,)


@dataclass
class Task:
    """One comparison: fake images (made on demand) against a set of real ones."""

    label: str  # "" for a sampling generator, "a2b" / "b2a" for translators
    real: np.ndarray  # uint8 (N, C, H, W), or a prepared dataset's images read by index when used
    fake: Callable[[int], Iterator[np.ndarray]]  # n -> uint8 chunks, n images in all
    inputs: int | None = None  # translators: how many held-out inputs exist (n is bounded by it)
    labels: TaskLabels | None = None  # a class-conditional generator's; None: unconditional


@dataclass
class Source:
    """A run directory's checkpoint or an exported model, ready to make images."""

    label: str
    kind: str  # "run" or "onnx"
    step: int | None
    data: str | None
    tasks: list[Task] = field(default_factory=list)


def center_crop(images, resolution: int) -> np.ndarray:
    images = np.asarray(images)
    top = (images.shape[-1] - resolution) // 2
    return np.ascontiguousarray(images[..., top:top + resolution, top:top + resolution])


def real_images(data: str | None, resolution: int, channels: int, on_bad=None) -> np.ndarray:
    """The real images to compare with; ``on_bad`` (--skip-bad-files) is told of each unreadable one, skipped."""
    return _images_of(_real_set(data, resolution, channels, on_bad), resolution)


def _real_set(data, resolution: int, channels: int, on_bad, labels: bool = False):
    from ..data import load_data

    return load_data(data, DataSpec(IMAGES, resolution, channels, labels=labels), on_bad=on_bad)


def _images_of(dataset, resolution: int):
    if hasattr(dataset.images, "gather"):  # prepared data stays on disk: only the n images compared are read
        return dataset.images
    return center_crop(dataset.images.numpy(), resolution)


def labelled_real(data: str | None, resolution: int, channels: int, num_classes: int, classes: list[str] | None,
                  what: str, seed: int, on_bad=None) -> tuple[np.ndarray, TaskLabels]:
    """The real images and their labels for a conditional generator of ``num_classes`` classes (``classes``: its
    names where recorded), with the labels its images are asked for (drawn from these for ``seed``); refused in
    one line when the data has no labels, labels beyond the generator's classes, or other class names."""
    from ..data import DEFAULT_DATASET
    from .conditional import generated_labels

    dataset = _real_set(data, resolution, channels, on_bad, labels=True)  # unlabelled data is refused there
    where = data or DEFAULT_DATASET
    if dataset.labels is None:  # the data layer names what a labelled source is; this is the last word
        raise UserError(f"{where} has no class labels, and {what} is class-conditional: the classes of its images "
                        "are drawn from the real data's labels")
    labels = np.asarray(dataset.labels, dtype=np.int64)
    data_classes = getattr(dataset, "classes", None)
    if len(labels) and int(labels.max()) >= num_classes:
        raise UserError(f"{where} has labels up to {int(labels.max())}, but {what} has {num_classes} classes "
                        f"(0 to {num_classes - 1}); evaluate with the data it was trained on")
    if classes is not None and data_classes is not None and list(data_classes) != list(classes):
        from ..conditioning import shown

        raise UserError(f"{what} was trained on {shown(classes)}, but {where} has {shown(data_classes)}: its "
                        "labels mean its own classes; evaluate with data of the same class list (in the same "
                        "order)")
    names = list(classes or data_classes or [str(i) for i in range(num_classes)])
    return _images_of(dataset, resolution), TaskLabels(names, labels,
                                                       lambda n: generated_labels(labels, n, seed, CHUNK))


def domain_images(data: str | None, resolution: int, channels: int, domain: str, on_bad=None) -> np.ndarray:
    """Held-out images of one domain: test{domain}/ when present, else train{domain}/, else the embedded pair's."""
    from ..api import UNPAIRED
    from ..data import source_folder
    from ..data.folder import load_folder
    from ..data.unpaired import embedded_pair

    spec = DataSpec(UNPAIRED, resolution, channels)
    root = source_folder(data, download=True)
    if root is None:
        return center_crop(getattr(embedded_pair(spec), domain).numpy(), resolution)
    for split in ("test", "train"):
        folder = Path(root) / f"{split}{domain}"
        if folder.is_dir():
            return load_folder(folder, resolution, channels, on_bad=on_bad)
    raise UserError(f"{root} has neither test{domain}/ nor train{domain}/ to evaluate domain {domain}")


def _to_unit(images: np.ndarray) -> np.ndarray:
    return images.astype(np.float32) / 127.5 - 1.0


def from_run(run_dir: Path, data: str | None, step: int | str | None, device, batch_size: int, seed: int,
             on_bad=None) -> Source:
    """The EMA generators of a run's checkpoint (``step``, "best", or the newest intact one)."""
    from .. import rundir

    run = rundir.open_run(run_dir)
    data = run.resolved.data if data is None else data
    nets, used = rundir.load_sampling_nets(run, device, step=step)
    classes = rundir.run_classes(run) if run.record.get(rundir.CLASSES) is not None else None
    return from_nets(run.arch, run.resolved.config, nets, data, device, batch_size, seed,
                     Source(f"{run_dir} (step {used})", "run", used, data), on_bad=on_bad, classes=classes)


def from_nets(arch, cfg, nets: dict, data: str | None, device, batch_size: int, seed: int, source: Source,
              on_bad=None, classes: list[str] | None = None) -> Source:
    """Tasks for an architecture's generators held in memory (a checkpoint's, or a training run's EMA ones);
    ``on_bad`` None stops at unreadable real images, else it is told of each and it is skipped. ``classes``: a
    conditional run's recorded class names (None: the data's)."""
    import torch

    from ..sampling import generate, to_uint8
    from .conditional import chunk_labels

    spec = arch.data_spec(cfg)
    for name, gen in arch.generators(cfg).items():
        if gen.role not in nets:  # an imported run without this generator (CycleGAN's horse2zebra.pth alone)
            continue
        net = nets[gen.role]
        if gen.translates:
            a, b = gen.translates

            def translated(n, inputs, net=net):
                for start in range(0, n, batch_size):
                    x = torch.from_numpy(_to_unit(inputs[start:min(n, start + batch_size)])).to(device)
                    with torch.no_grad():
                        yield to_uint8(net(x)).cpu().numpy()

            inputs = domain_images(data, spec.resolution, spec.channels, a, on_bad)
            source.tasks.append(Task(f"{a.lower()}2{b.lower()}",
                                     domain_images(data, spec.resolution, spec.channels, b, on_bad),
                                     lambda n, inputs=inputs, t=translated: t(n, inputs), len(inputs)))
        elif not any(t.label == "" for t in source.tasks):
            part = getattr(gen.latents, "label_part", None)
            if part is None:
                real, labels = real_images(data, spec.resolution, spec.channels, on_bad), None
            else:
                real, labels = labelled_real(data, spec.resolution, spec.channels, part.num_classes, classes,
                                             source.label, seed, on_bad)

            def sampled(n, net=net, gen=gen, labels=labels):
                for index, start in enumerate(range(0, n, CHUNK)):
                    count = min(CHUNK, n - start)
                    asked = None if labels is None else chunk_labels(labels.real, count, seed, index)
                    yield generate(net, gen, count, chunk_seed(seed, index), device, chunk=batch_size,
                                   labels=asked).numpy()

            source.tasks.insert(0, Task("", real, sampled, labels=labels))
    return source


def from_onnx(path: Path, data: str | None, device: str, batch_size: int, seed: int, on_bad=None) -> Source:
    """An exported generator through the torch-free runtime (same images as its run for the same seed)."""
    from ..runtime import load

    model = load(path, device)
    meta = model.metadata
    source = Source(f"{path} (ONNX Runtime)", "onnx", None, data)
    if meta.translates:
        a, b = meta.translates
        inputs = domain_images(data, meta.resolution, meta.channels, a, on_bad)

        def translated(n):
            for start in range(0, n, batch_size):
                yield np.stack([model.translate(_to_unit(image[None])) for image in inputs[start:min(n, start + batch_size)]])

        source.tasks.append(Task(f"{a.lower()}2{b.lower()}", domain_images(data, meta.resolution, meta.channels, b,
                                                                          on_bad), translated, len(inputs)))
    else:
        from .conditional import chunk_labels

        part = meta.latents.label_part if meta.latents is not None else None
        if part is None:
            real, labels = real_images(data, meta.resolution, meta.channels, on_bad), None
        else:
            real, labels = labelled_real(data, meta.resolution, meta.channels, part.num_classes, model_classes(meta),
                                         source.label, seed, on_bad)

        def sampled(n):
            for index, start in enumerate(range(0, n, CHUNK)):
                count = min(CHUNK, n - start)
                asked = None if labels is None else chunk_labels(labels.real, count, seed, index)
                yield model.sample(count, chunk_seed(seed, index), chunk=batch_size, labels=asked)

        source.tasks.append(Task("", real, sampled, labels=labels))
    return source


def model_classes(meta) -> list[str] | None:
    """The class names an exported conditional generator records in its metadata (None where it records none:
    then the data's names are used, as for a run whose config.json has none)."""
    return list(meta.classes) if meta.classes is not None and meta.raw.get("classes") else None
