"""The image data layer on real files: the embedded Fashion-MNIST and folders of many image modes."""

from __future__ import annotations

import gzip
import hashlib
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganzoo.api import DataSpec
from ganzoo.data import ImageSet, load_images
from ganzoo.data.embedded import CLASS_NAMES, load_fashion_mnist, read_idx
from ganzoo.data.folder import decode_image, find_images, load_folder
from ganzoo.errors import UserError

RES = 16  # folder images are made 16x16 so decoding them at 16 involves no resampling


# --- embedded Fashion-MNIST -------------------------------------------------


@pytest.fixture(scope="module")
def fashion():
    return load_fashion_mnist()


def test_embedded_shapes_dtypes_and_class_balance(fashion):
    images, labels = fashion
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    assert np.bincount(labels, minlength=10).tolist() == [1000] * 10
    assert len(CLASS_NAMES) == 10 and CLASS_NAMES[0] == "T-shirt/top" and CLASS_NAMES[9] == "Ankle boot"
    assert images.max() == 255 and images.mean() > 50  # real pictures, not an empty buffer


def test_embedded_files_match_readme_checksums():
    folder = resources.files("ganzoo.data").joinpath("fashion_mnist")
    readme = folder.joinpath("README.md").read_text()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        digest = hashlib.sha256(folder.joinpath(name).read_bytes()).hexdigest()
        assert digest in readme
    assert "Zalando SE" in folder.joinpath("LICENSE").read_text()


def idx_bytes(shape: tuple[int, ...], magic: bytes | None = None, extra: int = 0) -> bytes:
    """An uncompressed IDX file of zeros with the given shape (and optionally a wrong magic or size)."""
    head = magic if magic is not None else bytes([0, 0, 8, len(shape)])
    dims = b"".join(d.to_bytes(4, "big") for d in shape)
    return head + dims + bytes(int(np.prod(shape)) + extra)


def test_read_idx_checks_magic_and_sizes(tmp_path):
    good = tmp_path / "good.gz"
    good.write_bytes(gzip.compress(idx_bytes((3, 2, 2))))
    assert read_idx(good, (3, 2, 2)).shape == (3, 2, 2)
    cases = {
        "magic.gz": (gzip.compress(idx_bytes((3, 2, 2), magic=b"\x00\x00\x0d\x03")), "bad magic"),
        "shape.gz": (gzip.compress(idx_bytes((4, 2, 2))), "header says shape"),
        "short.gz": (gzip.compress(idx_bytes((3, 2, 2), extra=-1)), "bytes after decompression"),
        "plain.gz": (idx_bytes((3, 2, 2)), "not a valid gzip"),
        "cut.gz": (gzip.compress(idx_bytes((300, 20, 20)))[:40], "not a valid gzip"),
    }
    for name, (content, reason) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        shape = (300, 20, 20) if name == "cut.gz" else (3, 2, 2)
        with pytest.raises(UserError, match=reason) as info:
            read_idx(path, shape)
        assert str(path) in str(info.value)


def test_padding_to_32_keeps_the_centre_and_zero_borders(fashion):
    raw_images, raw_labels = fashion
    data = load_images(None, DataSpec("images", 32, 1))
    assert isinstance(data, ImageSet) and data.name == "fashion-mnist"
    assert data.images.shape == (10000, 1, 32, 32) and data.images.dtype == torch.uint8
    assert torch.equal(data.images[:, 0, 2:30, 2:30], torch.from_numpy(raw_images))
    border = data.images.clone()
    border[:, :, 2:30, 2:30] = 0
    assert border.sum() == 0
    assert data.labels.dtype == torch.int64
    assert torch.equal(data.labels, torch.from_numpy(raw_labels).long())


