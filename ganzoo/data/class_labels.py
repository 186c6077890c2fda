"""Class labels: the class of each image of a source, its class names, and the checks a conditional run needs.

Three sources carry labels (docs/data.md, "Class labels"):

- the embedded Fashion-MNIST: its ten classes (ganzoo.data.embedded.CLASS_NAMES);
- a folder with one subfolder per class, torchvision's ``ImageFolder`` convention: the sorted names of its
  top-level subfolders are the classes, and an image's class is the top-level subfolder it lies in, at any
  depth below it (ImageFolder scans each class folder recursively). A folder is class-labelled when at least
  one top-level subfolder holds an image; an image lying in the root of such a folder has no class
  (UNLABELLED in the labels);
- stylegan2-ada's ``dataset.json``: class indices, named "0".."K-1" with K the largest index plus one, since
  its dataset_tool.py stores no names (and its training takes c_dim = max + 1 the same way). It wins over
  subfolders: dataset_tool's own 00000/, 00001/ folders of 1,000 images are no classes.

An unconditional run uses every image as it always has. A conditional run
(``DataSpec.labels``) needs a class for every image and images in every class
folder: ``require_labels`` refuses anything else in one line naming the file
or folder, before anything is decoded or written where the source can say so.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import UserError

UNLABELLED = -1  # the label of an image outside every class folder
SUBFOLDERS, DATASET_JSON = "subfolders", "dataset.json"  # where a dataset's classes come from
SHOWN = 10  # class names a description lists before "... and N more"

WHAT_IS_LABELLED = ("a labelled source is a folder with one subfolder per class (torchvision's ImageFolder layout: "
                    "the sorted subfolder names are the classes), or stylegan2-ada's dataset (a .zip, or a folder, "
                    "whose dataset.json holds {\"labels\": [[name, class], ...]})")


def class_folders(root: Path) -> list[str]:
    """The sorted names of ``root``'s top-level subfolders that a scan walks into (not hidden, not links):
    the candidate classes, empty ones included."""
    try:
        with os.scandir(root) as entries:
            return sorted(entry.name for entry in entries
                          if not entry.name.startswith(".") and entry.is_dir(follow_symlinks=False))
    except OSError:
        return []


def folder_labels(root: Path, relatives: list[str]) -> tuple[list[str], np.ndarray] | None:
    """(classes, labels) for the images at ``relatives`` (posix paths relative to ``root``, in order), or None
    when no image lies in a subfolder (the folder is not class-labelled). Root images get UNLABELLED."""
    tops = [relative.split("/", 1)[0] if "/" in relative else None for relative in relatives]
    if all(top is None for top in tops):
        return None
    classes = sorted(set(class_folders(root)).union(top for top in tops if top is not None))
    index = {name: i for i, name in enumerate(classes)}
    labels = np.array([UNLABELLED if top is None else index[top] for top in tops], dtype=np.int64)
    return classes, labels


def index_classes(labels: np.ndarray) -> list[str]:
    """Names for bare class indices (dataset.json's): "0".."K-1", K the largest label plus one."""
    return [str(i) for i in range(int(labels.max()) + 1 if len(labels) else 0)]


def describe_classes(classes) -> str:
    """'3 (cat, dog, fish)', shortened past SHOWN names: '100 (0, 1, ..., 9, ... and 90 more)'."""
    names = list(classes)
    listed = ", ".join(names[:SHOWN]) + (f", ... and {len(names) - SHOWN} more" if len(names) > SHOWN else "")
    return f"{len(names)} ({listed})"


def empty_classes(classes, labels: np.ndarray) -> list[str]:
    """The classes no label names."""
    counts = np.bincount(labels[labels >= 0], minlength=len(classes))
    return [name for name, count in zip(classes, counts) if count == 0]


def require_labels(*, where: str, classes, labels: np.ndarray | None, unlabelled: list[str], origin: str | None,
                   bad: list[str] = (), why_none: str = "") -> None:
    """One UserError unless every image has a class and (for class folders) every class has an image.

    ``where``: the source (a folder or zip) as messages name it; ``unlabelled``: the images without a class,
    by path relative to it; ``origin``: SUBFOLDERS or DATASET_JSON (where the classes come from);
    ``bad``: relative paths of bad files, so that a class folder holding only bad files is said to;
    ``why_none``: what to add when there are no labels at all.
    """
    if labels is None or classes is None:
        raise UserError(f"{where} has no class labels{why_none}, and a conditional run needs a class for every "
                        f"image: {WHAT_IS_LABELLED}")
    if unlabelled:
        more = f" and {len(unlabelled) - 1} more" if len(unlabelled) > 1 else ""
        raise UserError(f"image {where}/{unlabelled[0]}{more} {'have' if more else 'has'} no class: "
                        f"{'they lie' if more else 'it lies'} in the root of {where}, outside its class "
                        "subfolders, and a conditional run needs a class for every image: move "
                        f"{'them' if more else 'it'} into a class subfolder, or remove {'them' if more else 'it'}")
    if origin != SUBFOLDERS:
        return  # dataset.json's indices may skip a class, as stylegan2-ada's c_dim = max + 1 allows
    empty = empty_classes(classes, labels)
    if empty:
        folder = empty[0]
        failed = sum(1 for relative in bad if relative.split("/", 1)[0] == folder)
        holds = (f"holds no readable image (its {failed} image file{'s are' if failed > 1 else ' is'} bad)"
                 if failed else "holds no images")
        more = f" (and {len(empty) - 1} more class folder{'s' if len(empty) > 2 else ''} too)" if len(empty) > 1 else ""
        raise UserError(f"class folder {where}/{folder} {holds}{more}: every subfolder of {where} is a class, and a "
                        "conditional run needs images of every class: add images to it, or remove it")
