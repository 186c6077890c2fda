"""Train the classifier behind the ``fmnist`` extractor and write the weights file ganzoo ships.

Reproduce (a few minutes on two CPU cores, no network):

    apt-get install dataset-fashion-mnist      # Debian/Ubuntu: the Fashion-MNIST IDX files
    python scripts/train_fmnist_classifier.py  # from a checkout; writes
                                               # ganzoo/metrics/weights/fmnist-classifier.safetensors

It trains on the 60k TRAIN split only (from /usr/share/datasets/fashion-mnist,
or ``--data-dir``: any folder holding train-images-idx3-ubyte.gz and
train-labels-idx1-ubyte.gz), so the 10k TEST split embedded in ganzoo, which
``ganzoo eval`` uses as reference images, stays held out. Every batch also holds
a few synthetic noise images labelled as an eleventh class, "not Fashion-MNIST"
(see noise_images and ganzoo.metrics.extractors.fmnist for why). It prints the test
accuracy of the weights as written (float16) and records seed, epochs, that
accuracy and the sha256 of both training files in the safetensors metadata.
The seed fixes initialisation, data order, flips, noise and dropout: the same
torch on the same machine writes the same file byte for byte; another CPU,
thread count or torch version may differ in float round-off.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import struct
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from ganzoo.api import DataSpec  # noqa: E402
from ganzoo.data import embedded_images  # noqa: E402
from ganzoo.data.embedded import read_idx  # noqa: E402
from ganzoo.fileio import atomic_write  # noqa: E402
from ganzoo.metrics.extractors import fmnist  # noqa: E402

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"
TRAIN_COUNT, PAD = 60_000, 2
FORMAT = "ganzoo-fmnist-classifier-1"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def canonical(data: bytes) -> bytes:
    """safetensors bytes with the metadata keys sorted, so the same weights give the same file and sha256.

    The library writes metadata from a hash map, in an order that changes from
    run to run; tensor entries and data are already in a fixed order.
    """
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the format aligns the data to 8 bytes
    return struct.pack("<Q", len(text)) + text + data[8 + length:]


def train_split(folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The 60k train images as uint8 (N, 1, 32, 32), padded as the embedded data is, and int64 labels."""
    for name in (TRAIN_IMAGES, TRAIN_LABELS):
        if not (folder / name).is_file():
            sys.exit(f"Error: {folder / name} not found; install Debian's dataset-fashion-mnist "
                     f"(apt-get install dataset-fashion-mnist) or pass --data-dir")
    images = torch.from_numpy(read_idx(folder / TRAIN_IMAGES, (TRAIN_COUNT, 28, 28))).unsqueeze(1)
    labels = torch.from_numpy(read_idx(folder / TRAIN_LABELS, (TRAIN_COUNT,))).long()
    return F.pad(images, (PAD,) * 4), labels


def noise_images(n: int, generator: torch.Generator) -> torch.Tensor:
    """uint8 (n, 1, 32, 32) images that are not Fashion-MNIST, for the reject class.

    A third each, at random: pixels uniform in [0, 255]; Gaussian pixels around a
    random grey level with a random spread; smooth noise (uniform noise on a 2, 4,
    8 or 16 pixel grid, bilinearly enlarged). Without them a classifier maps noise
    near the middle of its garment classes (see ganzoo.metrics.extractors.fmnist).
    """
    kind = torch.randint(0, 3, (n, 1, 1, 1), generator=generator)
    uniform = torch.rand(n, 1, 32, 32, generator=generator) * 255
    level = torch.rand(n, 1, 1, 1, generator=generator) * 255
    spread = 10 + torch.rand(n, 1, 1, 1, generator=generator) * 118
    gaussian = level + spread * torch.randn(n, 1, 32, 32, generator=generator)
    grid = 2 ** int(torch.randint(1, 5, (1,), generator=generator))
    smooth = F.interpolate(torch.rand(n, 1, grid, grid, generator=generator) * 255, size=(32, 32),
                           mode="bilinear", align_corners=False)
    images = torch.where(kind == 0, uniform, torch.where(kind == 1, gaussian, smooth))
    return images.round().clamp(0, 255).to(torch.uint8)