def test_named_default_and_resize_to_64():
    data = load_images("fashion-mnist", DataSpec("images", 64, 1))
    assert data.images.shape == (10000, 1, 64, 64) and data.images.dtype == torch.uint8
    small = load_images(None, DataSpec("images", 32, 1)).images.float()
    # Upsampling keeps the mean brightness and the black border (now 4 px wide, minus blur).
    assert abs(data.images.float().mean() - small.mean()) < 1.0
    assert data.images[:, :, :3, :].max() == 0 and data.images[:, :, :, -3:].max() == 0


def test_downscale_to_16_is_antialiased():
    """Antialiased bilinear 2x is the [1, 3, 3, 1] / 8 triangle filter; plain bilinear would be a 2-tap box."""
    data = load_images(None, DataSpec("images", 16, 1))
    assert data.images.shape == (10000, 1, 16, 16)
    small = load_images(None, DataSpec("images", 32, 1)).images.float()
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0]) / 8
    kernel = (taps[:, None] * taps[None, :])[None, None]
    expected = torch.nn.functional.conv2d(small, kernel, stride=2, padding=1)
    inner = (slice(None), slice(None), slice(1, 15), slice(1, 15))  # away from renormalised edges
    assert (data.images.float()[inner] - expected[inner]).abs().max() <= 0.51


def test_three_channels_replicate_grey():
    grey = load_images(None, DataSpec("images", 32, 1)).images
    rgb = load_images(None, DataSpec("images", 32, 3)).images
    assert rgb.shape == (10000, 3, 32, 32)
    for c in range(3):
        assert torch.equal(rgb[:, c], grey[:, 0])


def test_unknown_dataset_and_unpaired_are_user_errors(tmp_path):
    expected = r"unknown dataset 'no-such-set': not an existing folder .*known: fashion-mnist"
    with pytest.raises(UserError, match=expected):
        load_images("no-such-set", DataSpec("images", 32, 1))
    a_file = tmp_path / "x.png"
    a_file.write_bytes(b"")
    with pytest.raises(UserError, match="unknown dataset"):
        load_images(str(a_file), DataSpec("images", 32, 1))
    with pytest.raises(UserError, match="not single-domain images"):
        load_images(None, DataSpec("unpaired", 32, 3))


# --- folders of images ------------------------------------------------------


def solid(mode: str, color, size=(RES, RES)) -> Image.Image:
    return Image.new(mode, size, color)


