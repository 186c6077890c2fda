"""Class labels from every labelled source, through `ganzoo data prepare` and prepared data, into ImageSet and the feed.

Real files in tmp_path: the embedded Fashion-MNIST's ten classes; a folder with one subfolder per class
(torchvision's ImageFolder, run here as the reference for which class each file gets); stylegan2-ada's
dataset.json in a folder and a zip. Images are small random PNGs at the resolution asked for, so each
decodes to its own pixels and a label can be checked by the image it travels with. Bad inputs are one
`Error:` line naming the file or class folder, through the real console script and through load_data.
"""

from __future__ import annotations

import json
import zipfile
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import ganzoo

from ganzoo.api import IMAGES, DataSpec
from ganzoo.data import load_data
from ganzoo.data.folder import load_folder
from ganzoo.data.prepared import open_prepared
from ganzoo.errors import UserError

RES = 6
SPEC = DataSpec(IMAGES, RES, 3)
LABELLED = DataSpec(IMAGES, RES, 3, labels=True)
_seed = iter(range(10**6))


def png_bytes() -> bytes:
    """A RES x RES RGB PNG of random pixels, different from every other one made here."""
    pixels = np.random.default_rng(next(_seed)).integers(0, 256, (RES, RES, 3), dtype=np.uint8)
    buffer = BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def write_images(root: Path, names: list[str]) -> Path:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(png_bytes())
    return root


def pixels_of(path: Path) -> bytes:
    return np.asarray(Image.open(path).convert("RGB")).transpose(2, 0, 1).tobytes()


def labels_by_file(dataset, root: Path) -> dict[str, int]:
    """Each source file (relative path) with the label its image has in ``dataset``, found by its pixels."""
    files = {pixels_of(path): path.relative_to(root).as_posix() for path in root.rglob("*.png")
             if path.read_bytes().startswith(b"\x89PNG")}  # the bad files made here are not PNGs
    images = dataset.images if torch.is_tensor(dataset.images) else dataset.images.read_all()
    return {files[image.numpy().tobytes()]: int(label) for image, label in zip(images, dataset.labels)}


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    """Prepared copies go to tmp_path/home (in this process and in the console scripts it starts)."""
    monkeypatch.setenv("GANZOO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GANZOO_PREPARED", "")


def prepared_copies(tmp_path: Path) -> list[str]:
    """The prepared datasets (not lock files) made under tmp_path/home so far."""
    folder = tmp_path / "home" / "prepared"
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.exists() else []


def prepare(*args):
    return ganzoo("data", "prepare", *map(str, args), timeout=120)


