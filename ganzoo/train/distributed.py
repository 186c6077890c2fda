"""The process group torchrun describes, and the few collectives the trainer needs.

torchrun (torch.distributed.run) starts one process per rank and tells each
its place through the environment: RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR
and MASTER_PORT. :func:`World.from_env` joins that group when WORLD_SIZE > 1
(gloo for CPU tensors, NCCL for CUDA tensors where CUDA exists) and is a plain
one-process World otherwise: then every method below is the identity and
torch.distributed is never imported.

Gradients are averaged with ONE flat all-reduce per phase (flatten, all-reduce,
divide, copy back), as NVlabs' StyleGAN3 training loop does, rather than with
DDP: phases train different networks, and R1 / path-length penalties take a
double backward that DDP's hooks do not follow.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Iterable

import torch

from ..errors import UserError

# The variables torchrun sets for every rank; WORLD_SIZE > 1 means "several processes".
ENV_KEYS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def env_world_size() -> int:
    """WORLD_SIZE from torchrun's environment (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def check_world_size(arch, cfg, world_size: int) -> None:
    """The global batch splits evenly over the ranks, and the architecture accepts the split."""
    check_batch_size(cfg.batch_size, world_size)
    if world_size > 1:
        arch.validate_world_size(cfg, world_size)


def check_batch_size(batch_size: int, world_size: int) -> None:
    """The global batch must split evenly over the ranks: each takes batch_size / world_size samples."""
    if world_size > 1 and batch_size % world_size:
        below = batch_size // world_size * world_size
        above = below + world_size
        nearest = f"{below} or {above}" if below > 0 else f"{above}"
        raise UserError(f"batch_size {batch_size} is the global batch and must divide evenly over the "
                        f"{world_size} processes; use a multiple of {world_size} such as {nearest}")


class RefusedOnEveryRank(UserError):
    """A UserError every rank has agreed to stop on (World.agree): the ranks may leave the group together."""