def halves(left, right, mode="RGBA") -> Image.Image:
    """A RES x RES image whose left half is ``left`` and right half is ``right``."""
    image = solid(mode, left)
    image.paste(solid(mode, right, (RES // 2, RES)), (RES // 2, 0))
    return image


def palette_image(transparent: bool) -> Image.Image:
    """A P image: index 0 (left half) and index 1 (right half) of a small palette."""
    image = Image.new("P", (RES, RES), 0)
    image.putpalette([10, 20, 30, 200, 100, 50] + [0, 0, 0] * 254)
    image.paste(1, (RES // 2, 0, RES, RES))
    if transparent:
        image.info["transparency"] = 0
    return image


@pytest.fixture
def image_folder(tmp_path) -> tuple[Path, list[str]]:
    """A nested folder with one image per mode/format and the expected find_images order."""
    root = tmp_path / "images"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / ".cache").mkdir()
    solid("L", 100).save(root / "a_gray.png")
    solid("RGB", (10, 20, 30)).save(root / "b_rgb_upper.PNG")
    halves((0, 0, 0, 0), (0, 0, 255, 255)).save(root / "c_rgba.png")
    halves((0, 0), (50, 255), mode="LA").save(root / "d_la.png")
    palette_image(transparent=False).save(root / "sub" / "e_palette.png")
    palette_image(transparent=True).save(root / "sub" / "f_palette_transparent.png")
    sixteen = np.full((RES, RES), 30000, dtype=np.uint16)
    sixteen[:, RES // 2 :] = 65535
    sixteen[0, 0] = 257 * 100
    Image.fromarray(sixteen).save(root / "sub" / "g_16bit.png")
    solid("CMYK", (0, 255, 255, 0)).save(root / "sub" / "deeper" / "h_cmyk.jpg", quality=95)
    solid("RGB", (120, 120, 120)).save(root / "sub" / "deeper" / "i_upper.JPG", quality=95)
    solid("RGB", (0, 200, 0)).save(root / "sub" / "deeper" / "j_lossless.webp", lossless=True)
    solid("RGB", (255, 0, 255)).save(root / "sub" / "deeper" / "k_bitmap.bmp")
    wide = Image.new("RGB", (3 * RES, RES), (255, 0, 0))  # red | green | blue thirds
    wide.paste(solid("RGB", (0, 255, 0)), (RES, 0))
    wide.paste(solid("RGB", (0, 0, 255)), (2 * RES, 0))
    wide.save(root / "sub" / "l_wide.png")
    (root / "notes.txt").write_text("not an image")
    solid("RGB", (1, 2, 3)).save(root / ".hidden.png")
    solid("RGB", (1, 2, 3)).save(root / ".cache" / "thumb.png")
    order = [
        "a_gray.png",
        "b_rgb_upper.PNG",
        "c_rgba.png",
        "d_la.png",
        "sub/deeper/h_cmyk.jpg",
        "sub/deeper/i_upper.JPG",
        "sub/deeper/j_lossless.webp",
        "sub/deeper/k_bitmap.bmp",
        "sub/e_palette.png",
        "sub/f_palette_transparent.png",
        "sub/g_16bit.png",
        "sub/l_wide.png",
    ]
    return root, order


def pixel(image: np.ndarray, y: int, x: int) -> tuple[int, ...]:
    return tuple(int(v) for v in image[:, y, x])


def test_find_images_recursive_sorted_filtered(image_folder):
    root, order = image_folder
    found = find_images(root)
    assert [p.relative_to(root).as_posix() for p in found] == order


def test_load_folder_rgb_values_for_every_mode(image_folder):
    root, order = image_folder
    images = load_folder(root, RES, 3)
    assert images.shape == (len(order), 3, RES, RES) and images.dtype == np.uint8
    by_name = {name.rsplit("/", 1)[-1]: images[i] for i, name in enumerate(order)}
    left, right = (RES // 2, 2), (RES // 2, RES - 3)

    assert (by_name["a_gray.png"] == 100).all()  # grey replicated to 3 channels
    assert pixel(by_name["b_rgb_upper.PNG"], 5, 5) == (10, 20, 30)
    assert pixel(by_name["c_rgba.png"], *left) == (255, 255, 255)  # transparent -> white
    assert pixel(by_name["c_rgba.png"], *right) == (0, 0, 255)
    assert pixel(by_name["d_la.png"], *left) == (255, 255, 255)
    assert pixel(by_name["d_la.png"], *right) == (50, 50, 50)
    assert pixel(by_name["e_palette.png"], *left) == (10, 20, 30)
    assert pixel(by_name["e_palette.png"], *right) == (200, 100, 50)
    assert pixel(by_name["f_palette_transparent.png"], *left) == (255, 255, 255)
    assert pixel(by_name["f_palette_transparent.png"], *right) == (200, 100, 50)
    sixteen = by_name["g_16bit.png"]
    assert pixel(sixteen, 0, 0) == (100, 100, 100)  # 257 * 100 -> 100
    assert pixel(sixteen, *left) == (117, 117, 117)  # round(30000 * 255 / 65535), not clipped to 255
    assert pixel(sixteen, *right) == (255, 255, 255)
    assert np.abs(by_name["h_cmyk.jpg"].reshape(3, -1).mean(1) - [255, 0, 0]).max() < 6
    assert np.abs(by_name["i_upper.JPG"].astype(int) - 120).max() < 6
    assert (by_name["j_lossless.webp"] == np.array([0, 200, 0])[:, None, None]).all()
    assert (by_name["k_bitmap.bmp"] == np.array([255, 0, 255])[:, None, None]).all()
    assert (by_name["l_wide.png"] == np.array([0, 255, 0])[:, None, None]).all()  # centre third kept


def test_load_folder_grey_uses_luma(image_folder):
    root, order = image_folder
    grey = load_folder(root, RES, 1)
    assert grey.shape == (len(order), 1, RES, RES)
    rgb = load_folder(root, RES, 3).astype(np.float64)
    luma = (rgb[:, 0] * 299 + rgb[:, 1] * 587 + rgb[:, 2] * 114) / 1000
    assert np.abs(grey[:, 0] - luma).max() <= 1.0


def test_resize_shorter_side_then_center_crop(tmp_path):
    """A 48x16 strip of red|green|blue at 8 px keeps green; a tall image keeps its middle too."""
    wide = Image.new("RGB", (48, 16), (255, 0, 0))
    wide.paste(solid("RGB", (0, 255, 0)), (16, 0))
    wide.paste(solid("RGB", (0, 0, 255)), (32, 0))
    wide.save(tmp_path / "wide.png")
    out = decode_image(tmp_path / "wide.png", 8, 3)
    assert out.shape == (3, 8, 8)
    interior = out[:, :, 2:6].astype(int)
    assert np.abs(interior - np.array([0, 255, 0])[:, None, None]).max() <= 3
    wide.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "tall.png")
    tall = decode_image(tmp_path / "tall.png", 8, 3)
    assert np.abs(tall[:, 2:6, :].astype(int) - np.array([0, 255, 0])[:, None, None]).max() <= 3
    big = decode_image(tmp_path / "wide.png", 32, 1)  # upscaling works the same way
    assert big.shape == (1, 32, 32)


def test_exif_orientation_is_applied(tmp_path):
    """A 32x16 image tagged "rotate 90 CW" is shown as 16x32 with its left half on top."""
    image = Image.new("L", (32, 16), 255)
    image.paste(0, (0, 0, 16, 16))  # left half black
    exif = Image.Exif()
    exif[0x0112] = 6
    image.save(tmp_path / "rotated.png", exif=exif)
    out = decode_image(tmp_path / "rotated.png", 16, 1)[0]
    assert out[:6].max() < 20 and out[10:].min() > 235


def test_load_images_from_folder(image_folder):
    root, order = image_folder
    data = load_images(str(root), DataSpec("images", RES, 3))
    assert data.labels is None and data.name == "images" and data.source == str(root.resolve())
    assert data.images.shape == (len(order), 3, RES, RES) and data.images.dtype == torch.uint8


# --- errors name the path ---------------------------------------------------


def test_missing_folder(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(UserError, match="no such folder") as info:
        load_folder(missing, 32, 3)
    assert str(missing) in str(info.value)


def test_empty_folder_names_path_and_extensions(tmp_path):
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(UserError) as info:
        load_folder(tmp_path, 32, 3)
    message = str(info.value)
    assert str(tmp_path) in message and ".png" in message and ".webp" in message


def test_corrupt_png_names_the_file(tmp_path):
    solid("RGB", (1, 2, 3)).save(tmp_path / "good.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    with pytest.raises(UserError) as info:
        load_folder(tmp_path, RES, 3)
    assert str(bad) in str(info.value) and "cannot identify" in str(info.value)
    with pytest.raises(UserError, match="bad.png"):
        decode_image(bad, RES, 3)


def test_truncated_png_names_the_file(tmp_path):
    noisy = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noisy).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError) as info:
        decode_image(cut, RES, 3)
    assert str(cut) in str(info.value)


def test_skip_and_report_bad_files(tmp_path):
    solid("RGB", (1, 2, 3)).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"definitely not a png")
    solid("RGB", (4, 5, 6)).save(tmp_path / "c.png")
    reported: list[UserError] = []
    images = load_folder(tmp_path, RES, 3, on_bad=reported.append)
    assert images.shape == (2, 3, RES, RES)
    assert pixel(images[0], 0, 0) == (1, 2, 3) and pixel(images[1], 0, 0) == (4, 5, 6)
    assert len(reported) == 1 and str(tmp_path / "b.png") in str(reported[0])
