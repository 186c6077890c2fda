"""How to store prepared data, measured: raw uint8 shards against stylegan2-ada's zip of PNGs, compressed PNG, JPEG.

    python benchmarks/data_storage.py --photos DIR [--counts 64=2000,256=300,1024=40] [--seconds 3]

For each resolution, the same images are stored four ways and measured for disk per image, random-access read
throughput (single thread, batches of --batch random indices, page cache warm: what one data-loading thread
gets) and decode cost (ms per image from bytes already in memory):

- raw: ganzoo's prepared format (ganzoo.data.prepared), uint8 (n, C, R, R) shards read through its reader's
  gather() from a copy-on-write memory map: no decoding at all; raw-numpy reads the same shards with a
  numpy loop of its own that copies each batch twice (out of the map, then into the batch), where the
  reader copies once when the rows lie in one shard, as they all do here;
- png0-zip: stylegan2-ada's dataset_tool.py output, PNGs saved with compress_level=0 in a stored zip;
- png-zip: PNGs at Pillow's default compression (level 6), the smallest lossless choice;
- jpeg95-zip: JPEG quality 95 (lossy: training would see other pixels than the source decodes to).

Images are random square crops (50-100% of the shorter side, mirrored at random) of the RGB photos in
--photos, resized with Lanczos to each resolution; with no --photos, the embedded Fashion-MNIST upsampled (far
more compressible than photos: the figures then flatter PNG and JPEG). Sources smaller than the resolution are
upsampled, which also compresses better than real photos of that size do.

Figures go to benchmarks/results/data-storage-<machine>.json and a markdown table on stdout (docs/data.md).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

RESULTS = Path(__file__).resolve().parent / "results"
FORMATS = ("raw", "png0-zip", "png-zip", "jpeg95-zip")


def source_images(photos: Path | None, count: int, resolution: int, seed: int) -> tuple[np.ndarray, str]:
    """``count`` uint8 (count, 3, R, R) images and a note saying what they were made from."""
    rng = np.random.default_rng(seed)
    out = np.empty((count, 3, resolution, resolution), dtype=np.uint8)
    if photos is not None:
        files = sorted(p for p in photos.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        originals = [Image.open(p).convert("RGB") for p in files if Image.open(p).mode == "RGB"]
        if not originals:
            raise SystemExit(f"no RGB photos in {photos}")
        for i in range(count):
            image = originals[rng.integers(len(originals))]
            width, height = image.size
            side = int(min(width, height) * rng.uniform(0.5, 1.0))
            left, top = rng.integers(0, width - side + 1), rng.integers(0, height - side + 1)
            crop = image.resize((resolution, resolution), Image.Resampling.LANCZOS,
                                box=(left, top, left + side, top + side))
            if rng.random() < 0.5:
                crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            out[i] = np.asarray(crop).transpose(2, 0, 1)
        sizes = ", ".join(f"{p.name} {Image.open(p).size[0]}x{Image.open(p).size[1]}" for p in files
                          if Image.open(p).mode == "RGB")
        return out, f"random crops of {len(originals)} RGB photos ({sizes})"
    from ganzoo.data.embedded import load_fashion_mnist

    images, _ = load_fashion_mnist()
    for i in range(count):
        grey = Image.fromarray(images[rng.integers(len(images))]).resize((resolution, resolution),
                                                                          Image.Resampling.LANCZOS)
        out[i] = np.asarray(grey.convert("RGB")).transpose(2, 0, 1)
    return out, ("embedded Fashion-MNIST upsampled with Lanczos (no photos given: PNG and JPEG look better than "
                 "on photos)")


def encode(image: np.ndarray, kind: str) -> bytes:
    buffer = io.BytesIO()
    pil = Image.fromarray(image.transpose(1, 2, 0))
    if kind == "png0-zip":
        pil.save(buffer, format="PNG", compress_level=0, optimize=False)  # dataset_tool.py's exact call
    elif kind == "png-zip":
        pil.save(buffer, format="PNG")
    else:
        pil.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image).transpose(2, 0, 1)


def write_raw(folder: Path, images: np.ndarray) -> Path:
    """The images as a prepared dataset, through ganzoo's own writer."""
    from ganzoo.data import prepared

    folder.mkdir(parents=True)
    n, c, r, _ = images.shape
    capacity = prepared.shard_capacity(c, r)
    shards = []
    for index, start in enumerate(range(0, n, capacity)):
        part = images[start:start + capacity]
        shards.append({**prepared.write_array_file(folder / prepared.shard_name("images", index), part),
                       "count": len(part)})
    prepared.write_manifest(folder, prepared.new_manifest(
        name=folder.name, source="benchmark", source_kind="synthetic", fingerprint=None, resolution=r, channels=c,
        max_image_pixels=0, domains={"images": {"count": n, "shards": shards, "labels": None, "bad": []}}))
    return folder


def write_zip(path: Path, images: np.ndarray, kind: str) -> float:
    """A stored zip of encoded images named as dataset_tool.py names them; the encode cost in ms per image."""
    started = time.perf_counter()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for i, image in enumerate(images):
            archive.writestr(f"{i // 1000:05d}/img{i:08d}.{'jpg' if kind == 'jpeg95-zip' else 'png'}",
                             encode(image, kind))
    return (time.perf_counter() - started) * 1000 / len(images)


