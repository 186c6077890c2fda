"""A resolution is accepted only as far as it can be built, and refused with the reason before anything is
allocated or written.

On main `--set resolution=4096` on the embedded data started resizing 10,000 images to 4096x4096 (168 GB, in
float chunks of 67 GB), and resolution=1073741824 overflowed inside torch. Now the core bounds every plugin's
images by MAX_RESOLUTION (validation, before anything), and data that would not fit in the memory available
is refused before it is decoded.
"""

from __future__ import annotations

import os

import pytest

from ganzoo import config, registry
from ganzoo.errors import UserError
from helpers import ganzoo



def too_large(side: int) -> str:
    return f"must be at most 4096, the largest side ganzoo builds (one {side}x{side} image alone would hold " \
           f"{side * side:,} pixels)"


@pytest.mark.parametrize("arch, sets, key, side", [
    ("dcgan", {"resolution": "1073741824"}, "resolution", 1073741824),
    ("dcgan", {"resolution": "8192"}, "resolution", 8192),
    ("cyclegan", {"resolution": "8192", "load_resolution": "8192"}, "resolution", 8192),
    ("cyclegan", {"resolution": "256", "load_resolution": "5000"}, "load_resolution", 5000),
])
def test_a_resolution_past_what_can_be_built_is_refused_by_validation(arch, sets, key, side):
    with pytest.raises(UserError) as raised:
        config.resolve(registry.get(arch), sets=sets)
    assert str(raised.value) == f"invalid {arch} config: {key}={side}: {too_large(side)} (from --set)"


def test_the_largest_resolution_says_why(tmp_path):
    with pytest.raises(UserError, match=r"resolution=2048: must be a power of two from 8 to 1024 \(1024, FFHQ's, "
                                        r"is the largest stylegan2-ada-pytorch builds\)"):
        config.resolve(registry.get("stylegan-lite"), sets={"resolution": "2048"})


def test_resolution_1073741824_is_one_error_line_before_anything_is_written(tmp_path):
    result = ganzoo("train", "dcgan", "--device", "cpu", "--steps", 1, "--set", "resolution=1073741824",
                    "--out", tmp_path / "run", timeout=120)
    assert result.returncode == 1 and result.stderr.splitlines() == [
        f"Error: invalid dcgan config: resolution=1073741824: {too_large(1073741824)} (from --set)"], result.stderr
    assert not (tmp_path / "run").exists()


def _available() -> int | None:
    """MemAvailable in bytes (Linux), read here rather than through ganzoo, or None."""
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None


@pytest.mark.parametrize("arch, sets, count", [("dcgan", ["resolution=4096"], 10_000),
                                               ("cyclegan", ["resolution=4096", "load_resolution=4096"], 2_000)])
def test_embedded_data_too_large_for_memory_is_refused_before_it_is_decoded(tmp_path, arch, sets, count):
    """4096x4096 grey: 168 GB for DCGAN's 10,000 images, 33.6 GB for CycleGAN's pair of 2,000; skipped on a
    machine with that much memory available, where training there is allowed."""
    need = count * 4096 * 4096
    available = _available()
    if available is None or available >= need:
        pytest.skip(f"{available} bytes of memory available: {need} would fit")
    args = [arg for value in sets for arg in ("--set", value)]
    result = ganzoo("train", arch, "--device", "cpu", "--steps", 1, "--set", "channels=1", *args,
                    "--out", tmp_path / "run", timeout=120)
    lines = result.stderr.splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"Error: the embedded fashion-mnist data: {count:,} images decoded at 4096x4096x1 "
                               f"would take {need / 1e9:.3g} GB, more than the ")
    assert lines[0].endswith("of memory available: train at a lower resolution, or on fewer images")
    assert not (tmp_path / "run").exists()


def test_a_folder_too_large_for_memory_is_refused_naming_it(tmp_path):
    """The same check for folders, from the file count alone (nothing is decoded), through load_data: two
    images at a side whose square is more than this machine's memory and swap together (an np.empty of
    that failed at once with a MemoryError; a smaller excess would have started decoding into swap). A folder
    is prepared a shard at a time, so the check is of one shard, here one image (a shard holds at least one)."""
    import math

    from ganzoo.api import IMAGES, DataSpec
    from ganzoo.data import load_data
    from helpers import image_folder

    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    with open("/proc/meminfo") as f:
        swap = next((int(line.split()[1]) * 1024 for line in f if line.startswith("SwapTotal:")), 0)
    side = math.isqrt(total + swap) + 1
    folder = image_folder(tmp_path / "data", n=2)
    with pytest.raises(UserError) as raised:
        load_data(folder, DataSpec(IMAGES, side, 1))
    assert str(raised.value).startswith(f"folder {folder}: 1 image decoded at {side}x{side}x1 would take ")
    assert str(raised.value).endswith("of memory available: train at a lower resolution, or on fewer images")
