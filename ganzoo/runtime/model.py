"""An exported ganzoo generator, run with numpy, pillow and onnxruntime only (never torch).

    from ganzoo.runtime import load
    model = load("stylegan-lite-G.onnx")
    images = model.sample(16, seed=0, truncation=0.7)   # uint8, N x C x H x W
    images = conditional.sample(8, seed=0, labels="Trouser")   # a conditional generator: one class, or 8

A model written by `ganzoo export` carries what sampling needs in its metadata:
how its inputs are drawn from a seed (the same numpy draws as PyTorch
sampling, so a seed names the same image), how outputs map to pixels, and for
translators the channels and size rule of their input images, for conditional
generators the names of their classes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from .images import PIXELS, to_uint8
from .classes import default_names, labels_for
from .latents import Latents

REQUIRED_KEYS = ("ganzoo_version", "architecture", "generator", "inputs", "output", "pixels", "channels", "resolution")


@dataclass(frozen=True)
class Metadata:
    """The metadata props `ganzoo export` writes, parsed."""

    ganzoo_version: str
    architecture: str
    generator: str
    inputs: list[dict]  # [{"name", "shape" (None for a dynamic axis)}]
    output: str
    pixels: str
    channels: int
    resolution: int
    batch: int | None  # None: dynamic
    latents: Latents | None
    translates: tuple[str, str] | None
    size_multiple: int | None
    precision: str
    raw: dict[str, str]
    classes: tuple[str, ...] | None = None  # a conditional generator's class names, index = label; else None

    @classmethod
    def parse(cls, props: dict[str, str], path: Path) -> "Metadata":
        missing = [key for key in REQUIRED_KEYS if key not in props]
        if missing:
            raise UserError(f"{path} was not written by ganzoo export: metadata {', '.join(missing)} missing")
        try:
            batch = json.loads(props.get("batch", "null"))
            latents = Latents.from_json(props["latents"]) if props.get("latents") else None
            parsed = cls(
                ganzoo_version=props["ganzoo_version"], architecture=props["architecture"],
                generator=props["generator"], inputs=json.loads(props["inputs"]), output=props["output"],
                pixels=props["pixels"], channels=int(props["channels"]), resolution=int(props["resolution"]),
                batch=batch if isinstance(batch, int) else None,
                latents=latents,
                translates=tuple(json.loads(props["translates"])) if props.get("translates") else None,
                size_multiple=json.loads(props.get("size_multiple", "null")),
                precision=props.get("precision", "fp32"), raw=dict(props),
                classes=_classes(props.get("classes"), latents))
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{path}: unreadable ganzoo metadata ({exc})") from None
        return parsed


def _classes(text: str | None, latents: Latents | None) -> tuple[str, ...] | None:
    """The "classes" prop (a JSON list of names) checked against the one-hot label input it names; a conditional
    model without it (written by hand) gets "0".."N-1"; an unconditional one has none."""
    part = latents.label_part if latents is not None else None
    if text is None:
        return tuple(default_names(part.num_classes)) if part is not None else None
    names = json.loads(text)
    if not (isinstance(names, list) and all(isinstance(name, str) for name in names)):
        raise ValueError("classes must be a JSON list of names")
    if part is None or len(names) != part.num_classes:
        count = f"a one-hot label input of {part.num_classes}" if part is not None else "no label input"
        raise ValueError(f"{len(names)} classes for {count}")
    return tuple(names)


def providers_for(device: str = "auto") -> list[str]:
    """ONNX Runtime providers for a ganzoo --device value."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in available:
            raise UserError(f"--device {device}: this onnxruntime has no CUDA provider (it has: {', '.join(available)}); "
                            "install onnxruntime-gpu")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device != "auto":
        raise UserError(f"unknown --device {device!r} for an ONNX model; use auto, cpu or cuda")
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def _ort_message(exc: Exception) -> str:
    """ONNX Runtime's first line without its "[ONNXRuntimeError] : 1 : FAIL : " prefix."""
    line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", line)


