"""The embedded default dataset: the Fashion-MNIST test split shipped inside the package.

It lets every command run offline with no download. The files are the original
gzipped IDX files (see fashion_mnist/README.md for their source and checksums);
they are read through importlib.resources so that an installed wheel works too.
"""

from __future__ import annotations

import gzip
import zlib
from importlib import resources

import numpy as np

from ..errors import UserError

CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

IMAGES_FILE = "t10k-images-idx3-ubyte.gz"
LABELS_FILE = "t10k-labels-idx1-ubyte.gz"
COUNT = 10_000
SIZE = 28

# IDX magic: two zero bytes, the element type (0x08 = unsigned byte), the number of dimensions.
_UBYTE = 0x08


def _resource(name: str):
    """The packaged file as a Traversable, so it is found in a source tree, a wheel or a zip."""
    return resources.files(__package__).joinpath("fashion_mnist", name)


def _corrupt(source, reason: str) -> UserError:
    """One message for every way a shipped file can be broken: it names the file and says what to do."""
    return UserError(f"embedded dataset file {source} is corrupt ({reason}); reinstall ganzoo")


def read_idx(source, shape: tuple[int, ...]) -> np.ndarray:
    """Decode a gzipped IDX file of unsigned bytes, checking its magic number and every size.

    ``source`` is a Path or an importlib Traversable; ``shape`` is what the file
    must hold. Any mismatch means a damaged install and is reported with the
    file's path rather than as a numpy reshape error.
    """
    try:
        with source.open("rb") as raw, gzip.open(raw, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise UserError(f"embedded dataset file {source} is missing; reinstall ganzoo") from None
    except (OSError, EOFError, zlib.error) as error:
        raise _corrupt(source, f"not a valid gzip stream: {error}") from None

    ndim = len(shape)
    header = 4 + 4 * ndim
    if len(data) < header:
        raise _corrupt(source, f"only {len(data)} bytes, shorter than its header")
    if data[0] != 0 or data[1] != 0 or data[2] != _UBYTE or data[3] != ndim:
        raise _corrupt(source, f"bad magic number 0x{data[:4].hex()}, expected 0x0000{_UBYTE:02x}{ndim:02x}")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if dims != shape:
        raise _corrupt(source, f"header says shape {dims}, expected {shape}")
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        raise _corrupt(source, f"{len(data)} bytes after decompression, expected {expected}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape).copy()


def load_fashion_mnist() -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 test images as uint8 (10000, 28, 28) and their labels as uint8 (10000,).

    Labels index CLASS_NAMES. Values are checked so that a damaged file cannot
    silently yield labels outside the ten classes.
    """
    images = read_idx(_resource(IMAGES_FILE), (COUNT, SIZE, SIZE))
    labels = read_idx(_resource(LABELS_FILE), (COUNT,))
    if labels.max() >= len(CLASS_NAMES):
        raise _corrupt(_resource(LABELS_FILE), f"label {int(labels.max())} outside 0..{len(CLASS_NAMES) - 1}")
    return images, labels
