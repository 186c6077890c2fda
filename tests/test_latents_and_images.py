"""Latents declared as data and the numpy image helpers: the same draws and pixels as the PyTorch path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.utils import make_grid

from ganzoo.api import gaussian_latents, image_latents
from ganzoo.runtime.images import grid, to_uint8
from ganzoo.runtime.latents import Constant, Gaussian, Latents, Uniform
from ganzoo.sampling import to_uint8 as torch_to_uint8


def test_declared_latents_draw_what_numpy_draws_and_survive_json():
    latents = Latents((Gaussian("z", (8,)), Uniform("image", (1, 4, 4)), Constant("truncation", (1,), 0.7)))
    drawn = latents(5, seed=3)
    rng = np.random.default_rng(3)
    assert np.array_equal(drawn["z"], rng.standard_normal((5, 8), dtype=np.float32))
    assert np.array_equal(drawn["image"], rng.uniform(-1, 1, (5, 1, 4, 4)).astype(np.float32))
    assert np.array_equal(drawn["truncation"], np.full((5, 1), 0.7, np.float32))
    assert all(v.dtype == np.float32 for v in drawn.values())
    again = Latents.from_json(latents.to_json())
    assert again == latents
    assert all(np.array_equal(again(5, 3)[k], drawn[k]) for k in drawn)
    assert not np.array_equal(latents(5, 4)["z"], drawn["z"])
    assert gaussian_latents(8)(2, 0)["z"].shape == (2, 8) and image_latents(3, 6)(2, 0)["image"].shape == (2, 3, 6, 6)


def test_numpy_pixels_equal_torch_pixels_including_halfway_values():
    x = np.concatenate([np.linspace(-1.2, 1.2, 10001, dtype=np.float32),
                        (np.arange(256, dtype=np.float32) + 0.5) / 127.5 - 1])  # exact .5 after scaling
    assert np.array_equal(to_uint8(x), torch_to_uint8(torch.from_numpy(x)).numpy())
    assert to_uint8(np.array([-1.0, 1.0, -3.0, 3.0], np.float32)).tolist() == [0, 255, 0, 255]


@pytest.mark.parametrize("n, channels, nrow", [(1, 1, None), (5, 1, None), (7, 3, 3), (12, 3, 5), (4, 1, 8)])
def test_numpy_grid_is_torchvisions_make_grid(n, channels, nrow):
    images = torch.randint(0, 256, (n, channels, 6, 9), dtype=torch.uint8, generator=torch.Generator().manual_seed(n))
    expected = make_grid(images, nrow=nrow or int(np.ceil(np.sqrt(n))), padding=2, pad_value=255).permute(1, 2, 0).numpy()
    ours = np.asarray(grid(images.numpy(), nrow))
    assert np.array_equal(ours, expected[:, :, 0] if channels == 1 else expected)
