"""The feed over tensors and prepared datasets, read ahead in a thread: the same batches as a plain loop
makes them (crops, flips and CycleGAN's random B included), exact resume, each rank's rows, errors raised
as themselves, no thread left behind; and the share of a step spent waiting for data, logged."""

from __future__ import annotations

import gc
import json
import threading
import time

import pytest
import torch
from helpers import SMOKE, checkpoint_tensors, ganzoo

from ganzoo import config, registry
from ganzoo.api import IMAGES, UNPAIRED, DataSpec
from ganzoo.data import ImageSet
from ganzoo.data.prepared import open_prepared, write_synthetic
from ganzoo.data.unpaired import UnpairedSet
from ganzoo.errors import UserError
from ganzoo.train.feed import ImageFeed, UnpairedFeed, make_feed
from ganzoo.train.trainer import Trainer

CPU = torch.device("cpu")
CROP_FLIP = DataSpec(IMAGES, 6, 3, decode_resolution=9, flip=True)


def reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "ganzoo-feed"]


def expected_batches(images: torch.Tensor, batch: int, seed: int, spec: DataSpec, steps: int, b=None):
    """The feed's batches by its definition, written out plainly (as today's feed makes them): a permutation
    per epoch from (seed, epoch); from one generator, B's indices (unpaired), then per domain crop rows,
    crop columns and flips for the batch; ragged ends dropped; A taken modulo its size."""
    length = len(images) if b is None else max(len(images), len(b))
    rng = torch.Generator().manual_seed(seed * 1_000_003 + 7)
    size, target = images.shape[-1], spec.resolution

    def augment(raw):
        ys = torch.randint(0, size - target + 1, (len(raw),), generator=rng)
        xs = torch.randint(0, size - target + 1, (len(raw),), generator=rng)
        flips = torch.rand(len(raw), generator=rng) < 0.5
        out = [raw[i, :, ys[i]:ys[i] + target, xs[i]:xs[i] + target] for i in range(len(raw))]
        return torch.stack([o.flip(-1) if f else o for o, f in zip(out, flips)]).float() / 127.5 - 1

    epoch, index, order, out = 0, 0, None, []
    for _ in range(steps):
        if order is None or index + batch > length:
            if order is not None:
                epoch, index = epoch + 1, 0
            order = torch.randperm(length, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        picked = order[index:index + batch]
        index += batch
        if b is None:
            out.append({"image": augment(images[picked])})
        else:
            index_b = torch.randint(0, len(b), (batch,), generator=rng)
            a_raw, b_raw = images[picked % len(images)], b[index_b]
            out.append({"A": augment(a_raw), "B": augment(b_raw)})
    return out


def prepared(tmp_path, count: int, size: int, domains=("images",), seed: int = 0):
    folder = write_synthetic(tmp_path / f"prepared-{'-'.join(domains)}-{count}", count, 3, size, seed=seed,
                             domains=domains)
    return open_prepared(folder).domains


def assert_same(batches: list[dict], expected: list[dict]) -> None:
    assert len(batches) == len(expected)
    for step, (got, want) in enumerate(zip(batches, expected)):
        assert got.keys() == want.keys()
        for key in got:
            assert torch.equal(got[key], want[key]), f"batch {step} {key} differs"


@pytest.mark.parametrize("read_ahead", [0, 2])
@pytest.mark.parametrize("store", ["tensor", "prepared"])
def test_image_batches_are_the_feeds_definition_with_or_without_reading_ahead(tmp_path, store, read_ahead):
    images = prepared(tmp_path, 21, 9)["images"]
    tensor = images.read_all()
    feed = ImageFeed(tensor if store == "tensor" else images, 4, seed=5, device=CPU, spec=CROP_FLIP,
                     read_ahead=read_ahead)
    assert feed.reads_ahead == (read_ahead > 0)
    batches = [feed.next() for _ in range(13)]  # 5 steps an epoch: two epoch boundaries
    feed.close()
    assert_same(batches, expected_batches(tensor, 4, 5, CROP_FLIP, 13))


@pytest.mark.parametrize("store", ["tensor", "prepared"])
def test_unpaired_batches_read_ahead_are_todays_a_in_order_and_b_at_random(tmp_path, store):
    domains = {**prepared(tmp_path, 7, 9, ("A",), seed=1), **prepared(tmp_path, 11, 9, ("B",), seed=2)}
    a, b = domains["A"].read_all(), domains["B"].read_all()
    spec = DataSpec(UNPAIRED, 6, 3, decode_resolution=9, flip=True)
    source = (a, b) if store == "tensor" else (domains["A"], domains["B"])
    ahead = UnpairedFeed(*source, 3, seed=2, device=CPU, spec=spec)
    plain = UnpairedFeed(*source, 3, seed=2, device=CPU, spec=spec, read_ahead=0)
    assert ahead.reads_ahead and not plain.reads_ahead
    batches = [ahead.next() for _ in range(9)]
    ahead.close()
    assert_same(batches, expected_batches(a, 3, 2, spec, 9, b=b))
    assert_same([plain.next() for _ in range(9)], batches)


def test_each_rank_reads_its_rows_of_the_one_process_batch(tmp_path):
    images = prepared(tmp_path, 16, 9)["images"]
    whole = ImageFeed(images, 4, 3, CPU, spec=CROP_FLIP, read_ahead=0)
    ranks = [ImageFeed(images, 4, 3, CPU, spec=CROP_FLIP, rank=r, world_size=2) for r in range(2)]
    for _ in range(6):
        expected = whole.next()["image"]
        assert torch.equal(torch.cat([rank.next()["image"] for rank in ranks]), expected)
    for rank in ranks:
        rank.close()


def test_resume_mid_epoch_while_reading_ahead_continues_exactly(tmp_path):
    """The position saved is the next batch the trainer gets, not the batches the thread drew ahead."""
    images = prepared(tmp_path, 20, 9)["images"]
    running = ImageFeed(images, 3, 1, CPU, spec=CROP_FLIP)
    plain = ImageFeed(images, 3, 1, CPU, spec=CROP_FLIP, read_ahead=0)
    for _ in range(4):  # mid-epoch (6 steps an epoch)
        running.next(), plain.next()
    deadline = time.monotonic() + 10
    while running._ahead._items.qsize() < 1 and time.monotonic() < deadline:  # the thread has drawn ahead
        time.sleep(0.01)
    state = running.state_dict()
    assert (state["epoch"], state["index"]) == (0, 12) and torch.equal(state["rng"], plain.state_dict()["rng"])
    resumed = ImageFeed(images, 3, 1, CPU, spec=CROP_FLIP)
    resumed.load_state_dict(state)
    assert_same([resumed.next() for _ in range(8)], [running.next() for _ in range(8)])
    running.load_state_dict(state)  # a rollback: what was read ahead is dropped, the draws go back
    again = ImageFeed(images, 3, 1, CPU, spec=CROP_FLIP, read_ahead=0)
    again.load_state_dict(state)
    assert_same([running.next() for _ in range(3)], [again.next() for _ in range(3)])
    for feed in (running, resumed):
        feed.close()


class _Failing:
    """An image store whose third gather fails as a damaged shard would (stands in for a PreparedImages)."""

    def __init__(self, images: torch.Tensor, error: Exception):
        self.images, self.error, self.calls = images, error, 0
        self.shape, self.nbytes = tuple(images.shape), images.numel()

    def __len__(self) -> int:
        return len(self.images)

    def gather(self, indices: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == 3:
            raise self.error
        return self.images[indices]


def test_an_error_in_the_reading_thread_is_raised_as_itself_in_the_step():
    error = UserError("/data/images-00003.u8 is truncated: the prepared dataset is damaged")
    feed = ImageFeed(_Failing(torch.zeros(12, 3, 9, 9, dtype=torch.uint8), error), 2, 0, CPU, spec=CROP_FLIP)
    feed.next(), feed.next()
    with pytest.raises(UserError) as raised:
        feed.next()
    assert raised.value is error
    with pytest.raises(UserError) as again:
        feed.next()
    assert again.value is error
    feed.close()
    assert not reader_threads()


def test_a_dropped_feed_stops_its_thread(tmp_path):
    feed = ImageFeed(torch.zeros(12, 3, 9, 9, dtype=torch.uint8), 2, 0, CPU, spec=CROP_FLIP)
    feed.next()
    assert len(reader_threads()) == 1
    del feed
    gc.collect()
    deadline = time.monotonic() + 5
    while reader_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not reader_threads()


def _trainer(name: str, data, run_dir, steps: int, resume: bool = False, **flags):
    arch = registry.get(name)
    resolved = config.resolve(arch, preset="smoke", flags={"device": "cpu", "steps": steps, "log_every": 1,
                                                           "checkpoint_every": 3, "sample_every": 100, **flags})
    return Trainer(arch, resolved, data, run_dir, resume=resume)


def test_training_on_a_prepared_dataset_resumes_exactly_and_leaves_no_thread(tmp_path):
    """CycleGAN's smoke config (random B, crops and flips) on a prepared A/B dataset, read ahead."""
    spec = registry.get("cyclegan").data_spec(config.resolve(registry.get("cyclegan"), preset="smoke").config)
    folder = write_synthetic(tmp_path / "ab", 9, spec.channels, spec.decode_resolution, domains=("A", "B"))
    domains = open_prepared(folder).domains
    data = UnpairedSet(domains["A"], domains["B"], "ab", str(folder))
    one = _trainer("cyclegan", data, tmp_path / "one", 7)
    assert one.feed.reads_ahead and one.run().step == 7
    assert not reader_threads()
    split = _trainer("cyclegan", data, tmp_path / "split", 7)
    assert split.run(until=4).step == 4  # mid-epoch (4 steps an epoch at batch 2)
    assert not reader_threads()
    assert _trainer("cyclegan", data, tmp_path / "split", 7, resume=True).run().step == 7
    a, b = checkpoint_tensors(tmp_path / "one"), checkpoint_tensors(tmp_path / "split")
    assert a.keys() == b.keys()
    for key in a:
        assert (torch.equal(a[key], b[key]) if torch.is_tensor(a[key]) else a[key] == b[key]), key


def test_a_training_step_that_fails_in_the_reading_thread_stops_the_run_with_that_error(tmp_path):
    arch = registry.get("dcgan")
    spec = arch.data_spec(config.resolve(arch, preset="smoke").config)
    error = UserError("/data/images-00000.u8 changed since it was prepared")
    images = torch.zeros(24, spec.channels, spec.resolution, spec.resolution, dtype=torch.uint8)
    trainer = _trainer("dcgan", ImageSet(_Failing(images, error), None, "x", "x"), tmp_path / "run", 6)
    with pytest.raises(UserError) as raised:
        trainer.run()
    assert raised.value is error and not reader_threads()


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size,target", [(9, 6), (8, 8), (64, 56)])
def test_host_crops_are_the_bytes_of_the_device_gather(size, target, channels):
    """The host's slice per image and the device's one gather (run here on the CPU) agree byte for byte."""
    from ganzoo.train.feed import _crop_and_flip, _gather_crops

    generator = torch.Generator().manual_seed(size)
    images = torch.randint(0, 256, (32, channels, size, size), dtype=torch.uint8, generator=generator)
    ys, xs = (torch.randint(0, size - target + 1, (32,), generator=generator) for _ in range(2))
    flips = torch.rand(32, generator=generator) < 0.5
    host, device = _crop_and_flip(images, ys, xs, flips, target), _gather_crops(images, ys, xs, flips, target)
    assert torch.equal(host, device) and host.stride() == device.stride()  # a layout is a numerical path too


def test_a_prepared_dataset_read_onto_a_device_a_chunk_at_a_time_is_all_of_it(tmp_path):
    from ganzoo.train.feed import _read_onto

    images = prepared(tmp_path, 37, 9)["images"]
    for chunk in (1, 3 * 9 * 9 * 5, 1 << 30):  # an image a chunk, five, all
        assert torch.equal(_read_onto(images, CPU, chunk), images.read_all())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("kind", [IMAGES, UNPAIRED])
def test_cuda_batches_are_the_same_read_ahead_from_the_host_or_resident_on_the_device(tmp_path, kind):
    """Host-resident (read ahead, cropped on the CPU, pinned, copied) and device-resident (read whole onto
    the GPU, cropped there) give the CPU's uint8 crops, bit for bit and in the same layout, and the same
    scaled batches on the GPU. (The scaling itself is compared GPU to GPU: CUDA divides by a scalar as a
    multiplication by its reciprocal, which may differ from the CPU's division in the last bit.)"""
    cuda = torch.device("cuda")
    places = ((CPU, True), (cuda, False), (cuda, True))
    if kind == IMAGES:
        store = prepared(tmp_path, 21, 9)["images"]

        def feeds():
            return [ImageFeed(store, 4, 5, device, spec=CROP_FLIP, resident=resident) for device, resident in places]
    else:
        domains = {**prepared(tmp_path, 7, 9, ("A",)), **prepared(tmp_path, 11, 9, ("B",))}
        spec = DataSpec(UNPAIRED, 6, 3, decode_resolution=9, flip=True)

        def feeds():
            return [UnpairedFeed(domains["A"], domains["B"], 3, 2, device, spec=spec, resident=resident)
                    for device, resident in places]
    on_cpu, host, resident = raw_feeds = feeds()
    assert on_cpu.reads_ahead and host.reads_ahead and not resident.reads_ahead
    for _ in range(9):
        expected = on_cpu.next_raw()
        for feed in (host, resident):
            batch = feed.next_raw()
            assert all(torch.equal(batch[k].cpu(), expected[k]) and batch[k].stride() == expected[k].stride()
                       for k in expected)
    _, host, resident = scaled_feeds = feeds()
    for _ in range(9):
        a, b = host.next(), resident.next()
        assert all(a[k].is_cuda and torch.equal(a[k], b[k]) for k in a)
    for feed in raw_feeds + scaled_feeds:
        feed.close()


def test_make_feed_takes_a_prepared_dataset_and_keeps_it_on_disk(tmp_path):
    images = prepared(tmp_path, 10, 9)["images"]
    feed = make_feed(ImageSet(images, None, "p", "p"), 4, 0, CPU, CROP_FLIP)
    assert feed.images is images and len(feed) == 10  # never read whole on the host
    fixed = feed.fixed_batch(3)["image"]
    assert torch.equal(fixed, feed.center(images.gather(torch.tensor([0, 4, 9]))).float() / 127.5 - 1)


def test_smoke_training_logs_the_share_of_time_waiting_for_data(tmp_path):
    """A real `ganzoo train`: every log record has data_wait in [0, 1], and the progress line shows it."""
    run = tmp_path / "run"
    result = ganzoo("train", "dcgan", *SMOKE, "--steps", 6, "--set", "log_every=2", "--out", run)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4, 6]
    for record in records:
        assert 0 <= record["data_wait"] <= 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("step ")]
    assert lines and all(" data " in line and line.endswith("%") for line in lines[1:]), result.stderr


