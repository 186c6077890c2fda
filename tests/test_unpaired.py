"""Unpaired data: trainA/trainB folders, the embedded pair, and how the feed draws, crops and flips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ganzoo.api import DataSpec
from ganzoo.data import load_data
from ganzoo.data.embedded import load_fashion_mnist
from ganzoo.errors import UserError
from ganzoo.train.feed import ImageFeed, UnpairedFeed

SPEC = DataSpec("unpaired", 32, 3, decode_resolution=36, flip=True)


def unpaired_folder(root, n_a=3, n_b=5, size=40):
    rng = np.random.default_rng(0)
    for domain, n in (("A", n_a), ("B", n_b)):
        for split in ("train", "test"):
            folder = root / f"{split}{domain}"
            folder.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


def test_folder_domains_of_different_sizes(tmp_path):
    data = load_data(unpaired_folder(tmp_path / "h2z"), SPEC)
    assert data.A.shape == (3, 3, 36, 36) and data.B.shape == (5, 3, 36, 36)  # decoded at the load size
    assert len(data) == 5 and data.name == "h2z"
    assert "A: 3 images" in data.describe() and str(tmp_path / "h2z" / "trainB") in data.describe()


def test_missing_and_empty_domains_name_the_folder(tmp_path):
    root = unpaired_folder(tmp_path / "set")
    for f in (root / "trainB").iterdir():
        f.unlink()
    with pytest.raises(UserError, match=f"domain B is empty: no images in {root / 'trainB'}"):
        load_data(root, SPEC)
    (root / "trainB").rmdir()
    with pytest.raises(UserError, match=f"has no folder trainB/ \\(expected {root / 'trainB'}\\)"):
        load_data(root, SPEC)
    with pytest.raises(UserError, match="unknown dataset"):
        load_data(tmp_path / "nowhere", SPEC)


def test_embedded_pair_is_sneakers_and_ankle_boots():
    data = load_data(None, DataSpec("unpaired", 32, 1))
    images, labels = load_fashion_mnist()
    assert data.A.shape == (1000, 1, 32, 32) and data.B.shape == (1000, 1, 32, 32)
    assert torch.equal(data.A[0, 0, 2:30, 2:30], torch.from_numpy(images[labels == 7][0]))
    assert torch.equal(data.B[-1, 0, 2:30, 2:30], torch.from_numpy(images[labels == 9][-1]))


def test_unpaired_feed_walks_a_and_draws_b_at_random():
    a = torch.arange(4, dtype=torch.uint8).view(4, 1, 1, 1).expand(4, 1, 2, 2).contiguous()
    b = (100 + torch.arange(10, dtype=torch.uint8)).view(10, 1, 1, 1).expand(10, 1, 2, 2).contiguous()
    feed = UnpairedFeed(a, b, batch_size=2, seed=0, device=torch.device("cpu"))
    assert len(feed) == 10 and feed.steps_per_epoch == 5
    seen_a, seen_b = [], []
    for _ in range(5):  # one epoch: 10 items, the A index taken modulo |A|
        batch = feed.next()
        seen_a += ((batch["A"][:, 0, 0, 0] + 1) * 127.5).round().int().tolist()
        seen_b += ((batch["B"][:, 0, 0, 0] + 1) * 127.5).round().int().tolist()
    assert sorted(seen_a) == sorted(i % 4 for i in range(10))
    assert all(100 <= v < 110 for v in seen_b) and len(set(seen_b)) > 3
    again = UnpairedFeed(a, b, batch_size=2, seed=0, device=torch.device("cpu"))
    assert torch.equal(again.next()["B"], UnpairedFeed(a, b, 2, 0, torch.device("cpu")).next()["B"])


def test_random_crop_and_flip_match_a_plain_slice():
    images = torch.randint(0, 256, (64, 3, 9, 9), dtype=torch.uint8)
    feed = ImageFeed(images, batch_size=64, seed=3, device=torch.device("cpu"),
                     spec=DataSpec("images", 6, 3, decode_resolution=9, flip=True))
    state = feed.rng.get_state()
    out = feed.augment(images)
    rng = torch.Generator()
    rng.set_state(state)
    ys, xs = torch.randint(0, 4, (64,), generator=rng), torch.randint(0, 4, (64,), generator=rng)
    flips = torch.rand(64, generator=rng) < 0.5
    for i in range(64):
        expected = images[i, :, ys[i]:ys[i] + 6, xs[i]:xs[i] + 6]
        assert torch.equal(out[i], expected.flip(-1) if flips[i] else expected)
    assert 16 < int(flips.sum()) < 48 and len(set(ys.tolist())) == 4  # every offset occurs


def test_fixed_batch_is_centred_and_stable():
    a = torch.randint(0, 256, (7, 1, 10, 10), dtype=torch.uint8)
    feed = UnpairedFeed(a, a.flip(0), 1, 0, torch.device("cpu"), spec=DataSpec("unpaired", 8, 1, decode_resolution=10))
    first = feed.fixed_batch(3)
    feed.next()
    assert torch.equal(first["A"], feed.fixed_batch(3)["A"])
    assert torch.equal(first["A"][0], a[0, :, 1:9, 1:9].float() / 127.5 - 1)
    assert first["B"].shape == (3, 1, 8, 8)
