"""Batches from an image store: a uint8 tensor in memory or a prepared dataset read in place.

The order is a fresh permutation per epoch drawn from (seed, epoch); random
crops, flips and CycleGAN's random B images come from the feed's own seeded
generator. Position (epoch, index) and that generator's state are all resume
needs to continue exactly.

Where the images live (``_resident``): on an accelerator when they fit
DEVICE_RESIDENT_BYTES (a prepared dataset is then read whole once), else on the
host, where each batch is gathered from the store (a prepared dataset's
memory-mapped shards: nothing but the batch is copied, so memory does not grow
with the dataset).

Host-resident data is read ahead (ganzoo.train.prefetch): a daemon thread
gathers, crops and flips the next READ_AHEAD batches on the CPU, in pinned
memory when the target is CUDA, while the trainer computes; the batch then
reaches the device with ``non_blocking=True``. The thread makes its draws on its
own copy of the feed's generator, in the order a plain loop makes them, and
hands each batch back with the draw state that follows it: ``state_dict()``
describes the next batch the trainer will get, never one drawn ahead. The
crops are the same gather as on the device, so the bytes are the same.
Device-resident data is drawn in the step (indices copied from pinned memory
with ``non_blocking=True``, crops gathered on the device): no host sync either way.

Under torchrun every rank runs the same feed (same seed, same draws) over the
global batch and keeps only its own rows (``rank``, ``world_size``): it reads
and copies just those, so N processes see exactly the batches one process sees.
"""

from __future__ import annotations

import torch

from ..api import UNPAIRED
from ..errors import UserError
from .host_reads import permitted
from .prefetch import ReadAhead

# Datasets up to this size live on the accelerator; larger ones stay in host memory
# and each batch is copied over.
DEVICE_RESIDENT_BYTES = 4 << 30
# Batches a host-resident feed draws ahead of the trainer (0: none, each batch is made in the step).
READ_AHEAD = 2


def _nbytes(store) -> int:
    return store.numel() if torch.is_tensor(store) else store.nbytes


def _resident(store, device: torch.device, budget: int = DEVICE_RESIDENT_BYTES):
    """The store where the feed reads it: on ``device`` if that is an accelerator and it fits ``budget``
    (a prepared dataset read whole, a chunk at a time), else where it is (a prepared dataset stays on disk)."""
    if torch.is_tensor(store):
        if store.dtype != torch.uint8 or store.dim() != 4:
            raise ValueError("images must be a uint8 tensor (N, C, H, W)")
        return store.to(device) if device.type != "cpu" and store.numel() <= budget else store
    if len(store.shape) != 4 or not callable(getattr(store, "gather", None)):
        raise ValueError(f"images must be a uint8 tensor or a store with gather() and a 4-d shape, "
                         f"got {type(store).__name__}")
    if device.type != "cpu" and store.nbytes <= budget:
        return _read_onto(store, device)
    return store


