"""StyleGAN-lite's reference loop: NVlabs/stylegan2-ada-pytorch's training loop, for the benchmark's row.

A copy, for one GPU (batch_gpu = batch_size, one accumulation round, no DDP,
no labels), of the order of work of ``training/training_loop.py`` and of
``StyleGAN2Loss.accumulate_gradients`` in ``training/loss.py``:

- each iteration draws ``len(phases) * batch`` latents at once, one slice per
  phase; phases ``Gmain``, ``Greg`` (every ``pl_interval``, 4), ``Dmain``,
  ``Dreg`` (every ``r1_interval``, 16) run in that order. The reference fuses
  a main phase with its regulariser (``Gboth``/``Dboth``) only when lazy
  regularisation is off; with it on, as here, ``Dmain`` and ``Dreg`` run as two
  phases even on the steps they share, each with its own forward of D;
- each phase: ``zero_grad(set_to_none=True)``, ``requires_grad_(True)``,
  the loss times ``gain = interval`` backwarded, ``requires_grad_(False)``,
  ``nan_to_num`` on every gradient (nan 0, +-inf +-1e5), ``opt.step()``;
- Adam as the reference builds it: lr and betas scaled by
  ``interval / (interval + 1)``, eps 1e-8, torch's default implementation
  (what the script gets with the torch a user runs today: the multi-tensor
  foreach Adam on CUDA, the per-parameter loop on the CPU);
- style mixing as its ``run_G`` (cutoff drawn with ``random_``, the styles
  written in place by slicing, which reads the cutoff on the host); path
  length on batch // pl_batch_shrink, R1 through ``autograd.grad`` of the real
  logits' sum, ``x * 0`` terms kept; G_ema by ``p_ema.copy_(p.lerp(p_ema, beta))``
  per parameter and buffers copied, beta from ema_kimg and ema_rampup.

Networks are StyleGAN-lite's own (``arch.build(cfg)``): they compute the
reference's functions (tests/test_stylegan_upsampling.py), and on the CPU the
reference runs its ops' reference implementations (upfirdn2d, bias_act,
conv2d_resample in plain torch), as ganzoo's eager path does. The reference's
``conv2d_gradfix`` (a CUDA-only custom op that drops weight gradients inside
the regularisers' inner autograd.grad) has no counterpart and is not copied.
Augmentation: the reference applies its ``augment_pipe`` (ADA) before every D
call; where StyleGAN-lite's config turns DiffAugment on (``cfg.augment_policy()``,
the smoke preset and small data sets), the same DiffAugment runs at exactly
those places, with R1 differentiating the unaugmented reals as there.
Config values (z_dim, r1 gamma, pl weight, batch shrink and decay, mixing
probability, lr, betas, intervals) are StyleGAN-lite's, so the loop trains what
ganzoo trains; EMA takes ganzoo's TrainOptions defaults (10 kimg, ramp-up 0.05).

The reference also sets ``cudnn.benchmark = True`` and turns TF32 off for
matmuls and convolutions; the loop leaves these process-wide flags to whoever
times it.

Random numbers come from torch's global generator, as the reference's do;
``ReferenceDraws`` names each draw so a test can hand in the values another
computation drew.
"""

from __future__ import annotations

import copy
import math
from typing import Mapping

import torch

from ganzoo.api import ReferenceLoop

from .diffaugment import diff_augment

PHASES = ("Gmain", "Greg", "Dmain", "Dreg")


class ReferenceDraws:
    """The loss's random draws, from torch's global generator, in the reference's order and form."""

    def __init__(self, device):
        self.device = device

    def mixing_cutoff(self, num_ws: int, probability: float) -> torch.Tensor:
        cutoff = torch.empty([], dtype=torch.int64, device=self.device).random_(1, num_ws)
        return torch.where(torch.rand([], device=self.device) < probability, cutoff, torch.full_like(cutoff, num_ws))

    def mix_z(self, z: torch.Tensor) -> torch.Tensor:
        return torch.randn_like(z)

    def synthesis_noise(self, n: int) -> list[torch.Tensor] | None:
        return None  # each synthesis layer draws its own (the reference's noise_mode='random')

    def pl_noise(self, img: torch.Tensor) -> torch.Tensor:
        return torch.randn_like(img)

    def augment(self, n: int, *shape: int) -> torch.Tensor:
        return torch.rand((n, *shape), device=self.device)


