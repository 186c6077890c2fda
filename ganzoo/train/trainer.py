"""The training loop: phases in order, EMA, logging, previews, checkpoints, resume.

It knows an architecture only through the plugin contract (ganzoo.api): which
networks to build, which phases train which networks with which optimizer, and
a loss per phase. Backward passes, precision, compilation and optimizer steps
happen here and nowhere else.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, ContextManager

import torch

from .. import __version__
from ..api import LossContext, Phase, label_distribution
from ..config import validate
from ..errors import UserError
from ..fileio import write_png
from ..sampling import grid
from ..signals import on_stop_signals
from . import checkpoint as ckpt
from .distributed import RefusedOnEveryRank, World, check_world_size
from .ema import ema_beta, make_ema, update_ema
from .engine import Engine
from .evaluation import TrainingEval
from .feed import make_feed
from .grad_switch import GradSwitch
from .host_reads import permitted
from .metrics_buffer import KEPT as _KEPT, MetricsBuffer, interval_values
from .nonfinite import SkipCounter, rollback_seed
from .loggers import DATA_WAIT, MetricsLog, Progress, drop_records_after


class TrainingDiverged(RefusedOnEveryRank):
    """A phase stayed non-finite for max_nonfinite consecutive runs (and no rollback is left to try).

    Every rank decides it from the same agreed counts, so the ranks leave the process group together
    (World.close waits for all): a rank destroying its gloo group while a peer still used it aborted both
    (SIGABRT, "terminate called without an active exception"), seen under load.
    """


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    checkpoint: Path | None
    sample: Path | None
    stopped_by: str | None = None  # the signal's name when interrupted


def check_phases(phases: list[Phase], nets: dict) -> None:
    """Every phase trains known networks; a phase without optimizer shares one with a main phase."""
    owners = {p.trains: p for p in phases if p.optimizer is not None}
    for phase in phases:
        unknown = [role for role in phase.trains if role not in nets]
        if unknown:
            raise ValueError(f"phase {phase.name!r} trains unknown networks {unknown}; built: {sorted(nets)}")
        if phase.optimizer is None and phase.trains not in owners:
            raise ValueError(f"phase {phase.name!r} has no optimizer and no main phase trains {phase.trains}")
        if phase.optimizer is not None and owners[phase.trains].optimizer != phase.optimizer:
            raise ValueError(f"phases training {phase.trains} declare different optimizers")


def _to_device(value, device):
    """Checkpointed plugin state (loaded on the CPU) back onto the run's device, containers included."""
    if torch.is_tensor(value):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_device(v, device) for v in value)
    return value


class _StopSignals:
    """Turns a stop signal (ganzoo.signals) into a flag: the loop finishes its step, checkpoints and returns.

    A second signal interrupts at once, for a step that hangs.
    """

    def __init__(self):
        self.received: str | None = None
        self._handling = on_stop_signals(self._handle)

    def __enter__(self):
        self._handling.__enter__()
        return self

    def _handle(self, name: str) -> None:
        if self.received:  # a second signal: stop now, without the checkpoint
            raise KeyboardInterrupt
        self.received = name

    def __exit__(self, *exc):
        return self._handling.__exit__(*exc)


@contextlib.contextmanager
def _eval_mode(nets: dict):
    """Networks in eval mode for a preview or an evaluation, each put back in the mode it was in."""
    modes = {role: m.training for role, m in nets.items()}
    for m in nets.values():
        m.eval()
    try:
        yield nets
    finally:
        for role, m in nets.items():
            m.train(modes[role])


class _Quiet:
    """Progress for ranks other than 0: they report nothing."""

    def update(self, step, scalars=None):
        pass

    def note(self, text):
        pass

    def rewind(self, step):
        pass

    def close(self):
        pass


