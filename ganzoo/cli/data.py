"""`ganzoo data`: the dataset catalog and downloads into the cache, and prepared datasets (prepare, verify).

Registered on the main group in ganzoo.cli, which turns a UserError into one
"Error: ..." line. The catalog module is imported inside each command so that
`ganzoo --help` does not load urllib.
"""

from __future__ import annotations

import click


@click.group()
def data():
    """Named datasets (the catalog, downloads) and prepared datasets (decoded once, read in place)."""


@data.command("list")
def list_cmd():
    """Every catalog dataset, its download size, and whether it is already in the cache."""
    from ..data.catalog import catalog_rows, ganzoo_home

    rows = catalog_rows()
    header = ("NAME", "SIZE", "CACHED")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(2)]
    click.echo(f"datasets are cached in {ganzoo_home() / 'datasets'} (set GANZOO_HOME to move it)")
    click.echo(f"{header[0]:<{widths[0]}}  {header[1]:>{widths[1]}}  {header[2]}")
    for row in rows:
        click.echo(f"{row.name:<{widths[0]}}  {row.size:>{widths[1]}}  {row.cached}")


@data.command()
@click.argument("name")
@click.option("--force", is_flag=True, help="Download and extract again even if the dataset is cached.")
def download(name, force):
    """Download NAME, verify its size and sha256, and extract it into the cache."""
    from ..data.catalog import dataset_dir, ensure_dataset, get_entry, is_cached

    entry = get_entry(name)
    if is_cached(entry) and not force:
        click.echo(f"{entry.name} is already cached in {dataset_dir(entry.name)} (--force downloads it again)")
        return
    path = ensure_dataset(entry.name, progress=True, force=force)
    click.echo(f"{entry.name} is ready in {path}")


@data.command()
@click.argument("source")
@click.option("--resolution", required=True, type=click.IntRange(1, None),
              help="Side of the square images, in pixels (shorter side resized with Lanczos, centre kept).")
@click.option("--channels", type=click.Choice(["1", "3"]), default="3", show_default=True,
              help="1 for grey, 3 for RGB.")
@click.option("--out", default=None, metavar="NAME|PATH",
              help="A NAME (kept in $GANZOO_PREPARED, default $GANZOO_HOME/prepared) or a PATH (anything with "
                   "a '/'); "
                   "default: a name from the source and the resolution.")
@click.option("--kind", type=click.Choice(["auto", "images", "unpaired"]), default="auto", show_default=True,
              help="One domain of images, or the two of trainA/ and trainB/ (auto: unpaired where both exist).")
@click.option("--skip-bad-files", is_flag=True, help="Leave unreadable images out (each is reported) instead of "
                                                     "stopping with exit status 1.")
@click.option("--max-image-pixels", type=click.IntRange(1, None), default=None, metavar="N",
              help="An image whose header declares more pixels (width x height) is a bad file, never decoded "
                   "[default: 4096x4096].")
def prepare(source, resolution, channels, out, kind, skip_bad_files, max_image_pixels):
    """Decode SOURCE once into a prepared dataset that training reads in place.

    SOURCE is a folder of images, a folder holding trainA/ and trainB/, a catalog name, or stylegan2-ada's
    dataset (a .zip or a folder with dataset.json). Class labels are kept: a folder's top-level subfolders
    are its classes (torchvision's ImageFolder layout), or dataset.json's labels are. An interrupted prepare
    continues where it stopped when run again.
    """
    from ..api import MAX_RESOLUTION
    from ..data.prepare import prepare_dataset
    from ..data.prepared import open_prepared
    from ..data.prepared_cache import prepared_home
    from ..data.sources import detect_kind
    from ..errors import UserError
    from ..runtime.image_files import DEFAULT_MAX_PIXELS

    if resolution > MAX_RESOLUTION:
        raise UserError(f"--resolution {resolution}: at most {MAX_RESOLUTION}")
    channels = int(channels)
    kind = detect_kind(source) if kind == "auto" else kind
    target = prepared_path(out) if out is not None else prepared_path(default_name(source, resolution, channels))
    path = prepare_dataset(source, kind, resolution, channels, target, progress=True,
                           max_pixels=max_image_pixels or DEFAULT_MAX_PIXELS)
    dataset = open_prepared(path, verify=False)
    settle_bad_files(dataset.bad, skip_bad_files)
    click.echo(f"prepared dataset: {path}")
    click.echo(f"  {describe_prepared(dataset)}")
    for line in describe_classes(dataset):
        click.echo(f"  {line}")
    click.echo(f"  train on it with --data {path.name if path.parent == prepared_home() else path}")


@data.command()
@click.argument("dataset", metavar="PATH|NAME")
def verify(dataset):
    """Re-hash every file of a prepared dataset against its manifest and name any that differ."""
    from ..data.prepared import check_file, listed_files, open_prepared, read_manifest
    from ..data.memory import size_text
    from ..errors import UserError

    folder = prepared_path(dataset, "PATH|NAME").resolve()
    manifest = read_manifest(folder)
    files = listed_files(manifest)
    problems = []
    for item in _bar(files, sum(item["bytes"] for item in files), f"verifying {folder.name}"):
        try:
            check_file(folder, item, rehash=True)
        except UserError as error:
            problems.append(str(error))
    if problems:
        count = "1 file differs" if len(problems) == 1 else f"{len(problems)} files differ"
        raise UserError(f"{count} from {folder / 'manifest.json'}:\n  " + "\n  ".join(problems))
    total = sum(item["bytes"] for item in files)
    click.echo(f"{folder}: all {len(files)} files match {folder / 'manifest.json'} ({size_text(total)})")
    for line in describe_classes(open_prepared(folder, verify=False)):
        click.echo(f"  {line}")


