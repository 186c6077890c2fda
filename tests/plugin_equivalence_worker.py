"""One process of the plugin equivalence test (tests/test_plugin_equivalence.py).

    python plugin_equivalence_worker.py ARCH[,ARCH...] RANK WORLD_SIZE PORT OUT

For each ARCH: builds its smoke networks from a fixed seed and runs every phase (regularisers
included, every step) for a few steps on fixed global batches, each rank on its
slice, with a LossContext built here: rank, world_size and a gather made of
torch.distributed.all_gather (gloo, 127.0.0.1:PORT). Each phase's loss and the
gradients of the networks it trains are averaged over the ranks (all_reduce / W),
then every rank applies the same plain SGD step, so later steps start from what
one process would hold. OUT gets this rank's records by architecture: per step and phase the
averaged loss and gradients, and the run state (pools, path-length mean) and
buffers it ends with.
"""

from __future__ import annotations

import sys
from datetime import timedelta

import torch
import torch.distributed as dist

from ganzoo import registry
from ganzoo.api import LossContext

STEPS = 3
LR = 1e-4  # plain SGD on the averaged gradients: later steps see new weights, not so far that rounding grows
# Global batches chosen so that every per-sample draw and batch-wide statistic has something to split:
# StyleGAN-lite at 8 (4 per rank: whole minibatch-std groups of 4, 2 path-length samples per rank).
OVERRIDES = {"dcgan": {"batch_size": 8}, "cyclegan": {"batch_size": 4},
             "stylegan-lite": {"batch_size": 8, "r1_gamma": 1.0}}


def global_batch(arch, cfg, step: int) -> dict[str, torch.Tensor]:
    spec = arch.data_spec(cfg)
    generator = torch.Generator().manual_seed(1000 + step)
    keys = ("A", "B") if spec.kind == "unpaired" else ("image",)
    shape = (cfg.batch_size, spec.channels, spec.resolution, spec.resolution)
    return {k: torch.rand(shape, generator=generator) * 2 - 1 for k in keys}


def gather(t: torch.Tensor) -> torch.Tensor:
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)


def average(t: torch.Tensor, world_size: int) -> torch.Tensor:
    t = t.detach().clone()
    if world_size > 1:
        dist.all_reduce(t)
        t /= world_size
    return t


def run(name: str, rank: int, world_size: int) -> dict:
    arch = registry.get(name)
    cfg = arch.make_config({**arch.smoke, **OVERRIDES[name]})
    arch.validate(cfg)
    torch.manual_seed(0)
    nets = arch.build(cfg)
    for net in nets.values():
        # DCGAN's batch norm normalises by the batch each rank sees (SyncBatchNorm, the trainer's option,
        # needs a GPU): eval mode uses the running statistics, the same on every rank.
        net.train(name != "dcgan")
    generator = torch.Generator().manual_seed(7)
    state: dict = {}
    record: dict = {"steps": []}
    b = cfg.batch_size // world_size
    for step in range(STEPS):
        batch = {k: v[rank * b:(rank + 1) * b] for k, v in global_batch(arch, cfg, step).items()}
        ctx = LossContext(cfg=cfg, device=torch.device("cpu"), generator=generator, step=step, total_steps=STEPS,
                          log=lambda key, value: None, state=state, rank=rank, world_size=world_size,
                          gather=gather if world_size > 1 else None)
        phases = {}
        for phase in arch.phases(cfg):
            for net in nets.values():
                net.zero_grad(set_to_none=True)
            loss = arch.loss(phase, nets, batch, ctx)
            loss.backward()
            grads = {f"{role}.{p}": average(param.grad, world_size)
                     for role in phase.trains for p, param in nets[role].named_parameters() if param.grad is not None}
            phases[phase.name] = {"loss": average(loss, world_size), "grads": grads}
            with torch.no_grad():
                for key, grad in grads.items():
                    role, p = key.split(".", 1)
                    nets[role].get_parameter(p).sub_(LR * grad)
        record["steps"].append(phases)
    record["state"] = state
    record["buffers"] = {f"{role}.{k}": v.clone() for role, net in nets.items() for k, v in net.named_buffers()}
    return record


def main() -> None:
    names, rank, world_size, port, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    torch.set_num_threads(1)
    if world_size > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size,
                                timeout=timedelta(seconds=60))
    torch.save({name: run(name, rank, world_size) for name in names.split(",")}, out)
    if world_size > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