def _read_onto(store, device: torch.device, chunk_bytes: int = 256 << 20) -> torch.Tensor:
    """A prepared dataset read whole onto ``device`` a chunk at a time: the host holds one chunk, never the
    whole dataset (a 4 GiB read_all() would show in the host's peak memory for nothing)."""
    out = torch.empty(tuple(store.shape), dtype=torch.uint8, device=device)
    rows = max(1, chunk_bytes // max(1, store.nbytes // max(1, len(store))))
    for start in range(0, len(store), rows):
        out[start:start + rows] = store.gather(torch.arange(start, min(start + rows, len(store)))).to(device)
    return out


def _gather(store, indices: torch.Tensor) -> torch.Tensor:
    """Rows ``indices`` (CPU int64) of a store: indexing for a tensor (on its device), gather() for a
    prepared dataset (a read of mapped files on the host)."""
    if torch.is_tensor(store):
        return store[_to(indices, store.device)]
    return store.gather(indices)


def _on_host(store) -> bool:
    return not torch.is_tensor(store) or store.device.type == "cpu"


def _to(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` on ``device`` without making the host wait: a host tensor bound for a GPU goes through pinned
    memory with ``non_blocking=True`` (a plain copy from pageable memory synchronises the stream)."""
    if t.device == device or device.type != "cuda" or t.device.type != "cpu":
        return t.to(device)
    return (t if t.is_pinned() else t.pin_memory()).to(device, non_blocking=True)


def _to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels as floats in [-1, 1]; anything else (labels) as it is."""
    return images.float().div_(127.5).sub_(1.0) if images.dtype == torch.uint8 else images


class _Draws:
    """The feed's random draws and position: epochs of `length` items in a per-epoch order, crops, flips.

    Everything random a batch needs is drawn here, in one fixed order per batch; a copy (``copy()``)
    continues exactly where this one is, which is how the read-ahead thread draws without sharing state.
    """

    def __init__(self, length: int, batch_size: int, seed: int, spec, rank: int = 0, world_size: int = 1):
        self.length, self.batch_size, self.seed = length, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.spec = spec
        self.resolution = spec.resolution if spec is not None else None
        self.flip = bool(spec is not None and spec.flip)
        self.rng = torch.Generator().manual_seed(seed * 1_000_003 + 7)  # augmentation and random draws
        self.epoch = 0
        self.index = 0
        self._order: torch.Tensor | None = None

    def copy(self) -> "_Draws":
        twin = _Draws(self.length, self.batch_size, self.seed, self.spec, self.rank, self.world_size)
        twin.load_state_dict(self.state_dict())
        return twin

    def _epoch_order(self) -> torch.Tensor:
        if self._order is None:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            self._order = torch.randperm(self.length, generator=generator)
        return self._order

    def next_indices(self) -> torch.Tensor:
        if self.index + self.batch_size > self.length:
            self.epoch, self.index, self._order = self.epoch + 1, 0, None
        indices = self._epoch_order()[self.index:self.index + self.batch_size]
        self.index += self.batch_size
        return indices

    def local(self, t: torch.Tensor) -> torch.Tensor:
        """This rank's rows of a global-batch tensor (all of it with one process)."""
        if self.world_size == 1:
            return t
        n = len(t) // self.world_size
        return t[self.rank * n:(self.rank + 1) * n]

    def augment(self, images: torch.Tensor) -> torch.Tensor:
        """Random crops to the spec's resolution and random left-right flips, per image: one gather on an
        accelerator, a slice (flipped or not) per image on the CPU, ten times faster there; same bytes.

        ``images`` are this rank's rows; the draws are made for the global batch and sliced.
        """
        size = images.shape[-1]
        target = self.resolution or size
        if target == size and not self.flip:
            return images
        n = len(images)
        total = n * self.world_size
        ys = self.local(torch.randint(0, size - target + 1, (total,), generator=self.rng))
        xs = self.local(torch.randint(0, size - target + 1, (total,), generator=self.rng))
        flips = (self.local(torch.rand(total, generator=self.rng) < 0.5) if self.flip
                 else torch.zeros(n, dtype=torch.bool))
        crop = _crop_and_flip if images.device.type == "cpu" else _gather_crops
        return crop(images, ys, xs, flips, target)

    def center(self, images: torch.Tensor) -> torch.Tensor:
        size, target = images.shape[-1], self.resolution or images.shape[-1]
        top = (size - target) // 2
        return images[..., top:top + target, top:top + target]

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "index": self.index, "rng": self.rng.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.index, self._order = int(state["epoch"]), int(state["index"]), None
        if "rng" in state:
            self.rng.set_state(state["rng"])


class _ImageBatches:
    """One uint8 batch {"image"} per call: indices, then crops and flips (the draws in their order); with
    ``labels`` (int64, N) also {"label"}: the labels at the same indices (they draw nothing)."""

    def __init__(self, draws: _Draws, images, labels: torch.Tensor | None = None):
        self.draws, self.images, self.labels = draws, images, labels

    def __call__(self) -> dict[str, torch.Tensor]:
        indices = self.draws.local(self.draws.next_indices())
        batch = {"image": self.draws.augment(_gather(self.images, indices))}
        if self.labels is not None:
            batch["label"] = self.labels[_to(indices, self.labels.device)]  # device labels: no pageable copy
        return batch


class _UnpairedBatches:
    """One uint8 batch {"A", "B"} per call: A in epoch order, B at random, then A's crops, then B's."""

    def __init__(self, draws: _Draws, a, b):
        self.draws, self.A, self.B = draws, a, b

    def __call__(self) -> dict[str, torch.Tensor]:
        draws = self.draws
        index_a = draws.local(draws.next_indices()) % len(self.A)
        index_b = draws.local(torch.randint(0, len(self.B), (draws.batch_size,), generator=draws.rng))
        a, b = _gather(self.A, index_a), _gather(self.B, index_b)
        return {"A": draws.augment(a), "B": draws.augment(b)}


class _ReadAheadBatches:
    """What the read-ahead thread makes: a batch (pinned for a CUDA target) and the draw state after it."""

    def __init__(self, batches, pin: bool):
        self.batches, self.pin = batches, pin

    def __call__(self) -> tuple[dict[str, torch.Tensor], dict]:
        batch = self.batches()
        if self.pin:
            batch = {k: v.pin_memory() for k, v in batch.items()}
        return batch, self.batches.draws.state_dict()


def _gather_crops(images: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, flips: torch.Tensor,
                  target: int) -> torch.Tensor:
    """Images cropped at (ys, xs) to ``target`` and flipped where ``flips``, in one gather on their device
    (the offsets travel from pinned memory without a sync)."""
    span = torch.arange(target)
    rows = ys[:, None] + span
    cols = torch.where(flips[:, None], xs[:, None] + span.flip(0), xs[:, None] + span)
    rows, cols = _to(rows, images.device), _to(cols, images.device)
    batch = torch.arange(len(images), device=images.device)
    picked = images[batch[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # (N, R, R, C)
    return picked.permute(0, 3, 1, 2).contiguous()


def _crop_and_flip(images: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, flips: torch.Tensor,
                   target: int) -> torch.Tensor:
    """Host images cropped at (ys, xs) to ``target`` and flipped where ``flips``: the device gather's bytes.
    A slice per image: on the CPU, ten times the rate of the one gather (of index tensors as large as the
    batch) that a GPU runs, and faster than gathering the flipped ones apart."""
    n, channels = len(images), images.shape[1]
    # The gather's layout too, not only its bytes: for one channel its strides are (R*R, 1, R, 1), and a
    # convolution may take another path (other rounding) on another layout (seen as 1 vs 2 ranks differing).
    layout = torch.empty((n, target, target, channels), device="meta").permute(0, 3, 1, 2).contiguous().stride()
    out = torch.empty_strided((n, channels, target, target), layout, dtype=images.dtype)
    for i, (y, x, flip) in enumerate(zip(ys.tolist(), xs.tolist(), flips.tolist())):
        crop = images[i, :, y:y + target, x:x + target]
        out[i] = crop.flip(-1) if flip else crop
    return out


def _reader_setup(device: torch.device):
    """What the read-ahead thread does first: work on one core (the setting is per thread: the step keeps
    its own), since the step holds the others and a parallel copy would wait for them (on a busy 2-core
    machine crops ran 100 times slower on 2 threads than on 1); on CUDA, the device whose pinned memory it
    allocates."""
    def setup() -> None:
        torch.set_num_threads(1)
        if device.type == "cuda":
            torch.cuda.set_device(device)
    return setup


def _evenly_spaced(count: int, n: int) -> torch.Tensor:
    return torch.linspace(0, count - 1, min(n, count)).round().long()


class _Feed:
    """Batches of uint8 images made by ``_batches(draws)``, read ahead when the stores are on the host.

    ``read_ahead``: batches drawn ahead of the trainer (0: each batch is made in ``next()``).
    """

    def __init__(self, length: int, batch_size: int, seed: int, device: torch.device, spec, name: str,
                 rank: int = 0, world_size: int = 1, read_ahead: int = READ_AHEAD):
        if batch_size < 1:
            raise UserError(f"batch_size must be positive, got {batch_size}")
        if batch_size > length:
            raise UserError(f"batch_size {batch_size} is larger than {name} ({length} images)")
        self.length, self.batch_size, self.seed, self.device = length, batch_size, seed, device
        self.rank, self.world_size = rank, world_size
        self.draws = _Draws(length, batch_size, seed, spec, rank, world_size)
        self.read_ahead = read_ahead
        self._ahead: ReadAhead | None = None
        self._position: dict | None = None  # the draw state before the next batch handed out (reading ahead)

    # the draws, by their old names (tests and tools read them)
    @property
    def rng(self) -> torch.Generator:
        return self.draws.rng

    @property
    def epoch(self) -> int:
        return int(self.state_dict()["epoch"])

    @property
    def index(self) -> int:
        return int(self.state_dict()["index"])

    @property
    def steps_per_epoch(self) -> int:
        return self.length // self.batch_size

    def augment(self, images: torch.Tensor) -> torch.Tensor:
        return self.draws.augment(images)

    def center(self, images: torch.Tensor) -> torch.Tensor:
        return self.draws.center(images)

    def local(self, t: torch.Tensor) -> torch.Tensor:
        return self.draws.local(t)

    def _stores(self) -> list:
        raise NotImplementedError

    def _batches(self, draws: _Draws):
        raise NotImplementedError

    @property
    def _host(self) -> bool:
        return all(_on_host(store) for store in self._stores())

    @property
    def reads_ahead(self) -> bool:
        """Whether batches are made ahead in a thread: host-resident stores and ``read_ahead`` > 0."""
        return self.read_ahead > 0 and self._host

    def next(self) -> dict[str, torch.Tensor]:
        """The next batch, float in [-1, 1] on the device."""
        return {k: _to_unit(_to(v, self.device)) for k, v in self.next_raw().items()}

    def next_raw(self) -> dict[str, torch.Tensor]:
        """The next batch as uint8, cropped and flipped, where the feed makes it: on the host (pinned for
        CUDA) for host-resident data, on the device otherwise. ``next()`` is this, copied and scaled."""
        if self.reads_ahead:
            if self._ahead is None:
                self._start()
            raw, self._position = self._ahead.next()
            return raw
        if self._host:
            # Crops of host data read their offsets, and a prepared dataset's gather its indices, on the host: no
            # device is waited for, but the host-read spy would count them. (No spy looks into the read-ahead
            # thread: torch function modes are per thread.)
            with permitted("host data"):
                return self._batches(self.draws)()
        return self._batches(self.draws)()

    def _start(self) -> None:
        cuda = self.device.type == "cuda"
        # The thread draws on its own copy: the feed's draws stay at the last batch handed out.
        self._position = self.draws.state_dict()
        self._ahead = ReadAhead(_ReadAheadBatches(self._batches(self.draws.copy()), pin=cuda), self.read_ahead,
                                setup=_reader_setup(self.device), name="ganzoo-feed")

    def close(self) -> None:
        """Stop reading ahead (the thread ends; what it drew ahead is dropped): the draws stand at the next
        batch the trainer would get, and a later ``next()`` starts reading ahead from there."""
        if self._ahead is not None:
            self._ahead.close()
            self._ahead = None
            self.draws.load_state_dict(self._position)
            self._position = None

    def state_dict(self) -> dict:
        """The position of the next batch ``next()`` returns (not of one drawn ahead)."""
        return dict(self._position) if self._ahead is not None else self.draws.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.close()
        self.draws.load_state_dict(state)

    def _fixed(self, store, n: int) -> torch.Tensor:
        with permitted("host data"):
            raw = _gather(store, _evenly_spaced(len(store), n))
        return _to_unit(self.center(raw).to(self.device))


class ImageFeed(_Feed):
    """Yields {"image": float (B, C, H, W) in [-1, 1]} batches, dropping the ragged last batch; with ``labels``
    (int64, N: a conditional run's) also {"label": int64 (B,)}, each image's class.

    ``images``: a uint8 tensor (N, C, H, W) or a prepared dataset's images (ganzoo.data.prepared).
    """

    def __init__(self, images, batch_size: int, seed: int, device: torch.device, name: str = "data", spec=None,
                 resident: bool = True, rank: int = 0, world_size: int = 1, read_ahead: int = READ_AHEAD,
                 labels: torch.Tensor | None = None):
        super().__init__(len(images), batch_size, seed, device, spec, name, rank, world_size, read_ahead)
        self.images = _resident(images, device, DEVICE_RESIDENT_BYTES if resident else 0)
        if labels is not None:
            if labels.shape != (len(images),):
                raise ValueError(f"labels must be one per image ({len(images)}), got shape {tuple(labels.shape)}")
            labels = labels.long().to(self.images.device if torch.is_tensor(self.images) else "cpu")
        self.labels = labels

    def __len__(self) -> int:
        return len(self.images)

    def _stores(self) -> list:
        return [self.images]

    def _batches(self, draws: _Draws) -> _ImageBatches:
        return _ImageBatches(draws, self.images, self.labels)

    def fixed_batch(self, n: int) -> dict[str, torch.Tensor]:
        """Up to n images spread over the dataset, centre-cropped (and their labels): the same at every call."""
        batch = {"image": self._fixed(self.images, n)}
        if self.labels is not None:
            batch["label"] = self.labels[_evenly_spaced(len(self.images), n).to(self.labels.device)].to(self.device)
        return batch


class UnpairedFeed(_Feed):
    """Yields {"A": ..., "B": ...} batches as the CycleGAN reference draws them.

    An epoch has max(|A|, |B|) items in a shuffled order; A takes that index
    modulo |A| and B an index drawn at random per image (the reference's
    unaligned dataset with shuffling on), so domains of different sizes mix.
    """

    def __init__(self, a, b, batch_size: int, seed: int, device: torch.device, name: str = "data", spec=None,
                 resident: bool = True, rank: int = 0, world_size: int = 1, read_ahead: int = READ_AHEAD):
        super().__init__(max(len(a), len(b)), batch_size, seed, device, spec, name, rank, world_size, read_ahead)
        fits = resident and _nbytes(a) + _nbytes(b) <= DEVICE_RESIDENT_BYTES
        budget = DEVICE_RESIDENT_BYTES if fits else 0
        self.A, self.B = _resident(a, device, budget), _resident(b, device, budget)

    def __len__(self) -> int:
        return self.length

    def _stores(self) -> list:
        return [self.A, self.B]

    def _batches(self, draws: _Draws) -> _UnpairedBatches:
        return _UnpairedBatches(draws, self.A, self.B)

    def fixed_batch(self, n: int) -> dict[str, torch.Tensor]:
        return {"A": self._fixed(self.A, n), "B": self._fixed(self.B, n)}


def make_feed(dataset, batch_size: int, seed: int, device: torch.device, spec, resident: bool = True,
              rank: int = 0, world_size: int = 1, read_ahead: int = READ_AHEAD):
    """The feed for ``spec.kind``: an ImageFeed over an ImageSet, an UnpairedFeed over an UnpairedSet.

    ``resident=False`` keeps the images in host memory and copies each batch over. ``batch_size`` is
    global; ``rank`` of ``world_size`` gets its slice of every batch. ``read_ahead``: batches of
    host-resident data made ahead in a thread (0: none).
    """
    from ..data import ImageSet
    from ..data.unpaired import UnpairedSet

    expected = UnpairedSet if spec.kind == UNPAIRED else ImageSet
    if not isinstance(dataset, expected):
        raise TypeError(f"DataSpec kind {spec.kind!r} needs an {expected.__name__}, got {type(dataset).__name__}")
    if spec.kind == UNPAIRED:
        return UnpairedFeed(dataset.A, dataset.B, batch_size, seed, device, name=dataset.source, spec=spec,
                            resident=resident, rank=rank, world_size=world_size, read_ahead=read_ahead)
    labels = None
    if spec.labels:
        if dataset.labels is None:
            raise UserError(f"{dataset.source} has no class labels; a conditional run needs one class per image")
        labels = dataset.labels
    return ImageFeed(dataset.images, batch_size, seed, device, name=dataset.source, spec=spec, resident=resident,
                     rank=rank, world_size=world_size, read_ahead=read_ahead, labels=labels)
