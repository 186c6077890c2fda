"""The style-mixing grid of the StyleGAN papers: coarse styles from one latent, fine from another."""

from __future__ import annotations

import numpy as np
import torch

from ganzoo.sampling import to_uint8


@torch.no_grad()
def style_mixing_grid(G, cfg, rows: int, cols: int, seed: int, device, truncation: float = 1.0,
                      coarse: int | None = None) -> tuple[torch.Tensor, int]:
    """uint8 images for a (rows + 1) x (cols + 1) grid and its row length.

    Row latents are drawn with ``seed``, column latents with ``seed + 1`` (numpy
    PCG64, as every ganzoo latent), so the sources are the images ``ganzoo sample``
    gives for those seeds. The top-left cell is blank.
    """
    from . import default_coarse_layers

    coarse = default_coarse_layers(cfg.resolution) if coarse is None else coarse
    if not 1 <= coarse < G.num_ws:
        raise ValueError(f"coarse must be between 1 and {G.num_ws - 1} (the style layers), got {coarse}")

    def styles(n: int, s: int) -> torch.Tensor:
        z = torch.from_numpy(np.random.default_rng(s).standard_normal((n, G.z_dim), dtype=np.float32)).to(device)
        psi = torch.full((n, 1), float(truncation), device=device)
        return G.mapping(z, psi)

    row_ws, col_ws = styles(rows, seed), styles(cols, seed + 1)
    mixed = col_ws.unsqueeze(0).repeat(rows, 1, 1, 1)  # (rows, cols, num_ws, w_dim)
    mixed[:, :, :coarse] = row_ws[:, None, :coarse]

    def render(ws: torch.Tensor) -> torch.Tensor:
        return to_uint8(G.synthesis(ws).clamp(-1, 1)).cpu()

    row_images, col_images = render(row_ws), render(col_ws)
    cells = render(mixed.flatten(0, 1)).view(rows, cols, *col_images.shape[1:])
    blank = torch.full_like(col_images[:1], 255)
    lines = [torch.cat([blank, col_images])]
    lines += [torch.cat([row_images[r:r + 1], cells[r]]) for r in range(rows)]
    return torch.cat(lines), cols + 1
