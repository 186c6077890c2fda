"""Device, precision, memory format, compilation and optimizers: how the work runs.

Everything that depends on the hardware lives here so that the loop stays plain.
"""

from __future__ import annotations

import contextlib

import torch

from ..errors import UserError


def pick_device(name: str = "auto") -> torch.device:
    """'auto' prefers CUDA, then Apple's MPS, then the CPU; an explicit name must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} asked for, but CUDA is not available here")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"device {name!r} asked for, but only {torch.cuda.device_count()} CUDA device(s) exist")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError(f"device {name!r} asked for, but MPS is not available here")
    return device


class Engine:
    """Runs phases on one device at one precision, optionally compiled and channels_last.

    ``opts`` are the run's TrainOptions. The CUDA numerics they choose (TF32,
    cuDNN autotuning) are process-wide switches, so they are applied only while
    a run trains, inside :meth:`numerics`, and put back afterwards.
    """

    def __init__(self, device: torch.device, opts, arch_name: str | None = None):
        from .speed_defaults import resolve

        self.device = device
        # "auto" settings: what the suite measured fastest for this architecture on this device type.
        self.speed = resolve(arch_name, device.type, opts.channels_last, opts.optimizer)
        self.optimizer = self.speed.optimizer
        self.precision = opts.precision
        self.channels_last = self.speed.channels_last
        self.compile = opts.compile
        self.tf32_matmul, self.tf32_conv, self.cudnn_benchmark = opts.tf32_matmul, opts.tf32_conv, opts.cudnn_benchmark
        if self.precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise UserError("precision bf16 asked for, but this GPU does not support bfloat16")
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.precision == "fp16")

    @contextlib.contextmanager
    def numerics(self):
        """TF32 for matmuls and convolutions and cuDNN autotuning as this run's options say, then as before."""
        matmul = torch.backends.cuda.matmul
        cudnn = torch.backends.cudnn
        before = (matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark)
        matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark = self.tf32_matmul, self.tf32_conv, self.cudnn_benchmark
        try:
            yield
        finally:
            matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark = before

    def autocast(self, eager: bool = False):
        """bf16/fp16 autocast for main phases; eager (double-backward) phases stay fp32."""
        if self.precision == "fp32" or eager:
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def place(self, module: torch.nn.Module) -> torch.nn.Module:
        module = module.to(self.device)
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        return module

    def place_images(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last and images.dim() == 4:
            return images.contiguous(memory_format=torch.channels_last)
        return images

    def compiled(self, module: torch.nn.Module) -> torch.nn.Module:
        """A compiled view sharing the module's parameters (or the module itself).

        The engine chooses the memory format itself (channels_last), so inductor's
        own layout optimisation is turned off: with it, torch 2.11 on an H100 broke
        in convolution_backward on 1-channel images in NCHW (a stride assertion).
        """
        if not self.compile:
            return module
        import torch._inductor.config as inductor_config

        inductor_config.layout_optimization = False
        return torch.compile(module)

    def adam(self, params, lr: float, betas, eps: float, weight_decay: float) -> torch.optim.Adam:
        """Fused Adam where the device has a fused kernel, else the multi-tensor (foreach) one.

        ``optimizer="plain"`` is the per-parameter Python loop the reference codebases run;
        ``"foreach"`` skips the fused kernel. The benchmark compares them.
        """
        params = list(params)
        kwargs = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
        if self.optimizer == "plain":
            return torch.optim.Adam(params, foreach=False, fused=False, **kwargs)
        if self.optimizer == "fused" and self.device.type in ("cuda", "cpu", "mps"):
            try:
                return torch.optim.Adam(params, fused=True, **kwargs)
            except (RuntimeError, TypeError):
                pass
        return torch.optim.Adam(params, foreach=True, **kwargs)

    def backward_and_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, eager: bool,
                          reduce=None) -> torch.Tensor:
        """Backward pass and optimizer step, skipped on the device when anything is non-finite; returns found_inf.

        Backward always runs, so that every rank joins ``reduce(flag)`` (the all-reduce of the
        gradients across ranks, which also averages this rank's non-finite-loss flag and returns it).
        found_inf (a float32 0-d tensor, 1.0 for a skipped step) is read from the reduced gradients and
        flag, so every rank decides alike. With fp16 the GradScaler's own check is that decision (it
        unscales the reduced, scaled gradients); the loss flag is folded into its found_inf, so a
        non-finite loss also backs the scale off. See ganzoo.train.nonfinite.
        """
        from .nonfinite import found_nonfinite, step_unless

        flag = (~torch.isfinite(loss.detach())).to(torch.float32).reshape(())
        scaled = self.scaler.is_enabled() and not eager
        (self.scaler.scale(loss) if scaled else loss).backward()
        if reduce is not None:
            flag = reduce(flag)
        if scaled:
            self.scaler.unscale_(optimizer)
            per_device = self.scaler._found_inf_per_device(optimizer)
            for found in per_device.values():
                found.add_((flag > 0).to(found.dtype).to(found.device))
            found = sum(f.to(flag.device) for f in per_device.values()).clamp(max=1.0) if per_device else flag
            self.scaler.step(optimizer)
            self.scaler.update()
            return found
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        found = found_nonfinite(grads, flag)
        step_unless(optimizer, found)
        return found