def _attempt_store(size: int, timeout) -> Any:
    """The store this attempt's process group meets in, or None for torchrun's default (env://).

    With its c10d rendezvous, torchrun hands the workers the store its agent
    hosts for the whole job, unprefixed (TORCHELASTIC_USE_AGENT_STORE=True).
    After a restart (--max-restarts) the new ranks would read the dead ranks'
    gloo/NCCL addresses from it and fail to connect (pytorch/pytorch#135712,
    #167288). On one node the restart count names each attempt for every rank
    alike, so the group meets under its own prefix. Across nodes the agents
    count restarts separately: there torch's own opt-out, a fresh store per
    attempt, is required.
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True" or int(
            os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0") or 0) == 0:
        return None
    if int(os.environ.get("GROUP_WORLD_SIZE", "1") or 1) > 1:
        raise UserError("torchrun --max-restarts across several nodes reuses one store for every attempt, so a "
                        "restarted job cannot connect: set TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 in torchrun's "
                        "environment on every node (or leave out --max-restarts)")
    import torch.distributed as dist

    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size=size,
                          is_master=False, timeout=timeout)
    return dist.PrefixStore(f"ganzoo/attempt-{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)


@dataclass
class World:
    """This process's place among the ranks of a run (one process: rank 0 of 1)."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1
    backend: str | None = None
    _closed: bool = field(default=False, repr=False)

    @classmethod
    def from_env(cls) -> "World":
        """Join torchrun's process group when WORLD_SIZE > 1; otherwise the one-process World."""
        size = env_world_size()
        if size <= 1:
            return cls()
        import datetime

        import torch.distributed as dist

        missing = [key for key in ENV_KEYS if key not in os.environ]
        if missing:
            raise UserError(f"WORLD_SIZE={size} but {', '.join(missing)} not set: start several processes with "
                            f"torchrun (or ganzoo train --nproc-per-node N)")
        rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
        # Collectives dispatch on the tensor's device: gloo for CPU tensors, NCCL for CUDA tensors.
        backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"
        if "nccl" in backend:
            torch.cuda.set_device(local_rank % torch.cuda.device_count())
        timeout = datetime.timedelta(minutes=float(os.environ.get("GANZOO_DIST_TIMEOUT_MIN", "30")))
        if not dist.is_initialized():
            dist.init_process_group(backend=backend, rank=rank, world_size=size, timeout=timeout,
                                    store=_attempt_store(size, timeout))
        return cls(rank=rank, local_rank=local_rank, size=size, backend=backend)

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_writer(self) -> bool:
        """Rank 0 alone writes the run directory."""
        return self.rank == 0

    def device(self, name: str) -> torch.device:
        """This rank's device for --device ``name``: cuda:LOCAL_RANK for cuda/auto with CUDA, else the CPU."""
        from .engine import pick_device

        if not self.distributed:
            return pick_device(name)
        if name == "cpu":
            return torch.device("cpu")
        if name in ("auto", "cuda") and torch.cuda.is_available():
            return torch.device("cuda", self.local_rank % torch.cuda.device_count())
        if name == "auto":
            return torch.device("cpu")
        raise UserError(f"device {name!r} cannot be shared by {self.size} processes: use --device cuda (each rank "
                        f"takes cuda:LOCAL_RANK), auto or cpu")

    # -- collectives (each is the identity with one process) -----------------------------

    def _tensor_device(self) -> torch.device:
        return torch.device("cuda", torch.cuda.current_device()) if "nccl" in (self.backend or "") else torch.device("cpu")

    def average_gradients(self, params: Iterable[torch.Tensor], flag: torch.Tensor | None = None):
        """Replace each parameter's gradient by its mean over the ranks, in one flat all-reduce.

        Parameters without a gradient are left alone: every rank runs the same
        code, so the same ones have none everywhere. ``flag`` (a 0-d tensor, this
        rank's non-finite-loss flag) rides in the same all-reduce; its mean over
        the ranks is returned (> 0 on every rank if it was on any), or None without one.
        """
        if not self.distributed:
            return flag
        import torch.distributed as dist

        grads = [p.grad for p in params if p.grad is not None]
        if not grads and flag is None:
            return None
        parts = [g.reshape(-1) for g in grads]
        if flag is not None:
            dtype = grads[0].dtype if grads else torch.float32
            device = grads[0].device if grads else flag.device
            parts.append(flag.detach().reshape(1).to(device=device, dtype=dtype))
        flat = torch.cat(parts)
        dist.all_reduce(flat)
        flat.div_(self.size)
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()
        return flat[offset].to(flag.dtype) if flag is not None else None

    def average_buffers(self, modules: Iterable[torch.nn.Module]) -> None:
        """Floating-point buffers (StyleGAN's w_avg, per-rank batch-norm statistics) to their mean over the ranks.

        A buffer a forward pass moves towards its batch's mean (an EMA of it) moves
        towards the global batch's mean once averaged; identical buffers stay as they are.
        One flat all-reduce, once per step.
        """
        if not self.distributed:
            return
        import torch.distributed as dist

        buffers = [b for m in modules for b in m.buffers() if b.is_floating_point()]
        if not buffers:
            return
        flat = torch.cat([b.reshape(-1).float() for b in buffers])
        dist.all_reduce(flat)
        flat.div_(self.size)
        offset = 0
        for b in buffers:
            b.copy_(flat[offset:offset + b.numel()].view_as(b))
            offset += b.numel()

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """The elementwise sum of ``t`` over the ranks (a new tensor)."""
        if not self.distributed:
            return t
        import torch.distributed as dist

        out = t.detach().clone()
        dist.all_reduce(out)
        return out

    def gather(self, t: torch.Tensor) -> torch.Tensor:
        """The global batch of a per-sample tensor: every rank's rows in rank order (not differentiable)."""
        if not self.distributed:
            return t
        import torch.distributed as dist

        t = t.detach().contiguous()
        parts = [torch.empty_like(t) for _ in range(self.size)]
        dist.all_gather(parts, t)
        return torch.cat(parts)

    def any(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on any rank (a stop signal)."""
        if not self.distributed:
            return bool(flag)
        import torch.distributed as dist

        t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=self._tensor_device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (a small picklable value: a run directory's name, a decision)."""
        if not self.distributed:
            return obj
        import torch.distributed as dist

        box = [obj if self.rank == 0 else None]
        dist.broadcast_object_list(box, src=0, device=self._tensor_device())
        return box[0]

    def agree(self, error: UserError | None) -> None:
        """Stop every rank if any rank was refused: rank 0 reports the refusal, the others exit 1 in silence.

        Each rank hands in the UserError its check raised, or None; every rank
        must call this at the same point. So a refusal seen by one rank (a data
        change rank 0 alone checks, data missing on one machine) ends the job
        with one ``Error:`` line from rank 0, naming the rank when it is
        another, instead of ranks left waiting in a collective and tracebacks.
        With one process: ``error`` is raised as it is.
        """
        if not self.distributed:
            if error is not None:
                raise error
            return
        messages = self.all_objects(None if error is None else str(error))
        refused = [(rank, message) for rank, message in enumerate(messages) if message is not None]
        if not refused:
            return
        rank, message = refused[0]
        if not self.is_writer:
            raise SystemExit(1)
        raise RefusedOnEveryRank(message if rank == 0 else f"rank {rank}: {message}")

    def all_objects(self, obj: Any) -> list:
        """Every rank's ``obj``, in rank order, on every rank (per-rank RNG states for a checkpoint)."""
        if not self.distributed:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_modules(self, modules: Iterable[torch.nn.Module]) -> None:
        """Rank 0's parameters and buffers on every rank, so training starts from identical weights."""
        if not self.distributed:
            return
        import torch.distributed as dist

        with torch.no_grad():
            for module in modules:
                for t in [*module.parameters(), *module.buffers()]:
                    dense = t.data.contiguous()
                    dist.broadcast(dense, src=0)
                    if dense.data_ptr() != t.data.data_ptr():
                        t.data.copy_(dense)

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def close(self, wait: bool = True) -> None:
        """Leave the process group (once); a one-process World has nothing to close.

        ``wait``: first wait for every rank to get here (rank 0 may still be writing), since gloo
        aborts a process whose group is destroyed while a peer still talks to it. A failing rank
        does not wait: torchrun stops the others.
        """
        if self.distributed and not self._closed:
            import torch.distributed as dist

            self._closed = True
            if dist.is_initialized():
                if wait:
                    dist.barrier()
                    _leave_together(dist, self.rank, self.size)
                dist.destroy_process_group()


def _leave_together(dist, rank: int, size: int) -> None:
    """Past the barrier, meet once more in the store, not in gloo: a rank returns from gloo's barrier as soon as
    its own messages are sent, and destroying its group then closed the sockets under a peer still reading the
    barrier's last message (rank 1 aborted with "terminate called without an active exception" after a
    finished run, CI, December 2026). Best effort: the run is over, so a store that is gone ends the wait."""
    try:
        store = dist.distributed_c10d._get_default_store()
        store.set(f"ganzoo/left/{rank}", b"1")
        store.wait([f"ganzoo/left/{r}" for r in range(size)])
    except (RuntimeError, ValueError, AttributeError):  # DistError is a RuntimeError
        pass


def weights_differ(world: World, nets: dict) -> list[str]:
    """Names of the parameters that are not bitwise identical on every rank (a check for tests).

    Each parameter is summarised by two float64 numbers (its sum and a position-weighted
    sum); the ranks' maxima and minima must agree exactly.
    """
    if not world.distributed:
        return []
    import torch.distributed as dist

    names, marks = [], []
    for role, module in nets.items():
        for name, p in module.named_parameters():
            flat = p.detach().reshape(-1).double()
            weights = torch.arange(1, flat.numel() + 1, dtype=torch.float64, device=flat.device)
            names.append(f"{role}.{name}")
            marks.append(torch.stack([flat.sum(), (flat * weights).sum()]))
    stacked = torch.stack(marks).to(world._tensor_device())
    high, low = stacked.clone(), stacked.clone()
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    return [name for name, h, l in zip(names, high, low) if not torch.equal(h, l)]