def numpy_gather(folder: Path, shape: tuple[int, ...]):
    """The storage alone: rows copied out of the shards' maps by numpy fancy indexing into one numpy batch."""
    manifest = json.loads((folder / "manifest.json").read_text())
    shards = manifest["domains"]["images"]["shards"]
    maps = [np.memmap(folder / s["file"], dtype=np.uint8, mode="c", shape=(s["count"], *shape)) for s in shards]
    starts = np.cumsum([0] + [s["count"] for s in shards])

    def gather(indices: np.ndarray) -> np.ndarray:
        out = np.empty((len(indices), *shape), dtype=np.uint8)
        shard_of = np.searchsorted(starts, indices, side="right") - 1
        for shard in np.unique(shard_of):
            rows = np.nonzero(shard_of == shard)[0]
            out[rows] = maps[shard][indices[rows] - starts[shard]]
        return out

    return gather


def warm(path: Path) -> None:
    """Every byte read once, so reads below come from the page cache."""
    for file in ([path] if path.is_file() else sorted(path.iterdir())):
        with open(file, "rb") as f:
            while f.read(1 << 24):
                pass


def timed_batches(read_batch, count: int, batch: int, seconds: float, seed: int) -> float:
    """Images per second of read_batch over random index batches, for about ``seconds``."""
    rng = np.random.default_rng(seed)
    read_batch(rng.integers(0, count, batch))  # first touch: imports, maps
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        read_batch(rng.integers(0, count, batch))
        done += batch
    return done / (time.perf_counter() - started)


def measure(resolution: int, count: int, photos: Path | None, work: Path, batch: int, seconds: float,
            seed: int) -> tuple[list[dict], str]:
    from ganzoo.data.prepared import open_prepared

    images, note = source_images(photos, count, resolution, seed)
    rows = []
    raw = write_raw(work / f"raw-{resolution}", images)
    warm(raw)
    reader = open_prepared(raw).domains["images"]
    rate = timed_batches(reader.gather, count, batch, seconds, seed)
    assert reader.gather(np.arange(3)).numpy().tobytes() == images[:3].tobytes()
    raw_bytes = sum(f.stat().st_size for f in raw.glob("*.u8")) / count
    rows.append({"format": "raw", "resolution": resolution, "images": count, "bytes_per_image": raw_bytes,
                 "read_images_per_s": rate, "decode_ms_per_image": 0.0, "encode_ms_per_image": 0.0,
                 "lossless": True})
    rate = timed_batches(numpy_gather(raw, images.shape[1:]), count, batch, seconds, seed)
    rows.append({"format": "raw-numpy", "resolution": resolution, "images": count, "bytes_per_image": raw_bytes,
                 "read_images_per_s": rate, "decode_ms_per_image": 0.0, "encode_ms_per_image": 0.0,
                 "lossless": True})
    for kind in FORMATS[1:]:
        path = work / f"{kind}-{resolution}.zip"
        encode_ms = write_zip(path, images, kind)
        warm(path)
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()

            def read_batch(indices):
                return np.stack([decode(archive.read(names[i])) for i in indices])

            rate = timed_batches(read_batch, count, batch, seconds, seed)
            blobs = [archive.read(name) for name in names[:min(count, 200)]]
        started = time.perf_counter()
        decoded = [decode(blob) for blob in blobs]
        decode_ms = (time.perf_counter() - started) * 1000 / len(blobs)
        lossless = all(np.array_equal(a, b) for a, b in zip(decoded, images))
        rows.append({"format": kind, "resolution": resolution, "images": count,
                     "bytes_per_image": path.stat().st_size / count, "read_images_per_s": rate,
                     "decode_ms_per_image": decode_ms, "encode_ms_per_image": encode_ms, "lossless": lossless})
    return rows, note


def machine() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def table(rows: list[dict]) -> str:
    lines = ["| resolution | format | disk per image | vs raw | read (1 thread, random batches) | decode | lossless |",
             "| --- | --- | ---: | ---: | ---: | ---: | --- |"]
    raw = {row["resolution"]: row["bytes_per_image"] for row in rows if row["format"] == "raw"}
    for row in rows:
        size = row["bytes_per_image"]
        shown = f"{size / 1e6:.2f} MB" if size >= 1e6 else f"{size / 1e3:.1f} kB"
        decode_ms = "none" if row["format"].startswith("raw") else f"{row['decode_ms_per_image']:.2f} ms"
        lines.append(f"| {row['resolution']} | {row['format']} | {shown} | {size / raw[row['resolution']]:.2f} | "
                     f"{row['read_images_per_s']:,.0f} images/s | {decode_ms} | {'yes' if row['lossless'] else 'no'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, default=None, help="a folder of RGB photos to crop images from")
    parser.add_argument("--counts", default="64=2000,256=300,1024=40", help="RESOLUTION=IMAGES,...")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per format and resolution")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=None, help="where to write the datasets (a temporary folder)")
    args = parser.parse_args()
    counts = {int(r): int(n) for r, n in (part.split("=") for part in args.counts.split(","))}
    rows, notes = [], set()
    with tempfile.TemporaryDirectory(dir=args.work) as work:
        for resolution, count in counts.items():
            found, note = measure(resolution, count, args.photos, Path(work), args.batch, args.seconds, args.seed)
            rows += found
            notes.add(note)
            print(f"{resolution} px done", file=sys.stderr, flush=True)
    record = {"machine": machine(), "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
              "images": sorted(notes), "batch": args.batch, "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    slug = "".join(ch if ch.isalnum() else "-" for ch in platform.node() or "machine")
    (RESULTS / f"data-storage-{slug}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"machine: {record['machine']}\nimages: {'; '.join(record['images'])}\n")
    print(table(rows))


if __name__ == "__main__":
    main()
