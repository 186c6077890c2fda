"""`ganzoo data prepare`: every kind of source becomes a prepared dataset with the pixels training decodes today.

Real files and the real console script: a folder, an unpaired trainA/trainB set, stylegan2-ada's zip and
folder with dataset.json labels; the prepared pixels equal folder.load_folder's for the same files, labels
stay aligned with the images kept, every file's checksum is the manifest's, and bad files are listed with
training's one message and exit status 1 unless --skip-bad-files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import ganzoo, image_folder

from ganzoo.data.folder import decode_folder, load_folder
from ganzoo.data.prepared import listed_files, open_prepared


def prepare(*args, home: Path, **kwargs):
    """`ganzoo data prepare` with $GANZOO_HOME at ``home`` (and no $GANZOO_PREPARED: names go to home/prepared)."""
    return ganzoo("data", "prepare", *map(str, args), env={"GANZOO_HOME": str(home), "GANZOO_PREPARED": ""},
                  timeout=120, **kwargs)


def assert_checksums(folder: Path) -> None:
    """Every file the manifest lists has its recorded size and sha256."""
    manifest = json.loads((folder / "manifest.json").read_text())
    for item in listed_files(manifest):
        data = (folder / item["file"]).read_bytes()
        assert len(data) == item["bytes"] and hashlib.sha256(data).hexdigest() == item["sha256"], item["file"]
    listed = {item["file"] for item in listed_files(manifest)} | {"manifest.json"}
    assert {p.name for p in folder.iterdir()} == listed  # nothing else: no progress record, no temporary file


def stylegan_images(n: int, seed: int = 0) -> dict[str, bytes]:
    """dataset_tool.py's layout: 00000/img00000000.png ..., PNGs of assorted sizes and modes."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n):
        pixels = rng.integers(0, 256, (24 + i % 5, 30, 3), dtype=np.uint8)
        image = Image.fromarray(pixels).convert("L" if i % 4 == 3 else "RGB")
        from io import BytesIO

        buffer = BytesIO()
        image.save(buffer, format="PNG")
        out[f"{i // 1000:05d}/img{i:08d}.png"] = buffer.getvalue()
    return out


def write_stylegan_zip(path: Path, images: dict[str, bytes], labels: dict[str, int] | None,
                       extra: dict[str, bytes] = {}) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in {**images, **extra}.items():
            archive.writestr(name, data)
        archive.writestr("dataset.json", json.dumps({"labels": None if labels is None else
                                                     [[name, label] for name, label in labels.items()]}))
    return path


def write_stylegan_folder(root: Path, images: dict[str, bytes], labels: dict[str, int] | None) -> Path:
    for name, data in images.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (root / "dataset.json").write_text(json.dumps({"labels": None if labels is None else
                                                   [[name, label] for name, label in labels.items()]}))
    return root


