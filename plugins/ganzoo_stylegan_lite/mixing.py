"""The style-mixing grid of the StyleGAN papers: coarse styles from one latent, fine from another."""

from __future__ import annotations

import numpy as np
import torch

from ganzoo.sampling import to_uint8


@torch.no_grad()
def style_mixing_grid(G, cfg, rows: int, cols: int, seed: int, device, truncation: float, coarse: int,
                      label: int | None = None) -> tuple[torch.Tensor, int]:
    """uint8 images for a (rows + 1) x (cols + 1) grid and its row length.

    Cell (r, c) takes the first ``coarse`` style layers from row r's latent and
    the rest from column c's. Row latents are drawn with ``seed``, column
    latents with ``seed + 1`` (numpy PCG64, as every ganzoo latent), so the
    sources are the images ``ganzoo sample`` gives for those seeds. The top-left
    cell is blank. ``G`` is reached through its forward alone.

    A conditional generator maps every latent with the one class ``label`` (an
    index; both latents of a cell with it, as the reference's style mixing), and
    truncation pulls towards the one tracked w_avg, as the reference's does.
    """
    from . import generator_input_names, style_latents

    if (label is None) != (cfg.c_dim == 0):
        raise ValueError("a conditional generator needs a label, an unconditional one takes none")
    latents, names = style_latents(cfg.z_dim, cfg.c_dim), generator_input_names(cfg)

    def styles(n: int, s: int) -> torch.Tensor:
        inputs = latents(n, s) if label is None else latents(n, s, labels=label)
        inputs["truncation"] = np.full_like(inputs["truncation"], truncation)
        return G(*[torch.from_numpy(inputs[name]).to(device) for name in names], styles_only=True)

    row_ws, col_ws = styles(rows, seed), styles(cols, seed + 1)
    mixed = col_ws.unsqueeze(0).repeat(rows, 1, 1, 1)  # (rows, cols, num_ws, w_dim)
    mixed[:, :, :coarse] = row_ws[:, None, :coarse]

    def render(ws: torch.Tensor) -> torch.Tensor:
        return to_uint8(G(ws=ws)).cpu()  # eval mode: clamped to [-1, 1]

    row_images, col_images = render(row_ws), render(col_ws)
    cells = render(mixed.flatten(0, 1)).view(rows, cols, *col_images.shape[1:])
    blank = torch.full_like(col_images[:1], 255)
    lines = [torch.cat([blank, col_images])]
    lines += [torch.cat([row_images[r:r + 1], cells[r]]) for r in range(rows)]
    return torch.cat(lines), cols + 1