def test_bench_training_rows_carry_the_data_wait(tmp_path):
    from ganzoo.bench.report import training_table
    from ganzoo.bench.training import TrainingCase, bench_training

    case = TrainingCase(registry.get("dcgan"), {}, "synthetic", "smoke", None, CPU)
    section = bench_training(case, {"reference": {}, "default": {}}, warmup=1, steps=3, echo=lambda text: None)
    for row in section["variants"].values():
        assert 0 <= row["data_wait"] <= 1
    table = training_table({"training": section})
    assert "| data wait |" in table.splitlines()[0]
    assert not reader_threads()


def test_bench_feed_measures_each_resolution_against_the_targets(tmp_path):
    """`ganzoo bench --smoke --no-training --no-inference --feed`, in a real subprocess."""
    result = ganzoo("bench", "--smoke", "--no-training", "--no-inference", "--feed", "--device", "cpu",
                    "--json", tmp_path / "r.json", "--markdown", tmp_path / "r.md", env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "r.json").read_text())
    assert record["complete"] is True and record["cases"] == []
    section = record["feed"]
    assert section["complete"] is True and section["planned"] == ["64 px cpu", "256 px cpu", "1024 px cpu"]
    rows = section["measured"]
    assert [row["resolution"] for row in rows] == [64, 256, 1024]
    for row in rows:
        for kind in ("warm", "host", "in_step"):
            assert row[kind]["images_per_s"] == pytest.approx(row["batch"] / row[kind]["mean_s"])
        assert row["cold"]["images_per_s"] > 0 and row["disk_bytes"] >= row["count"] * 3 * row["resolution"] ** 2
    assert [row["target_images_per_s"] for row in rows] == [50_000, 200, None]
    assert rows[0]["host_vs_target"] == pytest.approx(rows[0]["host"]["images_per_s"] / 50_000)
    tables = (tmp_path / "r.md").read_text()
    assert "### Feed throughput" in tables and "| 256 | 8 | 32 |" in tables
    assert "64 px cpu  batch 32: cold " in result.stdout


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["dcgan", "cyclegan"])
def test_cuda_steps_reading_host_data_ahead_make_no_host_sync(name, tmp_path):
    """data_on_device=off: every batch is read ahead on the host, pinned and copied; under
    set_sync_debug_mode("error") no step or log point synchronises (tests/test_cuda_sync.py's check)."""
    from ganzoo.testing import synthetic_data

    arch = registry.get(name)
    flags = {"device": "cuda", "optimizer": "fused", "data_on_device": "off", "steps": 9, "log_every": 2,
             "sample_every": 10**9, "checkpoint_every": 10**9}
    resolved = config.resolve(arch, preset="smoke", flags=flags)
    data = synthetic_data(arch, resolved.config, n=max(32, 2 * resolved.config.batch_size))
    trainer = Trainer(arch, resolved, data, tmp_path)
    assert trainer.feed.reads_ahead
    trainer.run(until=2)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        trainer.run()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4, 6, 8, 9] and all(0 <= r["data_wait"] <= 1 for r in records)
    assert not reader_threads()
