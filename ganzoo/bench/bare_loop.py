"""The trainer's computation with nothing around it: the floor its per-step host cost is measured against.

`ganzoo bench --host-overhead` times the Trainer beside this loop. It builds
what the Trainer builds, the same way (seed, ``fit_to_data``, ``Engine``
placement and compilation, ``Engine.adam``, ``make_feed``, the LossContext and
its generator, the lr schedules), and per step runs each due phase as the
algorithm needs it: requires_grad toggles, zero_grad, autocast, the
architecture's loss, backward, the optimizer step (through the GradScaler under
fp16), then the schedulers. What it leaves out is what the Trainer adds on top:
the non-finite guard and skip counters, loss sums for logging, the EMA, timing
hooks, buffer averaging across ranks. With the EMA off it computes bitwise what
the Trainer computes (tests/test_bench_overhead.py), so the two are like for like.
It knows an architecture only through the plugin contract.
"""

from __future__ import annotations

import math

import torch

from .. import config
from ..api import LossContext
from ..train.engine import Engine, pick_device
from ..train.feed import make_feed
from ..train.grad_switch import GradSwitch


def _no_log(name: str, value) -> None:
    pass


class BareLoop:
    """One process's training loop over ``dataset`` for a resolved config (config.resolve), nothing else."""

    def __init__(self, arch, resolved, dataset):
        self.arch, self.cfg, self.opts = arch, resolved.config, resolved.train
        self.device = pick_device(self.opts.device)
        self.engine = Engine(self.device, self.opts, arch.name)  # "auto" settings chosen as the Trainer's
        spec = arch.data_spec(self.cfg)
        self.feed = make_feed(dataset, self.cfg.batch_size, self.opts.seed, self.device, spec,
                              resident=self.opts.data_on_device == "auto")
        self.cfg = arch.fit_to_data(self.cfg, len(self.feed))
        config.validate(arch, self.cfg, lambda key: "fit_to_data")
        torch.manual_seed(self.opts.seed)
        self.nets = {role: self.engine.place(module) for role, module in arch.build(self.cfg).items()}
        self.runnable = {role: self.engine.compiled(m) for role, m in self.nets.items()}
        self.grad_switch = GradSwitch(self.nets)  # the Trainer's own toggles (the cheapest there are)
        self.phases = arch.phases(self.cfg)
        self.optimizers, schedules = {}, {}
        for phase in self.phases:
            if phase.optimizer is not None and phase.trains not in self.optimizers:
                spec_ = phase.optimizer
                params = [p for role in phase.trains for p in self.nets[role].parameters()]
                self.optimizers[phase.trains] = self.engine.adam(params, spec_.lr, spec_.betas, spec_.eps,
                                                                 spec_.weight_decay)
                schedules[phase.trains] = spec_.schedule
        steps = self.opts.steps
        if self.opts.epochs > 0:
            steps = math.ceil(self.opts.epochs * self.feed.steps_per_epoch)
        self.total_steps = steps
        self.schedulers = [torch.optim.lr_scheduler.LambdaLR(self.optimizers[key],
                                                             lambda step, s=schedule: s(step, steps))
                           for key, schedule in schedules.items() if schedule is not None]
        self.rng = torch.Generator(self.device).manual_seed(self.opts.seed)
        self.plugin_state: dict = {}
        self.step = 0

    def train_step(self) -> None:
        batch = {k: self.engine.place_images(v) for k, v in self.feed.next().items()}
        ctx = LossContext(cfg=self.cfg, device=self.device, generator=self.rng, step=self.step,
                          total_steps=self.total_steps, log=_no_log, state=self.plugin_state)
        scaler = self.engine.scaler
        for phase in self.phases:
            if self.step % phase.interval:
                continue
            opt = self.optimizers[phase.trains]
            self.grad_switch.train_only(phase.trains)
            opt.zero_grad(set_to_none=True)
            with self.engine.autocast(eager=phase.eager):
                loss = self.arch.loss(phase, self.nets if phase.eager else self.runnable, batch, ctx)
            if scaler.is_enabled() and not phase.eager:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
        for scheduler in self.schedulers:
            scheduler.step()
        self.step += 1