class StyleGAN2Loss:
    """``training/loss.py``'s StyleGAN2Loss on StyleGAN-lite's networks: ``accumulate_gradients`` per phase."""

    def __init__(self, G, D, cfg, device, draws: ReferenceDraws | None = None):
        self.G, self.D, self.device = G, D, device
        self.augment_policy = cfg.augment_policy()
        self.style_mixing_prob = cfg.style_mixing
        self.r1_gamma = cfg.gamma()
        self.pl_batch_shrink, self.pl_decay, self.pl_weight = cfg.pl_batch_shrink, cfg.pl_decay, cfg.pl_weight
        self.pl_mean = torch.zeros([], device=device)
        self.draws = draws or ReferenceDraws(device)

    def run_G(self, z):
        ws = self.G.mapping(z).contiguous()  # the reference's mapping repeats w per layer (a copy, writable)
        if self.style_mixing_prob > 0:
            cutoff = self.draws.mixing_cutoff(ws.shape[1], self.style_mixing_prob)
            ws[:, cutoff:] = self.G.mapping(self.draws.mix_z(z), update_w_avg=False)[:, cutoff:]
        img = self.G.synthesis(ws, self.draws.synthesis_noise(z.shape[0]))
        return img, ws

    def run_D(self, img):
        if self.augment_policy:
            img = diff_augment(img, self.augment_policy, self.draws.augment)
        return self.D(img)

    def gmain_loss(self, gen_z):
        """Gmain: maximise the logits of generated images."""
        gen_img, _gen_ws = self.run_G(gen_z)
        gen_logits = self.run_D(gen_img)
        return torch.nn.functional.softplus(-gen_logits)

    def gpl_loss(self, gen_z):
        """Greg: path-length penalty on batch // pl_batch_shrink samples; updates pl_mean."""
        batch_size = gen_z.shape[0] // self.pl_batch_shrink
        gen_img, gen_ws = self.run_G(gen_z[:batch_size])
        pl_noise = self.draws.pl_noise(gen_img) / math.sqrt(gen_img.shape[2] * gen_img.shape[3])
        pl_grads = torch.autograd.grad(outputs=[(gen_img * pl_noise).sum()], inputs=[gen_ws], create_graph=True,
                                       only_inputs=True)[0]
        pl_lengths = pl_grads.square().sum(2).mean(1).sqrt()
        pl_mean = self.pl_mean.lerp(pl_lengths.mean(), self.pl_decay)
        self.pl_mean.copy_(pl_mean.detach())
        pl_penalty = (pl_lengths - pl_mean).square()
        return gen_img[:, 0, 0, 0] * 0 + pl_penalty * self.pl_weight

    def dgen_loss(self, gen_z):
        """Dmain, fakes: minimise the logits of generated images (G is frozen: nothing requires its grad)."""
        gen_img, _gen_ws = self.run_G(gen_z)
        gen_logits = self.run_D(gen_img)
        return torch.nn.functional.softplus(gen_logits)

    def dreal_loss(self, real_img, do_Dmain: bool, do_Dr1: bool):
        """Dmain, reals (softplus(-logits)) and/or Dreg (R1 with gamma / 2), one forward of D on the reals."""
        real_img_tmp = real_img.detach().requires_grad_(do_Dr1)
        real_logits = self.run_D(real_img_tmp)
        loss_Dreal = 0
        if do_Dmain:
            loss_Dreal = torch.nn.functional.softplus(-real_logits)
        loss_Dr1 = 0
        if do_Dr1:
            r1_grads = torch.autograd.grad(outputs=[real_logits.sum()], inputs=[real_img_tmp], create_graph=True,
                                           only_inputs=True)[0]
            r1_penalty = r1_grads.square().sum([1, 2, 3])
            loss_Dr1 = r1_penalty * (self.r1_gamma / 2)
        return real_logits * 0 + loss_Dreal + loss_Dr1

    def accumulate_gradients(self, phase: str, real_img, gen_z, gain: int) -> None:
        do_Gmain = phase in ("Gmain", "Gboth")
        do_Dmain = phase in ("Dmain", "Dboth")
        do_Gpl = phase in ("Greg", "Gboth") and self.pl_weight != 0
        do_Dr1 = phase in ("Dreg", "Dboth") and self.r1_gamma != 0
        if do_Gmain:
            self.gmain_loss(gen_z).mean().mul(gain).backward()
        if do_Gpl:
            self.gpl_loss(gen_z).mean().mul(gain).backward()
        if do_Dmain:
            self.dgen_loss(gen_z).mean().mul(gain).backward()
        if do_Dmain or do_Dr1:
            self.dreal_loss(real_img, do_Dmain, do_Dr1).mean().mul(gain).backward()