def train(images: torch.Tensor, labels: torch.Tensor, seed: int, epochs: int, batch_size: int,
          lr: float, noise_per_batch: int) -> fmnist.FmnistClassifier:
    """Adam with a one-cycle schedule; random left-right flips; ``noise_per_batch`` reject-class
    images added to every batch; every random draw from ``seed``."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = fmnist.FmnistClassifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = math.ceil(len(images) / batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch)
    inputs = fmnist.prepare(images)  # the same conversion the extractor applies
    model.train()
    for epoch in range(epochs):
        started, total = time.perf_counter(), 0.0
        for batch in torch.randperm(len(inputs), generator=generator).split(batch_size):
            x = inputs[batch]
            flip = torch.rand(len(x), generator=generator) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            y = labels[batch]
            if noise_per_batch:
                x = torch.cat([x, fmnist.prepare(noise_images(noise_per_batch, generator))])
                y = torch.cat([y, torch.full((noise_per_batch,), fmnist.NOT_FMNIST)])
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item()
        print(f"epoch {epoch + 1}/{epochs}: loss {total / steps_per_epoch:.4f} ({time.perf_counter() - started:.0f} s)",
              flush=True)
    return model.eval()


@torch.no_grad()
def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    predicted = torch.cat([model(fmnist.prepare(chunk)).argmax(1) for chunk in images.split(1000)])
    return (predicted == labels).double().mean().item()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEBIAN_DIR, help="folder with the train IDX files")
    parser.add_argument("--out", type=Path, default=REPO / "ganzoo" / "metrics" / "weights" / fmnist.WEIGHTS_NAME)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--noise-per-batch", type=int, default=12, help="reject-class noise images per batch")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    images, labels = train_split(args.data_dir)
    test_images, test_labels = embedded_images(DataSpec("images", 32, 1))
    model = train(images, labels, args.seed, args.epochs, args.batch_size, args.lr, args.noise_per_batch)

    # Ship float16 (half the size); the accuracy recorded is that of the rounded weights.
    tensors = {name: t.detach().to(torch.float16).contiguous() for name, t in model.state_dict().items()}
    model.load_state_dict({name: t.float() for name, t in tensors.items()})
    test_accuracy = accuracy(model, test_images, test_labels)
    metadata = {
        "format": FORMAT,
        "architecture": fmnist.FmnistClassifier.__doc__,
        "feature": f"embedding: {fmnist.FEATURE_DIM}-d penultimate layer after ReLU",
        "input": fmnist.NORMALISATION + "; " + fmnist.RESIZE,
        "seed": str(args.seed), "epochs": str(args.epochs), "batch_size": str(args.batch_size), "lr": str(args.lr),
        "noise_per_batch": str(args.noise_per_batch),
        "classes": "0-9: Fashion-MNIST classes; 10: not Fashion-MNIST (synthetic noise, see noise_images)",
        "train_data": "Fashion-MNIST train split (60000), Debian package dataset-fashion-mnist",
        "train_images_sha256": sha256(args.data_dir / TRAIN_IMAGES),
        "train_labels_sha256": sha256(args.data_dir / TRAIN_LABELS),
        "test_accuracy": f"{test_accuracy:.4f}",
        "test_data": "Fashion-MNIST test split (10000) embedded in ganzoo/data/fashion_mnist",
        "torch": torch.__version__,
    }
    from safetensors.torch import save

    atomic_write(args.out, lambda f: f.write(canonical(save(tensors, metadata=metadata))))

    # Read back through the extractor: what ships is what was measured.
    shipped = fmnist.load("cpu", weights=args.out)
    with torch.no_grad():
        check = torch.cat([shipped.extra["classify"](c).argmax(1) for c in test_images.split(1000)]) == test_labels
    assert abs(check.double().mean().item() - test_accuracy) < 1e-9
    params = sum(t.numel() for t in tensors.values())
    print(f"test accuracy {test_accuracy:.4f} (embedded 10k test split, held out; argmax over all 11 classes)")
    print(f"wrote {args.out}: {params} parameters, {args.out.stat().st_size} bytes, sha256 {shipped.weights_sha256}")
    print(f"took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
