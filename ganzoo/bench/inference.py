"""Generator inference: latency at batch 1 and throughput over batch sizes, per backend, with parity.

Backends: eager PyTorch, ``torch.compile``d PyTorch (compilation time
reported apart), ONNX Runtime on the CPU (the file `ganzoo export` writes,
verified), and ONNX Runtime's CUDA provider with IO binding (inputs and
outputs stay on the GPU) when the installed onnxruntime has it. Every backend's
output is compared with eager PyTorch's on the same inputs.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ..export import export_generator
from .timing import noisy_note, synchronizer, time_calls


class _Backend:
    """A way to run one generator: ``prepare(inputs)`` once per batch, then ``run()`` timed."""

    name = ""

    def prepare(self, inputs: dict[str, np.ndarray]) -> None: ...

    def run(self): ...

    def output(self) -> np.ndarray: ...


class _Torch(_Backend):
    def __init__(self, net, spec, device, compiled: bool):
        self.name = "compiled" if compiled else "eager"
        if compiled:
            from .training import fresh_compiler

            fresh_compiler()  # a generator class shared by several generators or cases would reach the limit
        self.net, self.spec, self.device = (torch.compile(net) if compiled else net), spec, device

    def prepare(self, inputs):
        self.args = [torch.from_numpy(inputs[k]).to(self.device) for k in self.spec.inputs]

    @torch.no_grad()
    def run(self):
        return self.net(*self.args)

    def output(self):
        return self.run().float().cpu().numpy()


class _OrtCpu(_Backend):
    name = "onnxruntime-cpu"

    def __init__(self, path: Path):
        from ..runtime import load

        self.model = load(path, device="cpu")

    def prepare(self, inputs):
        self.inputs = inputs

    def run(self):
        return self.model.session.run(None, self.inputs)

    def output(self):
        return self.run()[0]


class _OrtCudaIoBinding(_Backend):
    name = "onnxruntime-cuda"

    def __init__(self, path: Path, device: torch.device):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        index = device.index or 0
        self.session = ort.InferenceSession(str(path), options, providers=[
            ("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"])
        self.device_id, self.ort = index, ort

    def prepare(self, inputs):
        self.binding = self.session.io_binding()
        self.values = {k: self.ort.OrtValue.ortvalue_from_numpy(v, "cuda", self.device_id) for k, v in inputs.items()}
        for name, value in self.values.items():
            self.binding.bind_ortvalue_input(name, value)
        self.binding.bind_output(self.session.get_outputs()[0].name, "cuda", self.device_id)

    def run(self):
        self.session.run_with_iobinding(self.binding)

    def output(self):
        self.run()
        return self.binding.copy_outputs_to_cpu()[0]


BACKENDS = ("eager", "compiled", "onnxruntime-cpu", "onnxruntime-cuda")


def check_backends(backends: list[str], device) -> None:
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise ValueError(f"unknown backends: {', '.join(unknown)}; backends: {', '.join(BACKENDS)}")
    if "onnxruntime-cuda" in backends and not (device.type == "cuda" and cuda_provider_available()):
        raise ValueError("backend onnxruntime-cuda needs --device cuda and onnxruntime-gpu's CUDA provider")


def default_backends(device: torch.device) -> list[str]:
    backends = ["eager", "compiled", "onnxruntime-cpu"]
    if device.type == "cuda" and cuda_provider_available():
        backends.append("onnxruntime-cuda")
    return backends


def cuda_provider_available() -> bool:
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers()


def bench_generator(arch, cfg, name, spec, net, device: torch.device, batches: list[int], repeats: int,
                    backends: list[str], echo=print) -> dict:
    """Latency (batch 1) and throughput (each batch) of one generator for each backend."""
    check_backends(backends, device)
    sync = synchronizer(device)
    net = net.to(device).eval()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as folder:
        runners: list[_Backend] = []
        setup: dict[str, float] = {}
        path = Path(folder) / f"{name}.onnx"
        for backend in backends:
            start = time.perf_counter()
            if backend in ("eager", "compiled"):
                runners.append(_Torch(net, spec, device, compiled=backend == "compiled"))
            else:
                if not path.exists():  # one verified export serves both ONNX Runtime backends
                    export_generator(arch, cfg, name, spec, net.cpu(), path, plugin={}, seed=0)
                    net.to(device)
                runners.append(_OrtCpu(path) if backend == "onnxruntime-cpu" else _OrtCudaIoBinding(path, device))
            setup[backend] = time.perf_counter() - start
        for runner in runners:
            rows = {}
            first_call_s = None
            for batch in batches:
                inputs = spec.latents(batch, 1)
                runner.prepare(inputs)
                if first_call_s is None:  # compilation happens in the first call
                    start = time.perf_counter()
                    runner.run()
                    sync()
                    first_call_s = time.perf_counter() - start
                timed = time_calls(runner.run, device, repeats if batch == batches[0] else max(3, repeats // 4))
                rows[str(batch)] = {**timed, "images_per_s": batch / timed["median_s"]}
            inputs = spec.latents(batches[0], 2)
            eager = _Torch(net, spec, device, compiled=False)
            eager.prepare(inputs)
            runner.prepare(inputs)
            error = float(np.abs(runner.output() - eager.output()).max())
            first = rows[str(batches[0])]
            noisiest = max(rows.values(), key=lambda row: row["spread"] or 0.0)
            results[runner.name] = {"batches": rows, "setup_s": setup[runner.name], "first_call_s": first_call_s,
                                    "max_abs_error_vs_eager": error}
            echo(f"  {name:4s} {runner.name:17s} batch {batches[0]}: p50 {first['median_s'] * 1e3:8.2f} ms "
                 f"p99 {first['p99_s'] * 1e3:8.2f} ms; " +
                 ", ".join(f"b{b} {r['images_per_s']:.0f} img/s" for b, r in rows.items()) +
                 f"; max |diff| {error:.1e}" + noisy_note(noisiest))
    eager_rows = results.get("eager", {}).get("batches", {})
    for record in results.values():
        for batch, row in record["batches"].items():
            if batch in eager_rows:
                row["speedup_vs_eager"] = eager_rows[batch]["median_s"] / row["median_s"]
    return results