def _bar(files, total: int, label: str):
    """Each file of ``files`` in turn, with a progress bar over their bytes on a terminal's stderr."""
    import sys

    from tqdm import tqdm

    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label, file=sys.stderr,
              leave=False, disable=None) as bar:
        for item in files:
            yield item
            bar.update(item["bytes"])


def prepared_path(name_or_path: str, what: str = "--out"):
    """A bare NAME is prepared_home()/NAME ($GANZOO_PREPARED, default $GANZOO_HOME/prepared); anything with a
    path separator (or '.', '..', '~') is a path."""
    import os
    from pathlib import Path

    from ..data.prepared_cache import prepared_home
    from ..data.tsv_table import NAME
    from ..errors import UserError

    text = str(name_or_path)
    if os.sep in text or "/" in text or text in (".", "..") or text.startswith("~"):
        return Path(text).expanduser()
    if not NAME.fullmatch(text):
        raise UserError(f"{what} {text!r}: a name is letters, digits, '.', '_' and '-' (it becomes a folder in "
                        f"{prepared_home()}); for a folder elsewhere give a path, e.g. ./{text}")
    return prepared_home() / text


def default_name(source: str, resolution: int, channels: int) -> str:
    """The source's own name (a folder's, a zip's without .zip, a catalog name), the resolution, '-grey' for 1."""
    import re
    from pathlib import Path

    path = Path(source).expanduser()
    base = path.stem if path.suffix.lower() == ".zip" else (path.resolve().name or "dataset")
    base = re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip("._-") or "dataset"
    return f"{base}-{resolution}" + ("-grey" if channels == 1 else "")


def settle_bad_files(bad, skip: bool) -> None:
    """Bad files of a prepare: one error listing them (exit 1), or with ``skip`` each reported and left out."""
    from ..errors import UserError
    from ..runtime.image_files import bad_files_error

    if not bad:
        return
    errors = [UserError(message) for _, message in bad]
    if not skip:
        raise bad_files_error(errors, "fix or remove them and prepare again, or leave them out with "
                                      "--skip-bad-files")
    for error in errors:
        click.echo(f"skipped: {error}", err=True)
    click.echo(f"{len(errors)} unreadable file(s) skipped", err=True)


def describe_prepared(dataset) -> str:
    """'1,234 images at 64x64, 3 channels; 48.4 MB on disk', domain by domain for two domains."""
    from ..data.memory import size_text
    from ..data.prepared import listed_files

    parts = [f"{len(images):,} images" if name == "images" else f"{name}: {len(images):,} images"
             for name, images in dataset.domains.items()]
    size = sum(item["bytes"] for item in listed_files(dataset.manifest))
    r, c = dataset.resolution, dataset.channels
    return f"{'; '.join(parts)} at {r}x{r}, {c} channel{'s' if c != 1 else ''}; {size_text(size)} on disk"


def describe_classes(dataset) -> list[str]:
    """The lines that tell a prepared dataset's classes: their count and names (shortened past a few), where
    they came from, and what a conditional run (--cond) would refuse: images without a class, empty classes.
    A name that is not UTF-8 shows its bytes as escapes (errors.printable), as messages do."""
    from ..data import prepared_labels
    from ..data.class_labels import DATASET_JSON, SUBFOLDERS, describe_classes as listed, empty_classes
    from ..data.prepared import IMAGES
    from ..errors import printable

    if IMAGES not in dataset.domains:
        return []
    classes, labels = prepared_labels(dataset)
    if classes is None:
        return ["no class labels: for unconditional training (--cond needs a folder with one subfolder per class, "
                "or stylegan2-ada's dataset.json with labels)"]
    origin = {SUBFOLDERS: ", from its subfolders", DATASET_JSON: ", from dataset.json (which names none: "
              "they are its class indices)"}.get(dataset.classes_from, "")
    lines = [f"classes: {listed(classes)}{origin}"]
    unlabelled = dataset.domains[IMAGES].unlabelled
    if unlabelled:
        more = f" and {len(unlabelled) - 1} more" if len(unlabelled) > 1 else ""
        lines.append(f"{len(unlabelled):,} image{'s' if more else ''} without a class ({unlabelled[0]}{more}, in "
                     "the root, outside the class subfolders): --cond refuses the data until every image lies in "
                     "a class subfolder")
    empty = empty_classes(classes, labels) if dataset.classes_from == SUBFOLDERS else []
    if empty:
        lines.append(f"{len(empty)} class folder{'s' if len(empty) > 1 else ''} without images "
                     f"({', '.join(empty[:5])}{', ...' if len(empty) > 5 else ''}): --cond refuses the data "
                     "until every class folder holds images")
    return [printable(line) for line in lines]
