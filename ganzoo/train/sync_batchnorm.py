"""Batch norm over the global batch under torchrun, on the CPU (gloo) as on GPUs.

torch.nn.SyncBatchNorm refuses CPU tensors ("expected input tensor to be on
GPU"), so this module does the same with a differentiable all-gather
(torch.distributed.nn.functional): each rank computes its slice's mean and sum
of squared deviations per channel, one all-gather combines them into the global
batch's mean and variance exactly (Chan's parallel formula, equal counts), and
the running statistics move as BatchNorm's do over the global batch (unbiased
running_var). Outside a process group, or in eval mode, it is plain BatchNorm;
its parameters and buffers keep BatchNorm's names, so checkpoints are unchanged.
"""

from __future__ import annotations

import torch
from torch.nn.modules.batchnorm import _BatchNorm


def _in_process_group() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class GlobalBatchNorm(_BatchNorm):
    """BatchNorm1d/2d/3d whose training statistics cover every rank's slice of the batch."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        batch_stats = self.training or not self.track_running_stats
        if not batch_stats or not _in_process_group():
            return super().forward(input)
        self._check_input_dim(input)
        from torch.distributed.nn.functional import all_gather

        dims = [0, *range(2, input.dim())]
        shape = [1, -1] + [1] * (input.dim() - 2)
        x = input.float()
        count = x.numel() // x.shape[1]  # per rank; every rank holds an equal slice of the global batch
        mean = x.mean(dims)
        m2 = ((x - mean.view(shape)) ** 2).sum(dims)
        gathered = torch.stack(all_gather(torch.stack([mean, m2])))  # (world, 2, C)
        world = gathered.shape[0]
        means, m2s = gathered[:, 0], gathered[:, 1]
        global_mean = means.mean(0)
        total = count * world
        global_m2 = m2s.sum(0) + count * ((means - global_mean) ** 2).sum(0)
        var = global_m2 / total
        if self.training and self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                unbiased = global_m2 / max(total - 1, 1)
                self.running_mean.mul_(1 - factor).add_(global_mean.to(self.running_mean.dtype), alpha=factor)
                self.running_var.mul_(1 - factor).add_(unbiased.to(self.running_var.dtype), alpha=factor)
        out = (x - global_mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(input.dtype)


def convert_sync_batchnorm(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` with every BatchNorm replaced by a GlobalBatchNorm holding the same parameters and buffers."""
    if isinstance(module, _BatchNorm) and not isinstance(module, GlobalBatchNorm):
        out = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        with torch.no_grad():
            if module.affine:
                out.weight, out.bias = module.weight, module.bias
            if module.track_running_stats:
                out.running_mean, out.running_var = module.running_mean, module.running_var
                out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
        return out
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child))
    return module