def test_a_folder_is_prepared_into_the_pixels_training_decodes(tmp_path):
    source = image_folder(tmp_path / "photos", n=23, size=37)
    result = prepare(source, "--resolution", 16, home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "home" / "prepared" / "photos-16"  # the cache, named after the source and resolution
    assert f"prepared dataset: {folder}" in result.stdout
    assert "23 images at 16x16, 3 channels" in result.stdout and "on disk" in result.stdout
    dataset = open_prepared(folder)
    images = dataset.domains["images"]
    assert images.shape == (23, 3, 16, 16) and dataset.bad == []
    # image_folder's a/ and b/ are class folders (torchvision's ImageFolder layout): img{i} lies in a/ for odd i
    names = sorted((p.parent.name, p.name) for p in source.rglob("*.png"))
    np.testing.assert_array_equal(images.labels, [0 if folder == "a" else 1 for folder, _ in names])
    assert dataset.classes == ("a", "b") and "classes: 2 (a, b), from its subfolders" in result.stdout
    np.testing.assert_array_equal(images.read_all().numpy(), load_folder(source, 16, 3))
    order = np.array([5, 0, 22, 5, 11])
    np.testing.assert_array_equal(images.gather(order).numpy(), load_folder(source, 16, 3)[order])
    manifest = dataset.manifest
    assert manifest["source"] == str(source.resolve()) and manifest["source_kind"] == "folder"
    assert manifest["domains"]["images"]["count"] == 23 and manifest["channels"] == 3
    assert_checksums(folder)
    assert not list(folder.parent.glob(".photos-16.partial"))  # the working folder became the dataset


def test_grey_and_an_explicit_path(tmp_path):
    source = image_folder(tmp_path / "photos", n=6)
    out = tmp_path / "elsewhere" / "grey"
    result = prepare(source, "--resolution", 8, "--channels", 1, "--out", out, home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(open_prepared(out).domains["images"].read_all().numpy(), load_folder(source, 8, 1))
    assert not (tmp_path / "home").exists()  # a path is used as given: nothing in the cache


def test_an_unpaired_set_becomes_domains_a_and_b(tmp_path):
    root = tmp_path / "horse2zebra"
    image_folder(root / "trainA", n=7, seed=1)
    image_folder(root / "trainB", n=5, seed=2)
    image_folder(root / "testA", n=3, seed=3)  # not training data
    result = prepare(root, "--resolution", 12, home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    assert "A: 7 images; B: 5 images at 12x12" in result.stdout
    dataset = open_prepared(tmp_path / "home" / "prepared" / "horse2zebra-12")
    assert set(dataset.domains) == {"A", "B"} and dataset.manifest["source_kind"] == "unpaired"
    for domain in "AB":
        expected, bad = decode_folder(root / f"train{domain}", 12, 3)
        assert bad == []
        np.testing.assert_array_equal(dataset.domains[domain].read_all().numpy(), expected)
    assert_checksums(dataset.path)


def _extracted(tmp_path: Path, images: dict[str, bytes], keep) -> np.ndarray:
    """load_folder's pixels for the images ``keep`` selects, written out as plain files."""
    folder = tmp_path / "extracted"
    shutil.rmtree(folder, ignore_errors=True)
    for name, data in images.items():
        if keep(name):
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
    return load_folder(folder, 20, 3)


def test_a_stylegan_zip_keeps_its_labels_aligned_with_the_images_kept(tmp_path):
    images = stylegan_images(1203)  # two of dataset_tool's 1,000-image folders
    names = sorted(images)
    labels = {name: i % 7 for i, name in enumerate(names)}
    broken = names[4]
    images[broken] = b"\x89PNG but truncated"
    archive = write_stylegan_zip(tmp_path / "ffhq-mini.zip", images, labels,
                                 extra={"README.txt": b"not an image", ".hidden.png": b"skipped"})
    link = zipfile.ZipInfo("00001/img00009999.png")
    link.external_attr = 0o120777 << 16  # a symbolic link stored in the zip: never followed
    with zipfile.ZipFile(archive, "a") as z:
        z.writestr(link, "/etc/passwd")
    before = archive.read_bytes()
    result = prepare(archive, "--resolution", 20, "--skip-bad-files", home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    assert f"skipped: cannot read image {archive.resolve()}/{broken}: cannot identify image file" in result.stderr
    folder = tmp_path / "home" / "prepared" / "ffhq-mini-20"
    dataset = open_prepared(folder)
    kept = dataset.domains["images"]
    assert len(kept) == 1202 and dataset.manifest["source_kind"] == "stylegan-zip"
    assert dataset.bad == [[broken, f"cannot read image {archive.resolve()}/{broken}: cannot identify image file"],
                           ["00001/img00009999.png", f"cannot read image {archive.resolve()}/00001/img00009999.png: "
                            "it is a symbolic link or special file in the zip, not a regular file (left unopened)"]]
    np.testing.assert_array_equal(kept.labels, [labels[name] for name in names if name != broken])
    assert kept.labels.dtype == np.int64
    np.testing.assert_array_equal(kept.read_all().numpy(), _extracted(tmp_path, images, lambda n: n != broken))
    assert "classes: 7 (0, 1, 2, 3, 4, 5, 6), from dataset.json" in result.stdout
    assert_checksums(folder)
    assert archive.read_bytes() == before and not (tmp_path / "00000").exists()  # read in place, never extracted
    fingerprint = dataset.manifest["fingerprint"]
    assert fingerprint["files"] == 1  # the zip's name, size and time


def test_a_stylegan_folder_with_dataset_json(tmp_path):
    images = stylegan_images(9, seed=4)
    names = sorted(images)
    labels = {name: 3 - i % 4 for i, name in enumerate(names)}
    root = write_stylegan_folder(tmp_path / "cifar-mini", images, labels)
    os.mkfifo(root / "00000" / "img00000005.png.tmp.png")  # not a regular file: a bad file, never opened
    result = prepare(root, "--resolution", 20, "--skip-bad-files", home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    dataset = open_prepared(tmp_path / "home" / "prepared" / "cifar-mini-20")
    assert dataset.manifest["source_kind"] == "stylegan-folder"
    kept = dataset.domains["images"]
    np.testing.assert_array_equal(kept.labels, [labels[name] for name in names])
    np.testing.assert_array_equal(kept.read_all().numpy(), load_folder(root, 20, 3, on_bad=lambda error: None))
    assert [entry[0] for entry in dataset.bad] == ["00000/img00000005.png.tmp.png"]
    assert "FIFO" in dataset.bad[0][1]


def test_a_zip_without_labels(tmp_path):
    images = stylegan_images(4, seed=5)
    archive = write_stylegan_zip(tmp_path / "faces.zip", images, None)
    result = prepare(archive, "--resolution", 20, "--out", tmp_path / "faces", home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    kept = open_prepared(tmp_path / "faces").domains["images"]
    assert kept.labels is None and "classes:" not in result.stdout and "no class labels" in result.stdout
    np.testing.assert_array_equal(kept.read_all().numpy(), _extracted(tmp_path, images, lambda n: True))


def test_bad_files_are_listed_in_one_message_with_exit_status_1(tmp_path):
    source = image_folder(tmp_path / "photos", n=5)
    (source / "a" / "broken.png").write_bytes(b"not a png")
    Image.fromarray(np.zeros((300, 300, 3), np.uint8)).save(source / "b" / "huge.png")
    result = prepare(source, "--resolution", 16, "--max-image-pixels", 200 * 200, home=tmp_path / "home")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-3] == ("Error: 2 bad image files (fix or remove them and prepare again, or leave them out with "
                         "--skip-bad-files):")
    assert lines[-2] == f"  cannot read image {source.resolve()}/a/broken.png: cannot identify image file"
    assert lines[-1].startswith(f"  cannot read image {source.resolve()}/b/huge.png: its header declares 300x300 ")
    assert result.stdout == ""
    again = prepare(source, "--resolution", 16, "--max-image-pixels", 200 * 200, "--skip-bad-files",
                    home=tmp_path / "home")
    assert again.returncode == 0, again.stderr
    assert "is already prepared" in again.stderr and "decoded" not in again.stderr  # nothing decoded again
    assert again.stderr.count("skipped: cannot read image") == 2 and "2 unreadable file(s) skipped" in again.stderr
    assert "5 images at 16x16" in again.stdout


def test_a_domain_of_bad_files_only_is_refused(tmp_path):
    root = tmp_path / "pair"
    image_folder(root / "trainA", n=3)
    (root / "trainB").mkdir()
    (root / "trainB" / "x.jpg").write_bytes(b"junk")
    result = prepare(root, "--resolution", 8, home=tmp_path / "home")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"no readable images in {root.resolve() / 'trainB'}" in result.stderr
    assert not any((tmp_path / "home" / "prepared").iterdir()) or \
        [p.name for p in (tmp_path / "home" / "prepared").iterdir()] == [".pair-8.lock"]


@pytest.mark.parametrize("case, message", [
    ("missing label", "has no label for 00000/img00000002.png"),
    ("vector labels", "only class indices (integers from 0) are supported"),
    ("escaping member", "is unsafe: member '../evil.png' points outside the archive"),
    ("not a zip", "is not a valid zip archive"),
])
def test_a_broken_stylegan_source_is_one_line_and_writes_nothing(tmp_path, case, message):
    images = stylegan_images(3)
    labels = {name: 1 for name in images}
    archive = tmp_path / "set.zip"
    if case == "missing label":
        del labels["00000/img00000002.png"]
        write_stylegan_zip(archive, images, labels)
    elif case == "vector labels":  # stylegan2-ada allows them; ganzoo keeps class indices only
        with zipfile.ZipFile(archive, "w") as z:
            for name, data in images.items():
                z.writestr(name, data)
            z.writestr("dataset.json", json.dumps({"labels": [[n, [0.5, 1.0]] for n in images]}))
    elif case == "escaping member":
        write_stylegan_zip(archive, images, labels, extra={"../evil.png": next(iter(images.values()))})
    else:
        archive.write_bytes(b"PK\x03\x04 not really")
    result = prepare(archive, "--resolution", 8, home=tmp_path / "home")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error: ") and message in result.stderr
    assert not (tmp_path / "home").exists()  # refused before anything was made


def test_an_existing_target_that_is_something_else_is_never_overwritten(tmp_path):
    source = image_folder(tmp_path / "photos", n=4)
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    result = prepare(source, "--resolution", 8, "--out", occupied, home=tmp_path / "home")
    assert result.returncode == 1 and "is not a prepared dataset" in result.stderr
    assert [p.name for p in occupied.iterdir()] == ["notes.txt"]

    other = image_folder(tmp_path / "other", n=3, seed=9)
    first = prepare(other, "--resolution", 8, "--out", tmp_path / "prepared", home=tmp_path / "home")
    assert first.returncode == 0, first.stderr
    before = (tmp_path / "prepared" / "manifest.json").read_bytes()
    clash = prepare(source, "--resolution", 8, "--out", tmp_path / "prepared", home=tmp_path / "home")
    assert clash.returncode == 1 and "already holds another prepared dataset" in clash.stderr
    assert str(other.resolve()) in clash.stderr and (tmp_path / "prepared" / "manifest.json").read_bytes() == before
    also = prepare(other, "--resolution", 16, "--out", tmp_path / "prepared", home=tmp_path / "home")
    assert also.returncode == 1 and "at 8x8" in also.stderr


def test_a_changed_source_is_prepared_again_in_place(tmp_path):
    source = image_folder(tmp_path / "photos", n=4)
    assert prepare(source, "--resolution", 8, home=tmp_path / "home").returncode == 0
    image_folder(tmp_path / "more", n=1, seed=7)
    shutil.copy(tmp_path / "more" / "b" / "img000.png", source / "added.png")
    result = prepare(source, "--resolution", 8, home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    assert "holds an older preparation" in result.stderr and "5 images" in result.stdout
    folder = tmp_path / "home" / "prepared" / "photos-8"
    np.testing.assert_array_equal(open_prepared(folder).domains["images"].read_all().numpy(),
                                  load_folder(source, 8, 3))
    assert sorted(p.name for p in folder.parent.iterdir()) == [".photos-8.lock", "photos-8"]


def test_out_names_and_missing_sources(tmp_path):
    source = image_folder(tmp_path / "photos", n=2)
    bad_name = prepare(source, "--resolution", 8, "--out", "my data", home=tmp_path / "home")
    assert bad_name.returncode == 1 and "a name is letters, digits" in bad_name.stderr
    assert "./my data" in bad_name.stderr
    missing = prepare(tmp_path / "nowhere", "--resolution", 8, home=tmp_path / "home")
    assert missing.returncode == 1 and "unknown dataset" in missing.stderr
    embedded = prepare("fashion-mnist", "--resolution", 8, home=tmp_path / "home")
    assert embedded.returncode == 1 and "nothing to prepare" in embedded.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = prepare(empty, "--resolution", 8, home=tmp_path / "home")
    assert nothing.returncode == 1 and f"no images in folder {empty}" in nothing.stderr
    assert not (tmp_path / "home").exists()
