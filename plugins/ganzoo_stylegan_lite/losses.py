"""StyleGAN2's losses as four phases (NVlabs/stylegan2-ada-pytorch `training/loss.py`).

G: non-saturating logistic loss on style-mixed samples. G_pl: path-length
regularisation, every ``pl_interval`` G steps. D: logistic loss on reals and
fakes. D_r1: the R1 gradient penalty on reals, every ``r1_interval`` D steps.
Regularisers are scaled by their interval (lazy regularisation), and their
phases run eagerly in fp32 because they differentiate twice.

Every random value is drawn through the LossContext so that a global batch
gives the same losses whether one process or several compute it: latents,
synthesis noise, DiffAugment's and path length's draws per sample
(``ctx.randn``/``ctx.rand``), the mixing cutoff for the whole batch
(``ctx.rand_shared``); the path-length mean follows the global batch
(``ctx.gather``).

A conditional run (``c_dim`` > 0) passes labels as the reference's
StyleGAN2Loss does: reals are judged with their own classes
(``batch["label"]``, R1 included), generated images (the G and D phases, path
length, both latents of a style-mixed sample) with classes drawn from the data's
label distribution (``ctx.labels``, its training loop's ``gen_c``), one-hot.
"""

from __future__ import annotations

import torch

from ganzoo.nn.losses import nonsaturating_d_loss, nonsaturating_g_loss

from .diffaugment import diff_augment
from .networks import noise_resolutions, num_ws


def mixing_mask(num_ws: int, probability: float, ctx) -> torch.Tensor:
    """Style mixing: with ``probability``, styles from a random layer on come from a second z.

    Returns a (num_ws,) bool mask of the layers that take the second z's styles,
    drawn on the device from the trainer's generator (no host sync).
    """
    cutoff = 1 + (ctx.rand_shared(1) * (num_ws - 1)).floor().clamp(max=num_ws - 2)
    mix = ctx.rand_shared(1) < probability
    return (torch.arange(num_ws, device=ctx.device) >= cutoff) & mix


def synthesis_noise(n: int, ctx) -> list[torch.Tensor]:
    """Per-sample noise maps for every synthesis layer, (n, 1, r, r) each, drawn for the global batch."""
    return [ctx.randn(n, 1, r, r) for r in noise_resolutions(ctx.cfg.resolution)]


def one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """float32 (N, num_classes) rows for int64 class indices: the networks' label input (the reference's c)."""
    return torch.nn.functional.one_hot(labels, num_classes).float()


def generated_labels(n: int, ctx) -> torch.Tensor | None:
    """One-hot classes for n generated samples from the data's label distribution; None when unconditional."""
    return one_hot(ctx.labels(n), ctx.cfg.c_dim) if ctx.cfg.c_dim > 0 else None


def generator_inputs(n: int, ctx, mixing: float, label: torch.Tensor | None = None) -> dict:
    """G's keyword inputs for n samples: z, the label (conditional), with style mixing a second z and the layer
    mask, and the noise."""
    z_dim = ctx.cfg.z_dim
    inputs = {"z": ctx.randn(n, z_dim)}
    if label is not None:
        inputs["label"] = label
    if mixing > 0:
        inputs.update(mix_z=ctx.randn(n, z_dim), mix_mask=mixing_mask(num_ws(ctx.cfg.resolution), mixing, ctx))
    inputs["noise"] = synthesis_noise(n, ctx)
    return inputs


def run_D(D, images: torch.Tensor, policy: tuple[str, ...], ctx, label: torch.Tensor | None = None) -> torch.Tensor:
    """D's logits on images augmented by DiffAugment (when ``policy`` is not empty), judged as of class ``label``
    (one-hot) when conditional."""
    if policy:
        images = diff_augment(images, policy, ctx.rand)
    return D(images) if label is None else D(images, label)


def generator_loss(nets, n: int, ctx, mixing: float, policy) -> torch.Tensor:
    gen_c = generated_labels(n, ctx)
    fake = nets["G"](**generator_inputs(n, ctx, mixing, gen_c))
    logits = run_D(nets["D"], fake, policy, ctx, gen_c)
    ctx.log("scores/fake", logits.detach().float().mean())
    return nonsaturating_g_loss(logits)


def discriminator_loss(nets, real: torch.Tensor, ctx, mixing: float, policy,
                       real_c: torch.Tensor | None = None) -> torch.Tensor:
    gen_c = generated_labels(real.shape[0], ctx)
    with torch.no_grad():
        fake = nets["G"](**generator_inputs(real.shape[0], ctx, mixing, gen_c))
    fake_logits = run_D(nets["D"], fake, policy, ctx, gen_c)
    real_logits = run_D(nets["D"], real, policy, ctx, real_c)
    ctx.log("scores/real", real_logits.detach().float().mean())
    return nonsaturating_d_loss(real_logits, fake_logits)


def r1_penalty(D, real: torch.Tensor, ctx, policy, real_c: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample squared norm of dD(x, c)/dx on reals with their classes (x before augmentation, as
    StyleGAN2-ADA)."""
    real = real.detach().requires_grad_(True)
    logits = run_D(D, real, policy, ctx, real_c)
    (grads,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
    return grads.square().sum(dim=(1, 2, 3)), logits


def r1_loss(nets, real: torch.Tensor, ctx, gamma: float, interval: int, policy,
            real_c: torch.Tensor | None = None) -> torch.Tensor:
    penalty, logits = r1_penalty(nets["D"], real, ctx, policy, real_c)
    ctx.log("reg/r1", penalty.detach().mean())
    # logits * 0 keeps D's output in the graph, as the reference does, so every parameter gets a gradient.
    return (logits.squeeze(1) * 0 + penalty * (gamma / 2)).mean() * interval


def path_length_loss(nets, n: int, ctx, cfg) -> torch.Tensor:
    """Path-length regularisation: |J_w^T y| pulled towards its running mean, y ~ N(0, I) / sqrt(pixels).

    The running mean lives in ``ctx.state`` (checkpointed, so resume is exact).
    """
    G = nets["G"]
    batch = max(1, n // cfg.pl_batch_shrink)
    inputs = generator_inputs(batch, ctx, cfg.style_mixing, generated_labels(batch, ctx))
    noise = inputs.pop("noise")
    ws = G(**inputs, styles_only=True)
    images = G(ws=ws, noise=noise)
    y = ctx.randn(*images.shape) / (images.shape[2] * images.shape[3]) ** 0.5
    (grads,) = torch.autograd.grad((images * y).sum(), ws, create_graph=True)
    lengths = grads.square().sum(dim=2).mean(dim=1).sqrt()
    previous = ctx.state.get("pl_mean", torch.zeros((), device=ctx.device))
    # The running mean follows the global batch, so every rank holds the one process's value.
    mean = previous.lerp(ctx.gather(lengths.detach()).mean(), cfg.pl_decay)
    ctx.state["pl_mean"] = mean
    ctx.log("reg/path_length", lengths.detach().mean())
    penalty = (lengths - mean).square() * cfg.pl_weight
    return (images[:, 0, 0, 0] * 0 + penalty).mean() * cfg.pl_interval
