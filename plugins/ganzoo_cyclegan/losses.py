"""CycleGAN's objectives (the reference's `CycleGANModel.backward_G` / `backward_D_basic`).

Least-squares GAN losses (MSE against 1 for real, 0 for fake), L1 cycle and
identity losses. Instance normalisation treats every image on its own, so
inputs that pass through the same generator are batched into one call: the
result is the same as the reference's separate calls, with fewer launches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import pool


def _lsgan(logits: torch.Tensor, target: float) -> torch.Tensor:
    logits = logits.float()
    return F.mse_loss(logits, torch.full_like(logits, target))


def generator_loss(nets, batch, ctx) -> torch.Tensor:
    """Adversarial (both directions) + cycle (weights lambda_a, lambda_b) + identity losses."""
    cfg = ctx.cfg
    real_a, real_b = batch["A"], batch["B"]
    n = len(real_a)
    use_identity = cfg.lambda_identity > 0
    if use_identity:  # G_AB(A) and the identity G_AB(B) in one call, likewise for G_BA
        fake_b, idt_b = nets["G_AB"](torch.cat([real_a, real_b])).split(n)
        fake_a, idt_a = nets["G_BA"](torch.cat([real_b, real_a])).split(n)
    else:
        fake_b, fake_a = nets["G_AB"](real_a), nets["G_BA"](real_b)
    rec_a, rec_b = nets["G_BA"](fake_b), nets["G_AB"](fake_a)

    adv_ab = _lsgan(nets["D_B"](fake_b), 1.0)
    adv_ba = _lsgan(nets["D_A"](fake_a), 1.0)
    cycle_a = F.l1_loss(rec_a.float(), real_a.float()) * cfg.lambda_a
    cycle_b = F.l1_loss(rec_b.float(), real_b.float()) * cfg.lambda_b
    total = adv_ab + adv_ba + cycle_a + cycle_b
    if use_identity:
        # G_AB should leave B images alone (weighted by B's cycle weight), as in the reference.
        identity_b = F.l1_loss(idt_b.float(), real_b.float()) * cfg.lambda_b * cfg.lambda_identity
        identity_a = F.l1_loss(idt_a.float(), real_a.float()) * cfg.lambda_a * cfg.lambda_identity
        total = total + identity_a + identity_b
        ctx.log("G/identity_A", identity_a.detach())
        ctx.log("G/identity_B", identity_b.detach())
    ctx.log("G/adv_AB", adv_ab.detach())
    ctx.log("G/adv_BA", adv_ba.detach())
    ctx.log("G/cycle_A", cycle_a.detach())
    ctx.log("G/cycle_B", cycle_b.detach())
    ctx.stash["fake_A"], ctx.stash["fake_B"] = fake_a.detach(), fake_b.detach()
    return total


def discriminator_loss(nets, batch, ctx) -> torch.Tensor:
    """Each discriminator: 0.5 * (LSGAN on reals + LSGAN on pooled fakes); the two are summed."""
    cfg = ctx.cfg
    fakes = {"A": ctx.stash.get("fake_A"), "B": ctx.stash.get("fake_B")}
    if fakes["A"] is None or fakes["B"] is None:  # no generator phase ran this step (a loss called alone)
        with torch.no_grad():
            fakes = {"A": nets["G_BA"](batch["B"]), "B": nets["G_AB"](batch["A"])}
    total = 0.0
    for domain in ("A", "B"):
        real = batch[domain]
        fake = pooled(ctx, domain, fakes[domain]).to(real.dtype)
        logits = nets[f"D_{domain}"](torch.cat([real, fake]))
        real_logits, fake_logits = logits.split(len(real))
        loss = 0.5 * (_lsgan(real_logits, 1.0) + _lsgan(fake_logits, 0.0))
        ctx.log(f"D_{domain}/real", real_logits.detach().float().mean())
        ctx.log(f"D_{domain}/fake", fake_logits.detach().float().mean())
        total = total + loss
    return total


def pooled(ctx, domain: str, fakes: torch.Tensor) -> torch.Tensor:
    """This rank's rows of the pool's answer for the global batch of fakes.

    The pool sees the whole batch, in batch order, as one process does: every
    rank queries it with the gathered fakes and the same shared draws, so every
    rank holds the identical pool and keeps its own rows of the answer.
    """
    global_fakes = ctx.gather(fakes.detach())
    return ctx.local(pool.query(ctx.state, f"pool_{domain}", global_fakes, ctx.cfg.pool_size, ctx.rand_shared))


@torch.no_grad()
def preview_rows(nets, real, n: int):
    """uint8 images for the training grid: per row real A, A->B, A->B->A, real B, B->A, B->A->B."""
    from ganzoo.sampling import to_uint8

    rows = max(1, min(len(real["A"]), len(real["B"]), n // 6 or 1))
    real_a, real_b = real["A"][:rows], real["B"][:rows]
    fake_b = nets["G_AB"](real_a)
    fake_a = nets["G_BA"](real_b)
    columns = [real_a, fake_b, nets["G_BA"](fake_b), real_b, fake_a, nets["G_AB"](fake_a)]
    images = torch.stack([to_uint8(c).cpu() for c in columns], dim=1)  # (rows, 6, C, H, W)
    return images.flatten(0, 1), len(columns)