def lazy_adam(params, cfg, interval: int) -> torch.optim.Adam:
    """The reference's optimizer for a lazily regularised module: lr * mb_ratio, betas ** mb_ratio."""
    mb_ratio = interval / (interval + 1)
    return torch.optim.Adam(params, lr=cfg.lr * mb_ratio, betas=[beta**mb_ratio for beta in (cfg.beta1, cfg.beta2)],
                            eps=1e-8)


class StyleGAN2ADALoop(ReferenceLoop):
    """stylegan2-ada-pytorch's training iteration on StyleGAN-lite's networks (see the module docstring).

    ``last_phases`` names the phases the latest ``step`` ran, in order.
    """

    source = "NVlabs/stylegan2-ada-pytorch training/training_loop.py, training/loss.py"

    def __init__(self, arch, cfg, device, ema_kimg: float = 10.0, ema_rampup: float | None = 0.05):
        self.device = torch.device(device)
        nets = arch.build(cfg)
        self.G = nets["G"].train().requires_grad_(False).to(self.device)
        self.D = nets["D"].train().requires_grad_(False).to(self.device)
        self.G_ema = copy.deepcopy(self.G).eval()
        self.batch_size, self.z_dim = cfg.batch_size, cfg.z_dim
        self.ema_kimg, self.ema_rampup = ema_kimg, ema_rampup
        self.loss = StyleGAN2Loss(self.G, self.D, cfg, self.device)
        self.opt_G = lazy_adam(self.G.parameters(), cfg, cfg.pl_interval)
        self.opt_D = lazy_adam(self.D.parameters(), cfg, cfg.r1_interval)
        self.phases = [("Gmain", self.G, self.opt_G, 1), ("Greg", self.G, self.opt_G, cfg.pl_interval),
                       ("Dmain", self.D, self.opt_D, 1), ("Dreg", self.D, self.opt_D, cfg.r1_interval)]
        self.cur_nimg = 0
        self.batch_idx = 0
        self.last_phases: tuple[str, ...] = ()

    def step(self, batch: Mapping[str, torch.Tensor]) -> None:
        real_img = batch["image"]
        all_gen_z = torch.randn([len(self.phases) * self.batch_size, self.z_dim], device=self.device)
        all_gen_z = all_gen_z.split(self.batch_size)
        ran = []
        for (name, module, opt, interval), gen_z in zip(self.phases, all_gen_z):
            if self.batch_idx % interval != 0:
                continue
            opt.zero_grad(set_to_none=True)
            module.requires_grad_(True)
            self.loss.accumulate_gradients(name, real_img, gen_z, gain=interval)
            module.requires_grad_(False)
            for param in module.parameters():
                if param.grad is not None:
                    torch.nan_to_num(param.grad, nan=0, posinf=1e5, neginf=-1e5, out=param.grad)
            opt.step()
            ran.append(name)
        self.update_ema()
        self.cur_nimg += self.batch_size
        self.batch_idx += 1
        self.last_phases = tuple(ran)

    def update_ema(self) -> None:
        ema_nimg = self.ema_kimg * 1000
        if self.ema_rampup is not None:
            ema_nimg = min(ema_nimg, self.cur_nimg * self.ema_rampup)
        ema_beta = 0.5 ** (self.batch_size / max(ema_nimg, 1e-8))
        for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
            p_ema.copy_(p.lerp(p_ema, ema_beta))
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
            b_ema.copy_(b)
