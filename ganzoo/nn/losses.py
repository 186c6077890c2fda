"""GAN losses written on discriminator logits.

Working on logits (softplus) rather than on sigmoid outputs with BCE is the same
function, numerically stable, and allowed under autocast.
"""

import torch
import torch.nn.functional as F


def nonsaturating_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """-log D(x) - log(1 - D(G(z))), as in Goodfellow et al. 2014."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def nonsaturating_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """-log D(G(z)): the non-saturating generator loss (Goodfellow et al. 2014, sec. 3)."""
    return F.softplus(-fake_logits).mean()
