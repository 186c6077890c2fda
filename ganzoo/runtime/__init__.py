"""What runs without torch: exported generators in ONNX Runtime, and everything they need.

    from ganzoo.runtime import load
    model = load("stylegan-lite-G.onnx")
    images = model.sample(16, seed=0, truncation=0.7)   # uint8, N x C x H x W

Every module in this package imports only numpy, pillow and (inside
functions) onnxruntime, so a deployment needs neither torch nor a GPU build of
it; a test imports each module in a process where ``import torch`` fails.

| module | job |
| --- | --- |
| ``model`` | an exported generator: ONNX Runtime session, ganzoo metadata, sample and translate |
| ``latents`` | generator inputs drawn by seed, declared as data (the same draws as PyTorch sampling) |
| ``images`` | generator outputs to uint8 and grids |
| ``image_files`` | finding image files and converting any PIL mode to grey or RGB |
| ``translation`` | image files in and out of image-to-image generators |
"""

from .model import ExportedGenerator, Metadata, load, providers_for

__all__ = ["ExportedGenerator", "Metadata", "load", "providers_for"]