class Trainer:
    """One run: build everything from (architecture, resolved config, dataset), then `run()`.

    ``world`` is this process's place under torchrun (ganzoo.train.distributed);
    every rank builds the same Trainer, computes its slice of each global batch,
    and rank 0 alone writes the run directory. ``init`` (ganzoo.train.initial_weights.InitSource)
    fills the networks from another run's weights before training or restoring.
    """

    def __init__(self, arch, resolved, dataset, run_dir: Path, resume: bool = False, world: World | None = None,
                 init=None, skip_bad_files: bool = False):
        self.arch, self.cfg, self.opts = arch, resolved.config, resolved.train
        self.world = world if world is not None else World()
        self.run_dir = Path(run_dir)
        self.device = self.world.device(self.opts.device)
        self.engine = Engine(self.device, self.opts, arch.name)
        # "auto" becomes the value it chose, so config.json records it and a resume keeps it (the measured
        # table may change with a later version; exact resume must not).
        self.opts = replace(self.opts, channels_last="on" if self.engine.channels_last else "off",
                            optimizer=self.engine.optimizer)
        check_world_size(arch, self.cfg, self.world.size)
        spec = arch.data_spec(self.cfg)
        self.feed = make_feed(dataset, self.cfg.batch_size, self.opts.seed, self.device, spec,
                              resident=self.opts.data_on_device == "auto", rank=self.world.rank,
                              world_size=self.world.size)
        self.cfg = arch.fit_to_data(self.cfg, len(self.feed))
        validate(arch, self.cfg, lambda key: "fit_to_data")
        if arch.data_spec(self.cfg) != spec:
            raise ValueError(f"{arch.name}.fit_to_data changed the data spec; it may only fix data-dependent settings")
        # A conditional run draws the labels of generated samples from the data's class frequencies.
        self.label_cdf = (label_distribution(dataset.labels, arch.num_classes(self.cfg), self.device)
                          if spec.labels else None)
        torch.manual_seed(self.opts.seed)
        built = arch.build(self.cfg)
        if self.opts.sync_batchnorm:
            from .sync_batchnorm import convert_sync_batchnorm

            built = {role: convert_sync_batchnorm(module) for role, module in built.items()}
        self.nets = {role: self.engine.place(module) for role, module in built.items()}
        self.world.broadcast_modules(self.nets.values())  # identical by seed already; made certain
        self.phases = arch.phases(self.cfg)
        check_phases(self.phases, self.nets)
        self.generators = arch.generators(self.cfg)
        ema_roles = sorted({g.role for g in self.generators.values()}) if self.opts.ema_kimg > 0 else []
        self.ema = {role: make_ema(self.nets[role]) for role in ema_roles}
        self.init_notes: list[str] = []  # what --init could not fill, for the user
        if init is not None:
            from .initial_weights import load_initial

            try:  # every rank loads the same file: a refusal (a mismatch, NaN weights) is one line from rank 0
                self.init_notes, refusal = load_initial(self.nets, self.ema, init), None
            except UserError as error:
                refusal = error
            self.world.agree(refusal)
        self.optimizers = self._make_optimizers()
        self.runnable = {role: self.engine.compiled(m) for role, m in self.nets.items()}
        self.grad_switch = GradSwitch(self.nets)  # which networks a phase trains, without walking them each time
        if self.opts.epochs > 0:  # a length in epochs becomes steps once the data's size is known
            self.opts = replace(self.opts, steps=math.ceil(self.opts.epochs * self.feed.steps_per_epoch))
        self.schedulers = self._make_schedulers()
        self.rng = torch.Generator(self.device).manual_seed(self.opts.seed)
        self.plugin_state: dict = {}  # LossContext.state: the architecture's tensors that outlive a step
        self.step = 0
        # Consecutive skipped runs per phase, counted on the device and read with the metrics (ganzoo.train.nonfinite).
        self.nonfinite = SkipCounter([phase.name for phase in self.phases], self.opts.max_nonfinite, self.device)
        self.rollbacks = 0  # rollbacks done (on_nonfinite=rollback)
        self.lr_factor = 1.0  # every optimizer's learning rate times this (rollback_lr_factor per rollback)
        self.resumed_from: Path | None = None  # the checkpoint a resume started from
        self.damaged_metrics = 0  # lines of metrics.jsonl a resume found damaged and dropped
        # Evaluation during training: the best score so far {"step", "value", "signature"}, kept in checkpoints.
        self.evaluator = (TrainingEval(arch, self.cfg, self.opts, resolved.data, self.device, self.sampling_nets(),
                                       skip_bad_files)
                          if self.opts.eval_every > 0 and self.world.is_writer else None)
        self.best: dict | None = None
        if self.world.is_writer:
            ckpt.clean_up(self.run_dir)  # what a killed run left half written or half deleted
        if resume:
            self._restore()
            if self.world.is_writer:
                self.damaged_metrics = drop_records_after(self.run_dir, self.step)
                self._restore_best_link()
        self.first_step = self.step
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}
        # Seconds the steps spent blocked in feed.next() (host time: read-ahead makes it near nil when the data
        # keeps up); each log record carries its interval's share of the wall time as data_wait.
        self.data_wait_s = 0.0
        self._interval_clock = (time.perf_counter(), 0.0)  # (wall time, data_wait_s) at the interval's start
        # Log points copy their metrics to the host without waiting; records complete when they land.
        self.landing = MetricsBuffer(self.device, agreed=self.world.distributed)
        # Each part of a step ("data", a phase's name, "ema") runs inside timing(part): a no-op
        # unless the benchmark installs a timer that synchronises and clocks it.
        self.timing: Callable[[str], ContextManager] = lambda part: contextlib.nullcontext()

    # -- setup ---------------------------------------------------------------------------

    def _make_optimizers(self) -> dict[tuple[str, ...], tuple[torch.optim.Optimizer, object]]:
        out = {}
        for phase in self.phases:
            if phase.optimizer is None or phase.trains in out:
                continue
            spec = phase.optimizer
            params = [p for role in phase.trains for p in self.nets[role].parameters()]
            out[phase.trains] = (self.engine.adam(params, spec.lr, spec.betas, spec.eps, spec.weight_decay), spec)
        return out

    def _make_schedulers(self) -> dict[tuple[str, ...], torch.optim.lr_scheduler.LambdaLR]:
        """A LambdaLR per optimizer whose Adam has a schedule; it steps once per training step.

        The factor reads the run's current length, so a resume with more --steps
        stretches the schedule as the reference does when epochs are added.
        """
        out = {}
        for key, (opt, spec) in self.optimizers.items():
            if spec.schedule is not None:
                out[key] = torch.optim.lr_scheduler.LambdaLR(
                    opt, lambda step, schedule=spec.schedule: schedule(step, self.opts.steps))
        return out

    def _state(self) -> dict:
        """The trainer's state; with several ranks, every rank's global RNG states too (a collective)."""
        rng = {"loss": self.rng.get_state(), "torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        if self.world.distributed:  # the shared generators are identical everywhere; the global ones may not be
            rng["ranks"] = self.world.all_objects({k: v for k, v in rng.items() if k != "loss"})
        counts, reached = self.nonfinite.state_dict()
        return {
            "step": self.step,
            "optimizers": {"+".join(k): opt.state_dict() for k, (opt, _) in self.optimizers.items()},
            "schedulers": {"+".join(k): scheduler.state_dict() for k, scheduler in self.schedulers.items()},
            "scaler": self.engine.scaler.state_dict(),
            "rng": rng,
            "data": self.feed.state_dict(),
            "nonfinite": counts,
            "nonfinite_reached": reached,
            "rollbacks": self.rollbacks,
            "lr_factor": self.lr_factor,
            "plugin": self.plugin_state,
            **({"best": self.best} if self.best is not None else {}),
        }

    def _restore(self) -> None:
        """Everything from the newest intact checkpoint; newer damaged ones are named on stderr and skipped.

        A run killed before its first checkpoint has none: it starts again from step 0 with its recorded config.
        """
        found = ckpt.newest_intact(self.run_dir) if self.world.is_writer else None
        source, damaged = self.world.broadcast(found)  # every rank resumes from the checkpoint rank 0 chose
        if source is None:
            return
        if ckpt.is_weights_only(source):
            raise UserError(ckpt.NO_TRAINER_STATE.format(arch=self.arch.name, run_dir=self.run_dir))
        if self.world.is_writer:
            ckpt.report(ckpt.fallback_warnings(source, damaged))
        self.resumed_from = source
        self._load(source)

    def _load(self, source: Path, rollback: bool = False) -> None:
        """Networks, optimizers and the trainer's state from the checkpoint ``source``.

        A resume takes the rollback count and learning-rate factor from it; a
        rollback keeps its own (already advanced) ones. Either way the learning
        rates are rescaled from the checkpoint's factor to the run's.
        """
        weights = ckpt.load_networks(source)
        state = ckpt.load_trainer_state(source)
        # Never continue from NaN or inf (networks, EMA, optimizer moments, plugin state): every rank finds the
        # same in the same file, and rank 0 says so in one line, naming the newest checkpoint that is finite.
        bad = ckpt.nonfinite_in(source, weights, state)
        self.world.agree(None if bad is None else
                         ckpt.start_refusal(bad, source, self.run_dir if self.world.is_writer else None))
        ckpt.load_into(self.nets, weights, source)
        ckpt.load_into({f"{role}_ema": module for role, module in self.ema.items()}, weights, source)
        for key, (opt, _) in self.optimizers.items():
            name = "+".join(key)
            with ckpt.restoring(source, f"optimizers/{name}"):
                opt.load_state_dict(state["optimizers"][name])
        with ckpt.restoring(source, "scaler"):
            if state["scaler"]:
                self.engine.scaler.load_state_dict(state["scaler"])
        with ckpt.restoring(source, "rng"):
            self.rng.set_state(state["rng"]["loss"])
            mine = self._rank_rng(state["rng"])
            torch.set_rng_state(mine["torch"])
            if "cuda" in mine and self.device.type == "cuda":
                torch.cuda.set_rng_state(mine["cuda"], self.device)
        with ckpt.restoring(source, "data"):
            self.feed.load_state_dict(state["data"])
        self.step = int(state["step"])
        with ckpt.restoring(source, "schedulers"):
            self._restore_schedulers(state.get("schedulers"))
        self.nonfinite.reset()
        self.nonfinite.load_state_dict(state["nonfinite"], state.get("nonfinite_reached"))
        saved_factor = float(state.get("lr_factor", 1.0))
        if not rollback:
            self.rollbacks, self.lr_factor = int(state.get("rollbacks", 0)), saved_factor
        self._scale_lr(self.lr_factor / saved_factor)
        with ckpt.restoring(source, "plugin"):
            if rollback:
                self.plugin_state.clear()
            self.plugin_state.update(_to_device(state.get("plugin", {}), self.device))
        self.best = state.get("best")

    def _scale_lr(self, ratio: float) -> None:
        """Every optimizer's learning rate times ``ratio``, its schedule's base included (schedules apply on top)."""
        if ratio == 1.0:
            return
        for key, (opt, _) in self.optimizers.items():
            for group in opt.param_groups:
                group["lr"] *= ratio
                if "initial_lr" in group:
                    group["initial_lr"] *= ratio
            if key in self.schedulers:
                self.schedulers[key].base_lrs = [lr * ratio for lr in self.schedulers[key].base_lrs]

    def _rank_rng(self, rng: dict) -> dict:
        """This rank's global RNG states: its own entry of a checkpoint written by as many ranks.

        A checkpoint from another number of processes (or from one) gives every
        rank rank 0's states: the run continues, but not bit for bit as it would have.
        """
        ranks = rng.get("ranks")
        if ranks is not None and len(ranks) == self.world.size:
            return ranks[self.world.rank]
        return rng

    def _restore_best_link(self) -> None:
        """checkpoints/best as the restored state says (steps after the checkpoint resumed from never happened).

        A best measured otherwise (another metric, n, seed or extractor) is not
        comparable: ranking starts afresh, and says so.
        """
        notes = []
        if self.best is not None and self.evaluator is not None and self.best["signature"] != self.evaluator.signature():
            notes.append(f"the best checkpoint so far (step {self.best['step']}) was ranked by another evaluation "
                         f"setting; ranking starts afresh with {self.evaluator.key}")
            self.best = None
        folder = self.run_dir / "checkpoints" / f"step-{self.best['step']:07d}" if self.best is not None else None
        if folder is not None and ckpt.problem(folder) is not None:
            notes.append(f"the best checkpoint so far, {folder}, is gone or damaged; ranking starts afresh")
            self.best, folder = None, None
        ckpt.report(f"warning: {note}" for note in notes)
        ckpt.mark_best(self.run_dir, ckpt.step_of(folder) if folder is not None else None)

    def _restore_schedulers(self, saved: dict | None) -> None:
        """Scheduler states, then this step's lr for the run's length now (--steps may have changed it).

        Checkpoints written before the schedules became LambdaLRs hold no
        scheduler state; the step alone determines it.
        """
        for key, scheduler in self.schedulers.items():
            if saved is not None:
                scheduler.load_state_dict(saved["+".join(key)])
            else:
                scheduler.last_epoch = self.step
            with warnings.catch_warnings():  # get_lr() outside step() warns; here it is what we want
                warnings.simplefilter("ignore", UserWarning)
                lrs = scheduler.get_lr()
            for group, lr in zip(self.optimizers[key][0].param_groups, lrs):
                group["lr"] = lr

    # -- one step ------------------------------------------------------------------------

    def _log(self, name: str, value) -> None:
        # A plain number becomes a device tensor by a fill: a copy from the host would wait for the device.
        value = value.detach().float() if torch.is_tensor(value) else torch.full((), float(value), device=self.device)
        self._sums[name] = self._sums[name] + value if name in self._sums else value.clone()
        self._counts[name] = self._counts.get(name, 0) + 1

    def _add(self, name: str, value: torch.Tensor) -> None:
        self._sums[name] = self._sums[name] + value if name in self._sums else value.clone()

    def _log_phase(self, name: str, loss: torch.Tensor, found: torch.Tensor) -> None:
        """The phase's mean finite loss and its skipped steps, without reading the device.

        A loss is kept where it is finite on this rank (an fp16 step the scaler skips for overflowing
        gradients still has one); sums and counts are both averaged over the ranks at log time, so the
        mean is over every rank's finite losses.
        """
        loss = loss.detach().float().reshape(())
        finite = torch.isfinite(loss)
        self._add(f"loss/{name}", torch.where(finite, loss, 0.0))
        self._add(f"{_KEPT}{name}", finite.float())
        self._add(f"nonfinite/{name}", found)

    def _run_phase(self, phase: Phase, batch: dict, ctx: LossContext) -> None:
        opt, _ = self.optimizers[phase.trains]
        self.grad_switch.train_only(phase.trains)
        opt.zero_grad(set_to_none=True)
        nets = self.nets if phase.eager else self.runnable
        with self.engine.autocast(eager=phase.eager):
            loss = self.arch.loss(phase, nets, batch, ctx)
        # Backward always runs and the step is skipped on the device when anything is non-finite: no host
        # sync here, and every rank decides from the same averaged gradients (ganzoo.train.nonfinite).
        reduce = None
        if self.world.distributed:
            params = [p for group in opt.param_groups for p in group["params"]]
            reduce = lambda flag: self.world.average_gradients(params, flag)  # noqa: E731
        found = self.engine.backward_and_step(loss, opt, phase.eager, reduce=reduce)
        self.nonfinite.add(phase.name, found, self.step)
        self._log_phase(phase.name, loss, found)

    def train_step(self) -> None:
        with self.timing("data"):
            started = time.perf_counter()
            raw = self.feed.next()
            self.data_wait_s += time.perf_counter() - started
            batch = {k: self.engine.place_images(v) for k, v in raw.items()}
        ctx = LossContext(cfg=self.cfg, device=self.device, generator=self.rng, step=self.step,
                          total_steps=self.opts.steps, log=self._log, state=self.plugin_state,
                          rank=self.world.rank, world_size=self.world.size, gather=self.world.gather,
                          label_cdf=self.label_cdf)
        for phase in self.phases:
            if self.step % phase.interval == 0:
                with self.timing(phase.name):
                    self._run_phase(phase, batch, ctx)
        self.grad_switch.all_on()
        for scheduler in self.schedulers.values():
            scheduler.step()
        self.world.average_buffers(self.nets.values())  # buffers a forward moved by its rank's slice alone
        self.step += 1
        if self.ema:
            images_seen = self.step * self.cfg.batch_size
            beta = ema_beta(self.cfg.batch_size, images_seen, self.opts.ema_kimg, self.opts.ema_rampup)
            with self.timing("ema"):
                for role, ema in self.ema.items():
                    update_ema(ema, self.nets[role], beta)

    # -- outputs -------------------------------------------------------------------------

    def sampling_nets(self) -> dict:
        return {**self.nets, **self.ema}

    def save_preview(self) -> Path:
        """A grid from a fixed latent (the run's seed) and a fixed batch of real images, by the EMA generators."""
        with permitted("preview"):
            return self._save_preview()

    def _save_preview(self) -> Path:
        real = {k: self.engine.place_images(v) for k, v in self.feed.fixed_batch(self.opts.sample_n).items()}
        with _eval_mode(self.sampling_nets()) as nets:
            images, nrow = self.arch.preview(nets, self.cfg, self.opts.sample_n, self.opts.seed, self.device,
                                             real=real)
        path = self.run_dir / "samples" / f"step-{self.step:07d}.png"
        write_png(path, grid(images, nrow))
        return path

    def save_checkpoint(self) -> Path | None:
        """Every rank calls this (the state gathers every rank's RNG); rank 0 writes and returns the folder."""
        with permitted("checkpoint"):
            return self._save_checkpoint()

    def _save_checkpoint(self) -> Path | None:
        state = self._state()
        if not self.world.is_writer:
            return None
        nets = {**self.nets, **{f"{role}_ema": m for role, m in self.ema.items()}}
        meta = {"ganzoo_version": __version__, "architecture": self.arch.name, "step": str(self.step)}
        return ckpt.save_checkpoint(self.run_dir, self.step, nets, state, meta, self.opts.keep_checkpoints)

    def evaluate(self, progress: Progress | None = None) -> bool:
        """Score the EMA generators, log it, and keep it as the best if it is; returns whether it is."""
        with _eval_mode(self.sampling_nets()), permitted("evaluation"):
            score, record = self.evaluator.measure()
        self.metrics.write({"step": self.step, **record})
        improved = self.best is None or self.evaluator.better(score, self.best["value"])
        previous = self.best
        if improved:
            self.best = {"step": self.step, "value": float(score), "signature": self.evaluator.signature()}
        if progress is not None:
            standing = ("best so far" if improved and previous is None else
                        f"best so far; was {previous['value']:.4g} at step {previous['step']}" if improved else
                        f"best {self.best['value']:.4g} at step {self.best['step']}")
            progress.note(f"eval at step {self.step}: {self.evaluator.key} {score:.4g} ({standing})")
        return improved

    def _new_interval(self) -> tuple[object, int]:
        """(the landing mark, the step) where a log interval starts; its host clock and data wait start too."""
        self._interval_clock = (time.perf_counter(), self.data_wait_s)
        return self.landing.mark(), self.step

    def _data_wait(self) -> float:
        """The share of the interval's wall time (on this host) the steps spent blocked in feed.next()."""
        started, waited = self._interval_clock
        return min(1.0, max(0.0, (self.data_wait_s - waited) / max(time.perf_counter() - started, 1e-9)))

    def _submit_metrics(self, start, first_step: int) -> None:
        """The interval's sums (averaged over the ranks: one all-reduce) and the skip counts, on their way to
        the host as one tensor; nothing is read here (ganzoo.train.metrics_buffer).

        Each rank's sum covers its equal slice of every batch, so the mean over ranks of its mean is the
        global batch's mean; non-finite counts are agreed, hence equal on every rank.
        """
        names = sorted(self._sums)
        sums = (torch.stack([self._sums[k].to(self.device).float().reshape(()) for k in names]) if names
                else torch.zeros(0, device=self.device))
        if self.world.distributed and names:
            sums = self.world.sum(sums) / self.world.size
        values = torch.cat([sums.double(), self.nonfinite.stacked().double()])
        self.landing.submit(values, names, self._counts, start, self.step, self.step - first_step,
                            host={DATA_WAIT: self._data_wait()})
        self._sums, self._counts = {}, {}

    def _complete_metrics(self, landed) -> tuple[tuple | None, dict | None]:
        """Write the records that landed; (the first divergence they show, the newest loss scalars)."""
        scalars = None
        for interval in landed:
            values = interval_values(interval)
            if self.world.is_writer:
                self.metrics.write({"step": interval.step, "kimg": interval.step * self.cfg.batch_size / 1000,
                                    "sec_per_step": interval.seconds / max(interval.steps, 1),
                                    "images_per_sec": interval.steps * self.cfg.batch_size / interval.seconds,
                                    **interval.host, **values})
            scalars = {**{k: v for k, v in values.items() if k.startswith("loss/")}, **interval.host}
            diverged = self.nonfinite.decide(interval.extra)
            if diverged is not None:
                return diverged, scalars
        return None, scalars

    # -- the loop ------------------------------------------------------------------------

    def _stop_agreed(self, stop: _StopSignals) -> str | None:
        """The stop signal's name on every rank if any rank received one (one tiny all-reduce per step)."""
        if not self.world.distributed:
            return stop.received
        if not self.world.any(stop.received is not None):
            return None
        return next(name for name in self.world.all_objects(stop.received) if name is not None)

    def _check_ranks_identical(self) -> None:
        """Test hook (GANZOO_CHECK_RANKS=1): fail loudly unless every rank holds the same weights now."""
        from .distributed import weights_differ

        differ = weights_differ(self.world, {**self.nets, **{f"{r}_ema": m for r, m in self.ema.items()}})
        if differ:
            raise RuntimeError(f"rank {self.world.rank}: weights differ between ranks after step {self.step}: "
                               f"{', '.join(differ[:5])}")

    def _on_divergence(self, diverged, progress=None, rollback: bool = True) -> bool:
        """Apply on_nonfinite to a divergence (phase, step, skips) found at a log point; True if it rolled back.

        stop (or no rollback left, or no checkpoint yet) raises TrainingDiverged naming the step and the last
        good checkpoint. rollback reloads the newest intact checkpoint whose weights are finite (rank 0 chooses
        it for every rank),
        reseeds the loss generator from (seed, rollbacks) and multiplies the learning rates by
        rollback_lr_factor.
        """
        if diverged is None:
            return False
        with permitted("rollback"):  # a rollback reloads a checkpoint; a stop ends the run
            return self._diverged(diverged, progress, rollback)

    def _diverged(self, diverged, progress, rollback: bool) -> bool:
        phase, reached, skips = diverged
        # Only a checkpoint whose weights are finite is good to return to (or to name as the last good one).
        source = self.world.broadcast(ckpt.newest_finite(self.run_dir) if self.world.is_writer else None)
        what = (f"the loss of phase {phase!r} was not finite for {self.opts.max_nonfinite} consecutive runs of "
                f"it, at step {reached}")
        policy = self.opts.on_nonfinite
        if policy != "rollback" or not rollback or source is None or self.rollbacks >= self.opts.max_rollbacks:
            why = ("" if policy != "rollback" else
                   f" after {self.rollbacks} rollback(s), the most max_rollbacks allows" if source is not None else
                   " and there is no checkpoint with finite weights to roll back to")
            written = source is None and bool(ckpt.checkpoint_dirs(self.run_dir))  # all of them NaN or inf
            last = (f"the last good checkpoint is {source}" if source is not None else
                    "no checkpoint with finite weights was written" if written else "no checkpoint was written yet")
            error = TrainingDiverged(f"training diverged: {what}{why}; {last} (try a lower lr or fp32)")
            error.quiet = not self.world.is_writer  # every rank stops here alike; rank 0 alone says so
            self.world.barrier()  # no rank leaves the group while another still talks to it
            raise error
        left_at = self.step
        self.rollbacks += 1
        self.lr_factor *= self.opts.rollback_lr_factor
        self._load(source, rollback=True)
        self.rng.manual_seed(rollback_seed(self.opts.seed, self.rollbacks))
        if self.world.is_writer:
            self.metrics.write({"step": self.step, "rollback": self.rollbacks, "rollback/from_step": left_at,
                                "rollback/nonfinite_step": reached, "lr_factor": self.lr_factor})
        if progress is not None:
            progress.rewind(self.step)
            progress.note(f"rollback {self.rollbacks}/{self.opts.max_rollbacks}: {what}; back to {source} "
                          f"(step {self.step}), learning rates x{self.lr_factor:g}, loss generator reseeded")
        return True

    def run(self, until: int | None = None) -> TrainResult:
        """Train until step `until` (default opts.steps) or a signal; leaves a checkpoint and a preview.

        With several ranks, rank 0 alone writes (metrics, previews, checkpoints, evaluation), and all
        ranks stop at the same step.
        """
        import os

        opts = self.opts
        writer = self.world.is_writer
        check_ranks = self.world.distributed and os.environ.get("GANZOO_CHECK_RANKS") == "1"
        until = opts.steps if until is None else min(until, opts.steps)
        self.metrics = MetricsLog(self.run_dir) if writer else None
        progress = Progress(until, self.step) if writer else _Quiet()
        checkpoint = sample = None
        stopped_by = None
        with _StopSignals() as stop, self.engine.numerics():
            try:
                if self.step == 0 and writer:
                    sample = self.save_preview()
                interval_start, interval_step = self._new_interval()
                while self.step < until and not (stopped_by := self._stop_agreed(stop)):
                    self.train_step()
                    if check_ranks:
                        self._check_ranks_identical()
                    log_due = self.step % opts.log_every == 0 or self.step == until
                    checkpoint_due = self.step % opts.checkpoint_every == 0
                    if log_due:
                        self._submit_metrics(interval_start, interval_step)
                        interval_start, interval_step = self._new_interval()
                    # Records (and the skips they carry) complete when their copy has landed, and all of them
                    # before a checkpoint, so a checkpoint is never written after a divergence: it stays a good one.
                    diverged, scalars = self._complete_metrics(self.landing.ready(force=checkpoint_due,
                                                                                  log_point=log_due))
                    if diverged is None and checkpoint_due and not log_due:
                        with permitted("checkpoint"):
                            diverged = self.nonfinite.diverged()
                    if self._on_divergence(diverged, progress):
                        self._sums, self._counts = {}, {}
                        self.landing.clear()
                        interval_start, interval_step = self._new_interval()
                        continue  # rolled back to an earlier step
                    progress.update(self.step, scalars)
                    if self.step % opts.sample_every == 0 and writer:
                        sample = self.save_preview()
                    due = opts.eval_every > 0 and (self.step % opts.eval_every == 0 or self.step == opts.steps)
                    improved = due and self.world.broadcast(self.evaluate(progress) if writer else None)
                    if checkpoint_due or improved:
                        checkpoint = self.save_checkpoint()
                    if improved and writer:  # the checkpoint holds the new best in its state; now the link follows
                        ckpt.mark_best(self.run_dir, self.step)
                        ckpt.prune(self.run_dir, opts.keep_checkpoints, self.step)
                if self._sums:  # stopped between log points: keep what was measured
                    self._submit_metrics(interval_start, interval_step)
                diverged, _ = self._complete_metrics(self.landing.ready(force=True))
                self._on_divergence(diverged, rollback=False)
            finally:
                self.feed.close()  # the read-ahead thread ends with the loop, however it ends
                progress.close()
                if self.metrics is not None:
                    self.metrics.close()
            if writer:
                latest = ckpt.latest_checkpoint(self.run_dir)
                saved = latest is not None and latest.name == f"step-{self.step:07d}"
            if not self.world.broadcast(saved if writer else None):
                checkpoint = self.save_checkpoint()
            elif writer:
                checkpoint = latest
            if writer and (sample is None or sample.name != f"step-{self.step:07d}.png"):
                sample = self.save_preview()
        return TrainResult(self.run_dir, self.step, checkpoint, sample,
                           stopped_by if self.world.distributed else stop.received)
