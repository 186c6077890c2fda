"""`ganzoo pretrained list|get`: the catalog of published checkpoints, downloads from a server on 127.0.0.1.

A guard (test_catalog's) refuses any host but 127.0.0.1; $GANZOO_PRETRAINED
points catalog entries at the local server. After a failure the cache holds
no file, partial or whole.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
import torch
from helpers import invoke
from test_catalog import Server, closed_port, offline  # noqa: F401  (offline: the autouse no-internet guard)

from ganzoo.pretrained import FULL_HEADER, HEADER, cached_path, catalog, get_entry

CYCLEGAN = ["horse2zebra", "zebra2horse", "monet2photo", "style_monet", "style_cezanne", "style_ukiyoe",
            "style_vangogh", "apple2orange", "orange2apple", "summer2winter_yosemite", "winter2summer_yosemite",
            "facades_label2photo", "map2sat", "sat2map", "iphone2dslr_flower"]
STYLEGAN = ["ffhq", "metfaces", "afhqcat", "afhqdog", "afhqwild", "brecahad", "cifar10"]


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def home(tmp_path, monkeypatch):
    path = tmp_path / "home"
    monkeypatch.setenv("GANZOO_HOME", str(path))
    monkeypatch.delenv("GANZOO_PRETRAINED", raising=False)
    monkeypatch.delenv("GANZOO_OFFLINE", raising=False)
    return path


@pytest.fixture(scope="module")
def horse2zebra_pth() -> bytes:
    """A file in the authors' format: the state dict of a resnet_9blocks generator (ngf 64), as torch.save writes it.

    ganzoo's layers line up with the reference's index for index; only the residual blocks' inner Sequential is
    named ``conv_block`` there (models/networks.py, ResnetBlock).
    """
    from ganzoo_cyclegan.networks import ResnetGenerator

    state = {key.replace(".block.", ".conv_block."): value
             for key, value in ResnetGenerator(3, 64, 9).state_dict().items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def serve(server, tmp_path, monkeypatch, body: bytes, *, name="horse2zebra", size=None, sha=None) -> str:
    """Put ``body`` on the server and point entry ``name`` at it (its true size and sha256 unless given)."""
    server.files["/h2z.pth"] = body
    size = len(body) if size is None else size
    sha = hashlib.sha256(body).hexdigest() if sha is None else sha
    path = tmp_path / "extra.tsv"
    path.write_text(f"{HEADER}\n{name}\tcyclegan\t{server.url('/h2z.pth')}\t{size}\t{sha}\tBSD-2-Clause\t"
                    f"{name}.pth\n")
    monkeypatch.setenv("GANZOO_PRETRAINED", str(path))
    return server.url("/h2z.pth")


def files_in(home: Path) -> list[Path]:
    return sorted(p for p in home.rglob("*") if p.is_file()) if home.exists() else []


def test_list_shows_every_published_checkpoint(home):
    result = invoke("pretrained", "list")
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line.split() for line in result.output.splitlines()[2:]}
    assert sorted(lines) == sorted(CYCLEGAN + STYLEGAN)
    assert all(lines[n][1:4] == ["cyclegan", "?", "BSD-2-Clause"] for n in CYCLEGAN)
    assert all(lines[n][1] == "stylegan-lite" and "NVIDIA" in lines[n][3] for n in STYLEGAN)
    entries = catalog()
    assert entries["horse2zebra"].url == "https://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models/horse2zebra.pth"
    assert entries["ffhq"].url == "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/ffhq.pkl"
    assert all(e.sha256 is None and e.bytes is None for e in entries.values())  # none published: none invented


def test_get_downloads_verifies_caches_and_imports(server, home, tmp_path, monkeypatch, horse2zebra_pth):
    serve(server, tmp_path, monkeypatch, horse2zebra_pth)
    out = tmp_path / "run"
    first = invoke("pretrained", "get", "horse2zebra", "--out", out)
    assert first.exit_code == 0, first.output
    cached = cached_path(get_entry("horse2zebra"))
    assert cached.read_bytes() == horse2zebra_pth and files_in(home) == [cached]
    assert (out / "config.json").exists() or f"ganzoo import {cached} --arch cyclegan --out {out}" in first.output
    second = invoke("pretrained", "get", "horse2zebra", "--out", tmp_path / "run2")
    assert second.exit_code == 0, second.output
    assert server.requests["/h2z.pth"] == 1  # the second get used the cache


def test_wrong_hash_or_size_is_refused_and_nothing_stays(server, home, tmp_path, monkeypatch):
    body = b"not the published weights" * 100
    serve(server, tmp_path, monkeypatch, body, sha="0" * 64)
    result = invoke("pretrained", "get", "horse2zebra", "--out", tmp_path / "run")
    assert result.exit_code == 1 and "sha256 mismatch" in result.output and "Traceback" not in result.output
    assert files_in(home) == [] and not (tmp_path / "run").exists()
    serve(server, tmp_path, monkeypatch, body, size=len(body) + 1)
    result = invoke("pretrained", "get", "horse2zebra")
    assert result.exit_code == 1 and "size mismatch" in result.output
    assert files_in(home) == []
    server.cut.add("/h2z.pth")  # the connection drops half way
    serve(server, tmp_path, monkeypatch, body)
    result = invoke("pretrained", "get", "horse2zebra")
    assert result.exit_code == 1 and files_in(home) == []


def test_offline_says_which_file_to_put_where(server, home, tmp_path, monkeypatch):
    url = serve(server, tmp_path, monkeypatch, b"x" * 10)
    monkeypatch.setenv("GANZOO_OFFLINE", "1")
    result = invoke("pretrained", "get", "horse2zebra")
    target = home / "pretrained" / "horse2zebra" / "horse2zebra.pth"
    assert result.exit_code == 1 and server.requests["/h2z.pth"] == 0
    assert result.output.count("\n") == 1 and url in result.output and str(target) in result.output
    # No network (nothing listening): the same advice after the reason.
    monkeypatch.delenv("GANZOO_OFFLINE")
    path = tmp_path / "extra.tsv"
    path.write_text(path.read_text().replace(f":{server.httpd.server_port}/", f":{closed_port()}/"))
    result = invoke("pretrained", "get", "horse2zebra")
    assert result.exit_code == 1 and "connection refused" in result.output and str(target) in result.output
    assert files_in(home) == []


def test_unknown_name_lists_the_choices(home):
    result = invoke("pretrained", "get", "hors2zebra")
    assert result.exit_code == 1
    assert "did you mean horse2zebra" in result.output and "ffhq" in result.output and "style_monet" in result.output


# --- cifar10: a class-conditional stylegan2-ada pickle -----------------------------------------------------------

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def test_the_catalog_records_cifar10s_class_names(home):
    entries = catalog()
    assert entries["cifar10"].classes == tuple(CIFAR10_CLASSES)
    assert [n for n, e in entries.items() if e.classes] == ["cifar10"]


def test_a_catalog_file_without_the_classes_column_still_reads_and_bad_classes_are_named(home, tmp_path,
                                                                                          monkeypatch):
    path = tmp_path / "extra.tsv"
    path.write_text(f"{HEADER}\nmine\tstylegan-lite\thttp://127.0.0.1:9/m.pkl\t-\t-\tMIT\tm.pkl\n")
    monkeypatch.setenv("GANZOO_PRETRAINED", str(path))
    assert catalog()["mine"].classes is None
    path.write_text(f"{FULL_HEADER}\nmine\tstylegan-lite\thttp://127.0.0.1:9/m.pkl\t-\t-\tMIT\tm.pkl\tcat,,dog\n")
    result = invoke("pretrained", "list")
    assert result.exit_code == 1 and f"{path}, line 2: bad classes 'cat,,dog'" in result.output


@pytest.fixture(scope="module")
def cifar10_nets():
    from stylegan_reference import cifar_networks

    return cifar_networks(c_dim=10, seed=21)


def test_get_cifar10_imports_a_conditional_network_that_draws_each_class(server, home, tmp_path, monkeypatch,
                                                                         cifar10_nets):
    """The catalog's cifar10 served from 127.0.0.1 (a small pickle of train.py's cifar networks: orig D,
    minibatch-std groups of 32, 2 mapping layers): imported with CIFAR-10's class names; each class drawn by
    ganzoo.sampling.generate is the reference's image for that class, and the classes differ."""
    import json

    from stylegan_reference import network_pickle_bytes

    from ganzoo import rundir
    from ganzoo.sampling import generate, to_uint8

    body = network_pickle_bytes(cifar10_nets, "# training/networks.py would follow\n")
    server.files["/cifar10.pkl"] = body
    entry = catalog()["cifar10"]
    extra = tmp_path / "extra.tsv"  # the built-in entry, served here; its size and sha256 unknown, as published
    extra.write_text(f"{FULL_HEADER}\ncifar10\tstylegan-lite\t{server.url('/cifar10.pkl')}\t-\t-\t{entry.licence}\t"
                     f"cifar10.pkl\t{','.join(entry.classes)}\n")
    monkeypatch.setenv("GANZOO_PRETRAINED", str(extra))
    out = tmp_path / "cifar10"
    result = invoke("pretrained", "get", "cifar10", "--out", out)
    assert result.exit_code == 0, result.output
    pin = result.output.splitlines()
    assert pin[pin.index(FULL_HEADER) + 1].endswith("\tcifar10.pkl\t" + ",".join(CIFAR10_CLASSES))
    record = json.loads((out / "config.json").read_text())
    assert record["classes"] == CIFAR10_CLASSES
    cfg = record["config"]
    assert (cfg["c_dim"], cfg["d_architecture"], cfg["mbstd_group"], cfg["mapping_layers"]) == (10, "orig", 32, 2)
    run = rundir.open_run(out)
    assert rundir.run_classes(run) == CIFAR10_CLASSES
    nets, _ = rundir.load_sampling_nets(run, torch.device("cpu"))
    spec = run.arch.generators(run.resolved.config)["G"]
    z = torch.from_numpy(spec.latents(3, 5)["z"]).double()
    images = []
    for k in range(10):
        got = generate(nets["G"], spec, 3, 5, torch.device("cpu"), labels=k)
        with torch.no_grad():
            want = to_uint8(cifar10_nets["G_ema"](z, c=torch.nn.functional.one_hot(torch.full((3,), k), 10).double())
                            .clamp(-1, 1))
        assert (got.int() - want.int()).abs().max() <= 1  # uint8 rounding at most
        images.append(got)
    assert all(not torch.equal(images[a], images[b]) for a in range(10) for b in range(a))