class ExportedGenerator:
    """One exported generator: an ONNX Runtime session and its ganzoo metadata."""

    def __init__(self, path: str | Path, device: str = "auto", threads: int | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"no such model file: {self.path}")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # fp16 models on the CPU warn about every unfolded constant
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers_for(device))
        except UserError:
            raise
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/InvalidProtobuf types
            raise UserError(f"cannot load {self.path}: {_ort_message(exc)}") from None
        self.metadata = Metadata.parse(self.session.get_modelmeta().custom_metadata_map, self.path)
        if self.metadata.pixels != PIXELS:
            raise UserError(f"{self.path}: unknown pixel mapping {self.metadata.pixels!r}")
        self.input_names = [i["name"] for i in self.metadata.inputs]

    def __repr__(self) -> str:
        m = self.metadata
        return f"ExportedGenerator({str(self.path)!r}, {m.architecture}/{m.generator}, inputs={self.input_names})"

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Raw outputs (float32, N x C x H x W in [-1, 1]) for named float32 inputs; pads a fixed batch."""
        arrays = {name: np.ascontiguousarray(inputs[name], dtype=np.float32) for name in self.input_names}
        n = len(next(iter(arrays.values())))
        batch = self.metadata.batch
        if batch is None:
            return self.session.run([self.metadata.output], arrays)[0]
        out = []
        for start in range(0, n, batch):
            chunk = {k: v[start:start + batch] for k, v in arrays.items()}
            short = batch - len(next(iter(chunk.values())))
            if short:  # the model's batch is fixed: repeat the last row and drop it again
                chunk = {k: np.concatenate([v, np.repeat(v[-1:], short, axis=0)]) for k, v in chunk.items()}
            out.append(self.session.run([self.metadata.output], chunk)[0][:batch - short])
        return np.concatenate(out)

    def latents(self, n: int, seed: int, labels=None) -> dict[str, np.ndarray]:
        """The inputs of n samples for ``seed``, as PyTorch sampling draws them; ``labels`` as in ``sample``."""
        if self.metadata.latents is None:
            raise UserError(f"{self.path} does not declare how its inputs are drawn; call run() with your own inputs")
        if labels is None:
            return self.metadata.latents(n, seed)
        return self.metadata.latents(n, seed, labels=self.labels(labels, n))

    def labels(self, labels, n: int, option: str = "labels") -> np.ndarray:
        """int64 (n,) class indices from one class (name or index) or n of them; a UserError for an
        unconditional model or a class it does not have."""
        classes = self.metadata.classes
        if classes is None:
            raise UserError(f"{option}: {self.path}'s generator {self.metadata.architecture}/"
                            f"{self.metadata.generator} is not conditional (its inputs: {', '.join(self.input_names)})")
        return labels_for(labels, n, classes, option, str(self.path))

    def sample(self, n: int, seed: int = 0, truncation: float | None = None, chunk: int = 64,
               labels=None) -> np.ndarray:
        """n images (uint8, N x C x H x W) for ``seed``: the images `ganzoo sample RUN_DIR` makes.

        ``labels`` chooses the classes of a conditional generator: one class for every image or n of them,
        each a name or an index (None: drawn with the latents, uniformly). The other inputs do not depend
        on them, so image i of a seed keeps its latent whatever its class.
        """
        self.require_sampler()
        inputs = self.latents(n, seed, labels)
        if truncation is not None:
            truncation = truncation_psi(truncation)
            if "truncation" not in inputs:
                raise UserError(f"{self.path} has no truncation input (its inputs: {', '.join(self.input_names)})")
            inputs["truncation"] = np.full_like(inputs["truncation"], truncation)
        size = self.metadata.batch or chunk
        return np.concatenate([to_uint8(self.run({k: v[start:start + size] for k, v in inputs.items()}))
                               for start in range(0, n, size)])

    def require_sampler(self) -> None:
        """A translator has nothing to sample: one UserError saying which command it takes."""
        if self.metadata.translates:
            raise UserError(f"{self.path} translates images ({'->'.join(self.metadata.translates)}) rather than "
                            f"sampling them; use: ganzoo translate {self.path} IMAGE_OR_FOLDER...")

    def translate(self, image: np.ndarray) -> np.ndarray:
        """One image (float32, 1 x C x H x W in [-1, 1]) translated to uint8 (C x H x W)."""
        if not self.metadata.translates:
            raise UserError(f"{self.path} samples images rather than translating them; use: ganzoo sample {self.path}")
        return to_uint8(self.run({self.input_names[0]: image}))[0]

    def load_image(self, path: Path, size: int | None) -> np.ndarray:
        """An image file prepared as this model's input: its channels, ``size`` on the shorter side."""
        from .translation import load_for_translation

        m = self.metadata
        return load_for_translation(path, m.channels, size, m.size_multiple, fixed=m.resolution)


def truncation_psi(value, name: str = "truncation") -> float:
    """``value`` as a truncation psi: a finite number >= 0 (1 = none, 0 = the average image; above 1
    exaggerates). A NaN or inf makes every pixel NaN, which the uint8 cast quietly turns into a black image."""
    try:
        psi = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be a number >= 0, got {value!r}") from None
    if not (np.isfinite(psi) and psi >= 0):
        raise UserError(f"{name} must be a finite number >= 0, got {value!r}")
    return psi


def load(path: str | Path, device: str = "auto", threads: int | None = None) -> ExportedGenerator:
    """An exported generator in an ONNX Runtime session.

    A model may keep tensors in "external data" files beside it. ONNX Runtime
    (1.24.1 and later; ganzoo requires 1.25) refuses, when it loads a model
    from a path as here, any location that is absolute, climbs out with "..",
    leads out of the model's folder through a link, or does not exist, in
    subgraphs too; so a model from elsewhere cannot make it read other files.
    """
    return ExportedGenerator(path, device, threads)