def one_error_line(result, *parts: str) -> str:
    """The console script refused in one `Error:` line, without a traceback, naming each of ``parts``."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("Error: "), result.stderr
    for part in parts:
        assert part in result.stderr, (part, result.stderr)
    return result.stderr


# --- the three labelled sources --------------------------------------------------------------------------------

def test_the_embedded_data_has_its_ten_class_names():
    from ganzoo.data.embedded import load_fashion_mnist

    data = load_data(None, DataSpec(IMAGES, 32, 1, labels=True))
    assert data.classes == ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                            "Bag", "Ankle boot")
    assert torch.equal(data.labels, torch.from_numpy(load_fashion_mnist()[1]).long())
    assert load_data(None, DataSpec(IMAGES, 32, 1)).classes == data.classes  # labels are there either way


def test_class_folders_label_each_image_as_torchvisions_image_folder_does(tmp_path):
    """Sorted top-level subfolders are the classes; an image at any depth below one is of that class."""
    from torchvision.datasets import ImageFolder

    root = write_images(tmp_path / "pets", ["cat/1.png", "cat/0.png", "dog/x/y/deep.png", "dog/a.png",
                                            "dog-b/z.png", "Emu/e.png", "dog/x/b.png"])
    reference = ImageFolder(str(root))
    (root / ".thumbs").mkdir()  # hidden: ganzoo reads no hidden file or folder, so it is no class (ImageFolder's is)
    data = load_data(root, LABELLED)
    assert data.classes == tuple(reference.classes) == ("Emu", "cat", "dog", "dog-b")
    assert labels_by_file(data, root) == {Path(path).relative_to(root).as_posix(): target
                                          for path, target in reference.samples}
    assert data.labels.dtype == torch.int64 and len(data) == 7
    assert load_data(root, SPEC).classes == data.classes  # an unconditional load has them too


def test_a_stylegan_folder_names_its_classes_by_index_and_wins_over_subfolders(tmp_path):
    """dataset_tool's 00000/ folders are no classes: dataset.json's indices are, "0".."max" (a gap included)."""
    names = [f"00000/img{i:08d}.png" for i in range(5)] + ["00001/img00001000.png"]
    root = write_images(tmp_path / "cifar-mini", names)
    labels = dict(zip(names, [3, 0, 3, 1, 0, 3]))
    (root / "dataset.json").write_text(json.dumps({"labels": [[n, c] for n, c in labels.items()]}))
    data = load_data(root, LABELLED)
    assert data.classes == ("0", "1", "2", "3")  # class 2 has no image, as stylegan2-ada's c_dim = max + 1 allows
    assert labels_by_file(data, root) == labels


def test_a_stylegan_zip_names_its_classes_by_index(tmp_path):
    names = [f"00000/img{i:08d}.png" for i in range(4)]
    labels = dict(zip(names, [1, 0, 1, 1]))
    archive = tmp_path / "set.zip"
    extracted = write_images(tmp_path / "extracted", names)
    with zipfile.ZipFile(archive, "w") as z:
        for name in names:
            z.write(extracted / name, name)
        z.writestr("dataset.json", json.dumps({"labels": [[n, c] for n, c in labels.items()]}))
    data = load_data(archive, LABELLED)
    assert data.classes == ("0", "1")
    assert labels_by_file(data, extracted) == labels


def test_prepare_keeps_classes_and_labels_aligned_with_the_images_it_kept(tmp_path):
    """--skip-bad-files leaves broken files out of the labels too; the manifest lists the unlabelled root files
    (a bad one is not among them) and every class, an empty class folder included; prepare and verify say so."""
    root = write_images(tmp_path / "shapes", ["b/1.png", "b/2.png", "a/1.png", "a/deep/2.png", "c/1.png",
                                              "loose.png", "zz-loose.png"])
    (root / "a" / "broken.png").write_bytes(b"not a png")
    (root / "broken-root.png").write_bytes(b"not a png")
    (root / "empty").mkdir()
    out = tmp_path / "shapes-6"
    result = prepare(root, "--resolution", RES, "--out", out, "--skip-bad-files")
    assert result.returncode == 0, result.stderr
    dataset = open_prepared(out)
    images = dataset.domains["images"]
    assert dataset.classes == ("a", "b", "c", "empty") and dataset.manifest["classes_from"] == "subfolders"
    assert images.unlabelled == ["loose.png", "zz-loose.png"]
    assert [bad[0] for bad in dataset.bad] == ["a/broken.png", "broken-root.png"]
    kept = type("Kept", (), {"images": images.read_all(), "labels": torch.from_numpy(np.array(images.labels))})
    assert labels_by_file(kept, root) == {"a/1.png": 0, "a/deep/2.png": 0, "b/1.png": 1, "b/2.png": 1,
                                          "c/1.png": 2, "loose.png": -1, "zz-loose.png": -1}
    lines = result.stdout.splitlines()
    assert "  classes: 4 (a, b, c, empty), from its subfolders" in lines
    assert any(line.startswith("  2 images without a class (loose.png and 1 more, in the root") for line in lines)
    assert any(line.startswith("  1 class folder without images (empty)") for line in lines)
    verified = ganzoo("data", "verify", out, timeout=60)
    assert verified.returncode == 0 and "  classes: 4 (a, b, c, empty), from its subfolders" in verified.stdout


def test_many_classes_are_listed_shortened(tmp_path):
    root = write_images(tmp_path / "many", [f"class{i:02d}/x.png" for i in range(25)])
    result = prepare(root, "--resolution", RES, "--out", tmp_path / "many-6")
    assert result.returncode == 0, result.stderr
    assert ("  classes: 25 (class00, class01, class02, class03, class04, class05, class06, class07, class08, "
            "class09, ... and 15 more), from its subfolders") in result.stdout.splitlines()


def test_a_class_folder_named_in_other_bytes_than_utf8(tmp_path):
    """Names are bytes: such a class is named as Python holds the name, and printed with \\x escapes."""
    import os

    root = tmp_path / "bytes"
    os.makedirs(os.fsencode(root) + b"/caf\xe9")
    (root / os.fsdecode(b"caf\xe9") / "x.png").write_bytes(png_bytes())
    write_images(root, ["dog/y.png"])
    assert load_data(root, LABELLED).classes == (os.fsdecode(b"caf\xe9"), "dog")
    result = prepare(root, "--resolution", RES, "--out", tmp_path / "b")
    assert result.returncode == 0 and "  classes: 2 (caf\\xe9, dog), from its subfolders" in result.stdout


def test_load_data_skipping_bad_files_keeps_each_label_with_its_image(tmp_path):
    root = write_images(tmp_path / "pets", ["cat/0.png", "cat/1.png", "dog/0.png", "dog/1.png"])
    (root / "cat" / "0b.png").write_bytes(b"broken")
    skipped = []
    data = load_data(root, LABELLED, on_bad=skipped.append)
    assert len(skipped) == 1 and "cat/0b.png" in str(skipped[0])
    assert labels_by_file(data, root) == {"cat/0.png": 0, "cat/1.png": 0, "dog/0.png": 1, "dog/1.png": 1}


# --- an unconditional run reads a class-folder dataset as it always has ---------------------------------------

def test_an_unconditional_load_of_class_folders_gives_the_same_pixels(tmp_path):
    """Root files, an empty subfolder and nested classes: every image, in the same order, with the same pixels
    as the folder decoder gives (what training read before labels); no labels where an image has none."""
    root = write_images(tmp_path / "mixed", ["b/1.png", "a/x/2.png", "a/1.png", "root.png", "c.png"])
    (root / "empty").mkdir()
    data = load_data(root, SPEC)
    assert torch.equal(data.images.read_all(), torch.from_numpy(load_folder(root, RES, 3)))
    assert data.labels is None and data.classes is None  # two images have no class
    from ganzoo.train.feed import make_feed

    batch = make_feed(data, 2, 0, torch.device("cpu"), SPEC, read_ahead=0).next()
    assert set(batch) == {"image"}


# --- bad input: one line naming the file or folder, nothing written -----------------------------------------

def test_data_without_labels_is_refused_for_a_conditional_run(tmp_path):
    flat = write_images(tmp_path / "flat", ["a.png", "b.png"])
    with pytest.raises(UserError) as caught:
        load_data(flat, LABELLED)
    message = str(caught.value)
    assert message.startswith(f"{flat} has no class labels, and a conditional run needs a class for every image")
    assert "one subfolder per class" in message and "dataset.json" in message
    null = write_images(tmp_path / "null", ["00000/img00000000.png", "00000/img00000001.png"])
    (null / "dataset.json").write_text('{"labels": null}')  # wins over 00000/: no classes
    with pytest.raises(UserError, match=r'has no class labels \(its dataset.json says "labels": null\)'):
        load_data(null, LABELLED)
    assert prepared_copies(tmp_path) == []  # refused before anything was prepared
    assert load_data(flat, SPEC).labels is None and prepared_copies(tmp_path) != []  # unconditional: as ever


def test_images_without_a_class_are_named(tmp_path):
    root = write_images(tmp_path / "pets", ["cat/0.png", "dog/0.png", "a.png", "b.png", "c.png"])
    with pytest.raises(UserError) as caught:
        load_data(root, LABELLED)
    assert str(caught.value) == (
        f"image {root}/a.png and 2 more have no class: they lie in the root of {root}, outside its class "
        "subfolders, and a conditional run needs a class for every image: move them into a class subfolder, "
        "or remove them")
    assert prepared_copies(tmp_path) == []


def test_an_empty_class_folder_is_named(tmp_path):
    root = write_images(tmp_path / "pets", ["cat/0.png", "dog/0.png"])
    (root / "emu").mkdir()
    (root / "emu" / "notes.txt").write_text("no images here")
    with pytest.raises(UserError) as caught:
        load_data(root, LABELLED)
    assert str(caught.value) == (
        f"class folder {root}/emu holds no images: every subfolder of {root} is a class, and a conditional run "
        "needs images of every class: add images to it, or remove it")
    assert prepared_copies(tmp_path) == []


def test_a_class_folder_of_bad_files_only_says_so(tmp_path):
    root = write_images(tmp_path / "pets", ["cat/0.png", "dog/0.png"])
    (root / "dog" / "1.png").write_bytes(b"junk")
    (root / "emu").mkdir()
    (root / "emu" / "0.png").write_bytes(b"junk")
    with pytest.raises(UserError, match=f"class folder {root}/emu holds no readable image \\(its 1 image file is "
                                        "bad\\)"):
        load_data(root, LABELLED, on_bad=lambda error: None)


def test_a_prepared_dataset_is_checked_as_its_source_is(tmp_path):
    """The manifest keeps what the checks need: the unlabelled files by name, every class folder."""
    root = write_images(tmp_path / "pets", ["cat/0.png", "dog/0.png", "z-root.png"])
    (root / "emu").mkdir()
    assert prepare(root, "--resolution", RES, "--out", tmp_path / "p").returncode == 0
    with pytest.raises(UserError, match=f"image {root}/z-root.png has no class: it lies in the root"):
        load_data(tmp_path / "p", LABELLED)
    (root / "z-root.png").unlink()
    assert prepare(root, "--resolution", RES, "--out", tmp_path / "q").returncode == 0
    with pytest.raises(UserError, match=f"class folder {root}/emu holds no images"):
        load_data(tmp_path / "q", LABELLED)
    plain = write_images(tmp_path / "plain", ["a.png"])
    assert prepare(plain, "--resolution", RES, "--out", tmp_path / "r").returncode == 0
    with pytest.raises(UserError, match=f"^{tmp_path / 'plain'} has no class labels, and a conditional run"):
        load_data(tmp_path / "r", LABELLED)


def _stylegan_folder(root: Path, labels) -> Path:
    names = [f"00000/img{i:08d}.png" for i in range(3)]
    write_images(root, names)
    (root / "dataset.json").write_text(labels if isinstance(labels, str) else json.dumps({"labels": labels(names)}))
    return root


@pytest.mark.parametrize("case, labels, message", [
    ("a label for a missing image", lambda n: [[x, 0] for x in n] + [["00000/gone.png", 1], ["00001/x.png", 0]],
     "dataset.json labels 00000/gone.png and 1 more, not images of {root}: every name in dataset.json must be one "
     "of its images"),
    ("a label for a file that is no image", lambda n: [[x, 0] for x in n] + [["notes.txt", 1]],
     "dataset.json labels notes.txt, not an image of {root}"),
    ("a non-integer label", lambda n: [[n[0], 0], [n[1], "cat"], [n[2], 1]],
     "dataset.json: the label of 00000/img00000001.png is \"cat\"; only class indices (integers from 0) are "
     "supported"),
    ("a fractional label", lambda n: [[n[0], 0.5], [n[1], 0], [n[2], 1]],
     "dataset.json: the label of 00000/img00000000.png is 0.5"),
    ("a negative label", lambda n: [[n[0], 0], [n[1], -1], [n[2], 1]],
     "dataset.json: the label of 00000/img00000001.png is -1"),
    ("an image without a label", lambda n: [[n[0], 0], [n[2], 1]],
     "dataset.json has no label for 00000/img00000001.png: with labels, every image needs one"),
    ("malformed JSON", '{"labels": [["00000/img00000000.png", 0],', "dataset.json is not valid JSON"),
    ("no labels key", '{"classes": []}', "dataset.json has no \"labels\" key"),
])
def test_a_bad_dataset_json_is_one_line_through_the_cli(tmp_path, case, labels, message):
    root = _stylegan_folder(tmp_path / "set", labels)
    (root / "notes.txt").write_text("not an image")
    result = prepare(root, "--resolution", RES)
    one_error_line(result, f"{root}/dataset.json", message.format(root=root))
    assert not (tmp_path / "home").exists()  # refused before anything was made
    with pytest.raises(UserError, match="dataset.json"):
        load_data(root, SPEC)  # and training on the folder says the same, conditional or not


def test_a_zip_labelling_a_missing_member_is_refused(tmp_path):
    names = [f"00000/img{i:08d}.png" for i in range(2)]
    archive = tmp_path / "set.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name in names:
            z.writestr(name, png_bytes())
        z.writestr("dataset.json", json.dumps({"labels": [[n, 0] for n in [*names, "00000/img00000009.png"]]}))
    one_error_line(prepare(archive, "--resolution", RES), f"{archive}/dataset.json labels 00000/img00000009.png, "
                                                           f"not an image of {archive}")


def test_a_label_for_a_bad_file_is_no_missing_image(tmp_path):
    """A labelled file that cannot be decoded is a bad file (skipped with its label), not a missing image."""
    root = _stylegan_folder(tmp_path / "set", lambda n: [[x, i] for i, x in enumerate(n)])
    (root / "00000" / "img00000001.png").write_bytes(b"junk")
    data = load_data(root, LABELLED, on_bad=lambda error: None)
    assert data.labels.tolist() == [0, 2] and data.classes == ("0", "1", "2")


# --- old prepared copies -------------------------------------------------------------------------------------

def _as_version_1(folder: Path) -> None:
    """What ganzoo wrote before class folders were read: version 1, no class names, no labels for a folder."""
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["version"] = 1
    for key in ("classes", "classes_from"):
        del manifest[key]
    entry = manifest["domains"]["images"]
    del entry["unlabelled"]
    if manifest["source_kind"] == "folder":
        (folder / entry["labels"]["file"]).unlink()
        entry["labels"] = None
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_an_old_prepared_copy_is_read_unconditionally_and_refused_with_a_reason(tmp_path):
    root = write_images(tmp_path / "pets", ["cat/0.png", "dog/0.png", "dog/1.png"])
    out = tmp_path / "pets-6"
    assert prepare(root, "--resolution", RES, "--out", out).returncode == 0
    pixels = open_prepared(out).domains["images"].read_all()
    _as_version_1(out)
    assert torch.equal(load_data(out, SPEC).images.read_all(), pixels)  # unconditional training goes on
    with pytest.raises(UserError, match=f"{root} has no class labels \\(its copy in {out} was prepared by an older "
                                        "ganzoo, which kept no classes from subfolders: prepare it again\\)"):
        load_data(out, LABELLED)
    again = prepare(root, "--resolution", RES, "--out", out)
    assert again.returncode == 0, again.stderr
    assert "made by an older ganzoo, format version 1, which kept no classes from subfolders" in again.stderr
    assert load_data(out, LABELLED).classes == ("cat", "dog")


def test_an_old_stylegan_copy_keeps_its_labels(tmp_path):
    root = _stylegan_folder(tmp_path / "set", lambda n: [[x, 2 * i] for i, x in enumerate(n)])
    out = tmp_path / "set-6"
    assert prepare(root, "--resolution", RES, "--out", out).returncode == 0
    _as_version_1(out)
    data = load_data(out, LABELLED)
    assert data.labels.tolist() == [0, 2, 4] and data.classes == ("0", "1", "2", "3", "4")


def test_an_empty_class_folder_added_later_is_not_missed(tmp_path):
    """It changes no image, so no fingerprint, but it is a class: the prepared copy on first use is another."""
    root = write_images(tmp_path / "pets", ["cat/0.png", "dog/0.png"])
    assert load_data(root, LABELLED).classes == ("cat", "dog")
    (root / "emu").mkdir()
    with pytest.raises(UserError, match=f"class folder {root}/emu holds no images"):
        load_data(root, LABELLED)


# --- the feed: labels travel with their images ---------------------------------------------------------------

@pytest.fixture
def labelled(tmp_path):
    names = [f"{cls}/{i}.png" for cls, n in (("a", 5), ("b", 3), ("c", 6), ("d", 2)) for i in range(n)]
    root = write_images(tmp_path / "four", names)
    return root, load_data(root, LABELLED)


@pytest.mark.parametrize("read_ahead", [0, 2])
def test_feed_labels_are_the_labels_of_the_images_drawn(labelled, read_ahead):
    from ganzoo.train.feed import make_feed

    root, data = labelled
    truth = {pixels_of(path): "abcd".index(path.parent.name) for path in root.rglob("*.png")}
    feed = make_feed(data, 6, 3, torch.device("cpu"), LABELLED, read_ahead=read_ahead)
    seen = 0
    for _ in range(7):  # past two epochs of 16 images
        batch = feed.next_raw()
        assert batch["label"].dtype == torch.int64 and batch["label"].shape == (6,)
        assert batch["label"].tolist() == [truth[image.numpy().tobytes()] for image in batch["image"]]
        seen += 6
    feed.close()
    assert seen > 2 * len(data)


def test_feed_labels_resume_exactly(labelled):
    from ganzoo.train.feed import make_feed

    _, data = labelled
    spec = DataSpec(IMAGES, RES - 2, 3, decode_resolution=RES, flip=True, labels=True)
    feed = make_feed(data, 5, 7, torch.device("cpu"), spec)
    for _ in range(2):
        feed.next()
    state = feed.state_dict()
    rest = [feed.next() for _ in range(5)]
    feed.close()
    resumed = make_feed(data, 5, 7, torch.device("cpu"), spec)
    resumed.load_state_dict(state)
    for expected in rest:
        batch = resumed.next()
        assert torch.equal(batch["label"], expected["label"]) and torch.equal(batch["image"], expected["image"])
    resumed.close()


@pytest.mark.parametrize("world_size", [2, 4])
def test_each_rank_gets_the_labels_of_its_slice_of_the_global_batch(labelled, world_size):
    from ganzoo.train.feed import make_feed

    _, data = labelled
    spec = DataSpec(IMAGES, RES - 2, 3, decode_resolution=RES, flip=True, labels=True)
    one = make_feed(data, 8, 11, torch.device("cpu"), spec, read_ahead=0)
    ranks = [make_feed(data, 8, 11, torch.device("cpu"), spec, rank=r, world_size=world_size, read_ahead=0)
             for r in range(world_size)]
    share = 8 // world_size
    for _ in range(5):
        whole = one.next()
        for r, feed in enumerate(ranks):
            part = feed.next()
            assert torch.equal(part["label"], whole["label"][r * share:(r + 1) * share])
            assert torch.equal(part["image"], whole["image"][r * share:(r + 1) * share])
