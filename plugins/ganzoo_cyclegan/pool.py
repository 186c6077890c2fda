"""The image pool of Shrivastava et al. 2017, as CycleGAN uses it to steady its discriminators.

The discriminator sees, half of the time, a fake from an earlier step instead
of the newest one. The pool lives in the trainer's ``ctx.state`` so that
checkpoints hold it and resume continues exactly; its random draws come from
the trainer's seeded generator. Every decision is made with tensor ops on the
device (no host sync), one image at a time in batch order as the reference's
``ImagePool.query`` does.

A non-finite fake (a diverged generator step, whose update the trainer then
skips) is never stored: it would otherwise come back to the discriminator in
later steps. It is still returned, so the step sees what went wrong.
"""

from __future__ import annotations

import torch


def query(state: dict, key: str, images: torch.Tensor, pool_size: int, rand) -> torch.Tensor:
    """Fakes for the discriminator: while the pool fills, the images themselves (and they join it);
    once full, each image is swapped with probability 0.5 for a random stored one, which it replaces.

    ``rand(*shape)`` draws uniform numbers (LossContext.rand).
    """
    if pool_size <= 0:
        return images
    images = images.detach()
    if key not in state:
        state[key] = {"images": images.new_zeros((pool_size, *images.shape[1:])), "count": 0}
    pool = state[key]
    stored, count = pool["images"], int(pool["count"])  # a Python int: reading it never syncs
    out = []
    for image in images:
        image = image.unsqueeze(0)
        finite = torch.isfinite(image).all()
        if count < pool_size:  # a refused image leaves its slot as it was (zeros) until a swap fills it
            stored[count:count + 1] = torch.where(finite, image, stored[count:count + 1])
            count += 1
            out.append(image)
            continue
        swap = rand(1) > 0.5
        slot = (rand(1) * pool_size).long().clamp_(max=pool_size - 1)
        old = stored.index_select(0, slot)
        out.append(torch.where(swap.view(1, 1, 1, 1), old, image))
        stored.index_copy_(0, slot, torch.where((swap & finite).view(1, 1, 1, 1), image, old))
    pool["count"] = count
    return torch.cat(out)
