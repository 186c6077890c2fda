"""Class-conditional StyleGAN-lite (``c_dim``): stylegan2-ada-pytorch's conditioning, its losses with labels,
truncation and style mixing with a class, the ``cifar`` config, export and ``style-mix --class``.

The networks' numbers are compared with the reference's definitions in tests/test_import_stylegan.py
(tests/stylegan_reference.py); here: what reaches the networks, and a conditional run end to end.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from ganzoo import config, registry, rundir
from ganzoo.api import LossContext, OneHot, label_distribution
from ganzoo.data import load_images
from ganzoo.data.embedded import CLASS_NAMES
from ganzoo.train.trainer import Trainer
from ganzoo_stylegan_lite import StyleGANLite
from ganzoo_stylegan_lite.networks import channels_at
from helpers import checkpoint_tensors, invoke
from test_resume import assert_identical

ARCH = StyleGANLite()


def cfg_of(**values):
    cfg = ARCH.make_config({**ARCH.smoke, **values})
    ARCH.validate(cfg)
    return cfg


def one_hot(labels, n=10):
    return torch.nn.functional.one_hot(torch.as_tensor(labels), n).float()


def test_unconditional_stylegan_lite_is_what_it_was():
    cfg = cfg_of()
    assert ARCH.class_count_key == "c_dim" and cfg.c_dim == 0 and ARCH.num_classes(cfg) == 0
    assert not ARCH.data_spec(cfg).labels
    spec = ARCH.generators(cfg)["G"]
    assert spec.inputs == ("z", "truncation") and spec.latents.label_part is None
    nets = ARCH.build(cfg)
    assert not [k for k in nets["G"].state_dict() if "embed" in k]
    assert not [k for k in nets["D"].state_dict() if k.startswith("mapping")]
    assert nets["D"].out.weight.shape[0] == 1


def test_a_conditional_config_asks_for_labels_and_takes_a_one_hot_label_input():
    cfg = cfg_of(c_dim=10)
    assert ARCH.num_classes(cfg) == 10 and ARCH.data_spec(cfg).labels
    spec = ARCH.generators(cfg)["G"]
    assert spec.inputs == ("z", "truncation", "label") and spec.latents.parts[-1] == OneHot("label", (10,))
    unconditional = ARCH.generators(cfg_of())["G"].latents(5, 3)
    inputs = spec.latents(5, 3, labels=[0, 1, 2, 3, 9])
    assert np.array_equal(inputs["z"], unconditional["z"])  # z for a seed does not depend on the class
    G, D = ARCH.build(cfg).values()
    w, cmap = cfg.w_dim, channels_at(4, cfg.channel_base, cfg.channel_max)
    assert G.mapping.embed.weight.shape == (w, 10) and G.mapping.layers[0].weight.shape == (w, cfg.z_dim + w)
    assert D.mapping.embed.weight.shape == (cmap, 10) and len(D.mapping.layers) == cfg.d_mapping_layers == 8
    assert D.out.weight.shape == (cmap, cmap) and not hasattr(D.mapping, "w_avg")
    images = G.eval()(*[torch.from_numpy(inputs[k]) for k in spec.inputs])
    assert images.shape == (5, 1, 16, 16) and D(images, torch.from_numpy(inputs["label"])).shape == (5, 1)


def test_the_class_changes_the_image_and_truncation_pulls_every_class_to_the_one_w_avg():
    torch.manual_seed(0)
    G = ARCH.build(cfg_of(c_dim=10))["G"]
    G.train()(torch.randn(64, 16), label=one_hot(torch.arange(64) % 10))  # w_avg tracked over every class
    G.eval()
    z = torch.randn(4, 16)
    full, none = torch.ones(4, 1), torch.zeros(4, 1)
    assert (G(z, full, one_hot([1] * 4)) - G(z, full, one_hot([2] * 4))).abs().max() > 1e-3
    assert torch.allclose(G(z, none, one_hot([1] * 4)), G(z, none, one_hot([2] * 4)), atol=1e-6)
    w_avg = G.mapping.w_avg.expand(4, G.synthesis.num_ws, -1)
    assert torch.allclose(G(z, none, one_hot([5] * 4)), G(ws=w_avg), atol=1e-6)


def test_style_mixing_maps_the_second_latent_with_the_same_class():
    G = ARCH.build(cfg_of(c_dim=10))["G"].eval()
    z, z2, c = torch.randn(3, 16), torch.randn(3, 16), one_hot([4, 7, 0])
    mask = torch.arange(G.synthesis.num_ws) >= 3
    mixed = G(z, label=c, mix_z=z2, mix_mask=mask, styles_only=True)
    assert torch.equal(mixed[:, 3:], G(z2, label=c, styles_only=True)[:, 3:])
    assert torch.equal(mixed[:, :3], G(z, label=c, styles_only=True)[:, :3])


class Recorder(torch.nn.Module):
    """A network whose every call is kept (its keyword arguments), for what a loss hands it."""

    def __init__(self, net):
        super().__init__()
        self.net, self.calls = net, []

    def forward(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        return self.net(*args, **kwargs)


def test_losses_pass_labels_as_stylegan2_ada_does():
    """Generated images (G, D, path length) are drawn and judged with classes from the data's label
    distribution (here only 3 and 7: gen_c), reals with their own (R1 included), both mixed latents with one."""
    cfg = ARCH.fit_to_data(cfg_of(c_dim=10, style_mixing=1.0, diffaugment="off"), 10000)
    nets = {role: Recorder(net) for role, net in ARCH.build(cfg).items()}
    real, real_labels = torch.randn(4, 1, 16, 16), torch.tensor([0, 1, 2, 9])
    data_labels = torch.tensor([3, 7, 7, 3, 7])
    ctx = LossContext(cfg=cfg, device=torch.device("cpu"), generator=torch.Generator().manual_seed(0), step=0,
                      total_steps=10, log=lambda *a: None, label_cdf=label_distribution(data_labels, 10))
    phases = {p.name: p for p in ARCH.phases(cfg)}
    batch = {"image": real, "label": real_labels}

    def calls(phase):
        for net in nets.values():
            net.calls.clear()
        ARCH.loss(phases[phase], nets, batch, ctx)
        return nets["G"].calls, nets["D"].calls

    def classes(onehot):
        assert onehot.shape[1] == 10 and torch.equal(onehot.sum(1), torch.ones(len(onehot)))
        return set(onehot.argmax(1).tolist())

    g, d = calls("G")
    (_, g_kwargs), = g
    (d_args, _), = d
    assert classes(g_kwargs["label"]) <= {3, 7} and "mix_z" in g_kwargs
    assert torch.equal(d_args[1], g_kwargs["label"])  # D judges a fake as the class it was drawn for
    g, d = calls("D")
    (_, g_kwargs), = g
    (fake_args, _), (real_args, _) = d
    assert classes(g_kwargs["label"]) <= {3, 7} and torch.equal(fake_args[1], g_kwargs["label"])
    assert torch.equal(real_args[1], one_hot(real_labels))
    _, d = calls("D_r1")
    (r1_args, _), = d
    assert torch.equal(r1_args[1], one_hot(real_labels))
    g, _ = calls("G_pl")
    (_, styles_kwargs), (_, image_kwargs) = g
    assert styles_kwargs["styles_only"] and classes(styles_kwargs["label"]) <= {3, 7} and "mix_z" in styles_kwargs
    assert "label" not in image_kwargs  # the styles already hold the class


def test_the_cifar_preset_is_stylegan2_adas_cifar_config():
    """train.py's cifar spec: map 2, mbstd 32, fmaps 1 (channel_base 32768), lr 0.0025, gamma 0.01, ema 500 kimg,
    ramp 0.05, batch 64; pl_weight 0, style mixing 0 and D architecture 'orig'; conv_clamp 256."""
    resolved = config.resolve(ARCH, preset="cifar")
    cfg, opts = resolved.config, resolved.train
    assert (cfg.resolution, cfg.channels, cfg.z_dim, cfg.w_dim, cfg.mapping_layers) == (32, 3, 512, 512, 2)
    assert (cfg.channel_base, cfg.channel_max, cfg.mbstd_group, cfg.batch_size) == (32768, 512, 32, 64)
    assert (cfg.lr, cfg.r1_gamma, cfg.pl_weight, cfg.style_mixing) == (0.0025, 0.01, 0.0, 0.0)
    assert (cfg.d_architecture, cfg.conv_clamp, opts.ema_kimg, opts.ema_rampup) == ("orig", 256.0, 500.0, 0.05)
    D = ARCH.build(cfg)["D"]
    assert all(block.skip is None for block in D.blocks.values())


@pytest.mark.parametrize("value, message", [
    ("c_dim=-1", "c_dim=-1: must be 0 (unconditional) or the number of classes"),
    ("d_architecture=skip", "d_architecture='skip': must be resnet or orig"),
    ("d_mapping_layers=-1", "d_mapping_layers=-1: must be 0 (the label embedding alone) or more"),
    ("z_dim=0", "z_dim=0: must be greater than 0 (the reference's label-only generator"),
])
def test_bad_conditional_settings_are_one_line(tmp_path, value, message):
    result = invoke("train", "stylegan-lite", "--preset", "smoke", "--device", "cpu", "--set", value,
                    "--steps", 1, "--out", tmp_path / "run")
    assert result.exit_code == 1 and message in result.output, result.output
    assert result.output.count("\n") == 1 and not (tmp_path / "run").exists()


def conditional_trainer(run_dir, steps, resume=False, **values):
    resolved = config.resolve(ARCH, preset="smoke", sets={"c_dim": 10, "pl_interval": 2, "r1_interval": 3,
                                                          **values},
                              flags={"steps": steps, "device": "cpu", "log_every": 1, "checkpoint_every": 2,
                                     "sample_n": 20})
    dataset = load_images(None, ARCH.data_spec(resolved.config))
    if not resume:
        run_dir.mkdir(parents=True)
        rundir.write_config(run_dir, resolved, registry.get_with_entry(ARCH.name)[1], classes=list(CLASS_NAMES))
    return Trainer(ARCH, resolved, dataset, run_dir, resume=resume)


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("conditional") / "run"
    conditional_trainer(run, 3).run()
    return run


def test_a_conditional_run_trains_and_resumes_exactly(conditional_run, tmp_path):
    records = [json.loads(line) for line in (conditional_run / "metrics.jsonl").read_text().splitlines()]
    assert {"loss/G", "loss/D", "loss/G_pl", "loss/D_r1"} <= set().union(*records)
    assert all(np.isfinite(r["loss/D"]) for r in records)
    # the preview: one row per class, two images each (sample_n 20)
    assert Image.open(conditional_run / "samples" / "step-0000003.png").size == (2 * 18 + 2, 10 * 18 + 2)
    conditional_trainer(tmp_path / "split", 2).run()
    conditional_trainer(tmp_path / "split", 3, resume=True).run()
    assert_identical(checkpoint_tensors(conditional_run), checkpoint_tensors(tmp_path / "split"))


def test_a_conditional_run_exports_with_its_label_input(conditional_run, tmp_path):
    import onnx

    result = invoke("export", conditional_run, "--out", tmp_path / "export")
    assert result.exit_code == 0, result.output
    (model,) = (tmp_path / "export").glob("*.onnx")
    graph = onnx.load(str(model)).graph
    assert [i.name for i in graph.input] == ["z", "truncation", "label"]
    assert graph.input[2].type.tensor_type.shape.dim[1].dim_value == 10


def test_style_mix_takes_a_class_by_name_or_number(conditional_run, tmp_path):
    grids, said = {}, {}
    for value in ("Trouser", "1", "Bag"):
        out = tmp_path / f"mix-{value}.png"
        result = invoke("style-mix", conditional_run, "--rows", 2, "--cols", 3, "--class", value, "--out", out,
                        "--device", "cpu")
        assert result.exit_code == 0, result.output
        grids[value], said[value] = np.asarray(Image.open(out)), result.output
    assert "class 1 (Trouser)" in said["Trouser"] and "class 8 (Bag)" in said["Bag"]
    assert np.array_equal(grids["Trouser"], grids["1"]) and not np.array_equal(grids["1"], grids["Bag"])
    result = invoke("style-mix", conditional_run, "--class", "12", "--out", tmp_path / "x.png")
    assert result.exit_code == 1 and "--class 12 is out of range" in result.output and "10 classes" in result.output
    result = invoke("style-mix", conditional_run, "--class", "Trousr", "--out", tmp_path / "x.png")
    assert result.exit_code == 1 and "1 Trouser" in result.output and "9 Ankle boot" in result.output
    assert not (tmp_path / "x.png").exists()
