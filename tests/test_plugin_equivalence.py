"""The built-in architectures compute the same on one process as on two (issue 15).

Real processes: two ranks joined by torch.distributed over gloo on 127.0.0.1, each
computing its half of a global batch, against one process computing the whole
batch, from the same weights and the same LossContext generator seed
(tests/plugin_equivalence_worker.py). Every phase's loss and the gradients of the
networks it trains, averaged over the ranks, must equal the one process's to
float32 tolerance, for three steps (CycleGAN's pools are full and swapping from
the first; StyleGAN-lite's R1 and path-length phases run every step).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow  # three processes that import torch and run every phase three times: ~13 s

WORKER = Path(__file__).with_name("plugin_equivalence_worker.py")
ARCHS = ("dcgan", "cyclegan", "stylegan-lite")
# float32: the halves' means and sums are rounded in another order than the whole batch's. Losses agree to 1e-5
# relative. A gradient agrees to 1e-4 of the largest gradient element of its phase (measured: at most 1.3e-5, in
# CycleGAN, whose instance norms over 6x6 maps amplify rounding; 1e-6 elsewhere); some gradients are rounding
# noise around zero (a bias before an instance norm), so no element-wise relative bound can hold.
TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}
SCALED = 1e-4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """{world_size: [each rank's records by architecture]} for one process and for two."""
    out = tmp_path_factory.mktemp("equivalence")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    port = free_port()
    runs = {(1, 0): None, (2, 0): None, (2, 1): None}
    for world_size, rank in runs:
        path = out / f"w{world_size}r{rank}.pt"
        command = [sys.executable, str(WORKER), ",".join(ARCHS), str(rank), str(world_size), str(port), str(path)]
        runs[world_size, rank] = (subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                   text=True), path)
    results = {1: [], 2: []}
    for (world_size, rank), (process, path) in runs.items():
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, f"world {world_size} rank {rank}:\n{output}"
        results[world_size].append(torch.load(path, weights_only=True))
    return results


@pytest.mark.parametrize("arch", ARCHS)
def test_two_processes_compute_the_losses_and_gradients_of_one(records, arch):
    one = records[1][0][arch]
    ranks = [r[arch] for r in records[2]]
    assert len(one["steps"]) == 3
    for step, phases in enumerate(one["steps"]):
        for name, expected in phases.items():
            scale = max(g.abs().max().item() for g in expected["grads"].values())
            for rank in ranks:
                got = rank["steps"][step][name]
                where = f"step {step} phase {name}"
                torch.testing.assert_close(got["loss"], expected["loss"], **TOLERANCE, msg=lambda m: f"{where}: {m}")
                assert got["grads"].keys() == expected["grads"].keys()
                for key, grad in expected["grads"].items():
                    deviation = (got["grads"][key] - grad).abs().max().item()
                    assert deviation <= SCALED * scale, f"{where} {key}: {deviation:.3g} off, at scale {scale:.3g}"


def test_every_rank_holds_the_one_process_pools(records):
    """CycleGAN's pools see the global batch: identical on both ranks and equal to one process's."""
    one = records[1][0]["cyclegan"]["state"]
    assert one["pool_A"]["count"] == one["pool_B"]["count"] == 3  # smoke pool_size: full after the first step
    for rank in records[2]:
        state = rank["cyclegan"]["state"]
        for key in ("pool_A", "pool_B"):
            assert state[key]["count"] == one[key]["count"]
            torch.testing.assert_close(state[key]["images"], one[key]["images"], **TOLERANCE)


def test_the_path_length_mean_follows_the_global_batch(records):
    one = records[1][0]["stylegan-lite"]["state"]["pl_mean"]
    assert one > 0
    for rank in records[2]:
        torch.testing.assert_close(rank["stylegan-lite"]["state"]["pl_mean"], one, **TOLERANCE)


def test_the_tracked_w_average_is_the_mean_of_the_ranks(records):
    """The mapping network's w_avg moves by the batch mean, linearly: each rank tracks its half, and their
    average is one process's value, so averaging this buffer over the ranks (the trainer's job) makes it exact."""
    one = records[1][0]["stylegan-lite"]["buffers"]["G.mapping.w_avg"]
    halves = [r["stylegan-lite"]["buffers"]["G.mapping.w_avg"] for r in records[2]]
    assert not torch.allclose(halves[0], halves[1])
    torch.testing.assert_close((halves[0] + halves[1]) / 2, one, **TOLERANCE)
