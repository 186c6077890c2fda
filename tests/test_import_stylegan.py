"""Importing stylegan2-ada-pytorch network pickles into StyleGAN-lite, never running what they hold.

The pickles are written here with the reference's structure (tests/stylegan_reference.py): persistence
records whose embedded source, if run, would create a marker file.
"""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
import torch
from stylegan_reference import LEGACY_D_MAPPING, cifar_networks, network_pickle_bytes, small_networks

from ganzoo.errors import UserError
from ganzoo_stylegan_lite import StyleGANLite
from ganzoo_stylegan_lite import layers as lite_layers
from ganzoo_stylegan_lite.importer import discriminator_table, generator_table
from helpers import ganzoo, invoke

ARCH = StyleGANLite()


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "the-pickled-source-ran"
    yield path
    assert not path.exists(), "code from the pickle was run"


def source_that_marks(marker) -> str:
    return f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n# training/networks.py would follow\n"


def write(tmp_path, marker, nets, name="network-snapshot-000000.pkl", extra=None):
    path = tmp_path / name
    path.write_bytes(network_pickle_bytes({**nets, **(extra or {})}, source_that_marks(marker)))
    return path


def refusal(files) -> str:
    with pytest.raises(UserError) as caught:
        ARCH.import_checkpoint(files)
    return str(caught.value)


def test_config_and_every_tensor_come_from_the_pickle(tmp_path, marker):
    nets = small_networks(resolution=32, channels=3)
    path = write(tmp_path, marker, nets, extra={"augment_pipe": None, "training_set_kwargs": {"resolution": 32}})
    imported = ARCH.import_checkpoint([path])
    assert imported.source == "stylegan2-ada-pytorch"
    assert imported.overrides == {"resolution": 32, "channels": 3, "z_dim": 8, "w_dim": 8, "mapping_layers": 2,
                                  "mapping_lr_multiplier": 0.01, "channel_base": 256, "channel_max": 16,
                                  "conv_clamp": 256.0, "mbstd_group": 4, "mbstd_channels": 1}
    assert "augment_pipe" in imported.files[path.name]
    built = ARCH.build(ARCH.make_config(imported.overrides))
    for key, role, (table, _) in (("G", "G", generator_table(32, 2)), ("G_ema", "G", generator_table(32, 2)),
                                  ("D", "D", discriminator_table(32))):
        got, source = imported.networks[key], nets[key].state_dict()
        assert set(got) == set(built[role].state_dict())  # every StyleGAN-lite tensor filled
        assert sorted(table.values()) == sorted(got)
        for ref, lite in table.items():  # each copied as stored: no flip, no rescale
            assert torch.equal(got[lite], source[ref]), ref
        built[role].load_state_dict(got, strict=True)
    assert not torch.equal(imported.networks["G"]["mapping.w_avg"], imported.networks["G_ema"]["mapping.w_avg"])


def lite_from(imported, key):
    role = "D" if key == "D" else "G"
    net = ARCH.build(ARCH.make_config(imported.overrides))[role]
    net.load_state_dict(imported.networks[key], strict=True)
    return net.double().eval()


@pytest.mark.parametrize("channels", [1, 3])
def test_mapping_and_discriminator_compute_the_reference(tmp_path, marker, channels):
    """fp64, against the reference's definitions (tests/stylegan_reference.py); a batch of 4 = one mbstd group."""
    nets = small_networks(resolution=32, channels=channels, seed=3)
    imported = ARCH.import_checkpoint([write(tmp_path, marker, nets)])
    G, D = lite_from(imported, "G_ema"), lite_from(imported, "D")
    z = torch.randn(4, 8, dtype=torch.float64)
    with torch.no_grad():
        for psi in (1.0, 0.7):
            want = nets["G_ema"].mapping(z, psi)
            got = G.mapping(z, torch.full((4, 1), psi, dtype=torch.float64))
            assert (got - want).abs().max() < 1e-10
        img = torch.randn(4, channels, 32, 32, dtype=torch.float64)
        assert (D(img) - nets["D"](img)).abs().max() < 1e-9


@pytest.mark.xfail(not hasattr(lite_layers, "upsample_conv3x3"), strict=True,
                   reason="StyleGAN-lite's up-sampling differs from the reference's until the up-sampling change "
                   "(issue 16, item 1: layers.upsample_conv3x3) is merged")
def test_generator_computes_the_reference(tmp_path, marker):
    nets = small_networks(resolution=32, channels=3, seed=5)
    imported = ARCH.import_checkpoint([write(tmp_path, marker, nets)])
    G = lite_from(imported, "G_ema")
    z = torch.randn(3, 8, dtype=torch.float64)
    with torch.no_grad():
        want = nets["G_ema"](z).clamp(-1, 1)
        got = G(z, torch.ones(3, 1, dtype=torch.float64))
    assert (got - want).abs().max() < 1e-9


def test_conv_clamp_is_applied_as_the_reference_applies_it(tmp_path, marker):
    """A clamp of 0.5 (256 in NVIDIA's configs) clips activations in G's convs and toRGBs and D's convs: the imported
    networks still equal the reference's definitions, and ignoring the clamp would not."""
    nets = small_networks(resolution=16, channels=3, seed=11, conv_clamp=0.5, d_conv_clamp=0.5)
    imported = ARCH.import_checkpoint([write(tmp_path, marker, nets)])
    assert imported.overrides["conv_clamp"] == 0.5
    G, D = lite_from(imported, "G_ema"), lite_from(imported, "D")
    unclamped = dict(imported.overrides, conv_clamp=None)
    G_free = ARCH.build(ARCH.make_config(unclamped))["G"].double().eval()
    G_free.load_state_dict(imported.networks["G_ema"], strict=True)
    D_free = ARCH.build(ARCH.make_config(unclamped))["D"].double().eval()
    D_free.load_state_dict(imported.networks["D"], strict=True)
    z = torch.randn(4, 8, dtype=torch.float64)
    img = torch.randn(4, 3, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        want_img = nets["G_ema"](z).clamp(-1, 1)
        got_img = G(z, torch.ones(4, 1, dtype=torch.float64))
        want_logit = nets["D"](img)
        assert (got_img - want_img).abs().max() < 1e-9
        assert (D(img) - want_logit).abs().max() < 1e-9
        assert (G_free(z, torch.ones(4, 1, dtype=torch.float64)) - want_img).abs().max() > 1e-2
        assert (D_free(img) - want_logit).abs().max() > 1e-2


def test_networks_with_different_conv_clamps_are_refused_by_name(tmp_path, marker):
    nets = small_networks(resolution=8, channels=1, conv_clamp=256, d_conv_clamp=None)
    message = refusal([write(tmp_path, marker, nets)])
    assert "D has conv_clamp None where another network has 256.0" in message


def test_conv_clamp_the_config_cannot_hold_is_refused_by_name(tmp_path, marker):
    nets = small_networks(resolution=8, channels=1, conv_clamp=-1, d_conv_clamp=-1)
    message = refusal([write(tmp_path, marker, nets)])
    assert "conv_clamp=-1.0" in message and "more than 0" in message


def test_the_import_note_keeps_fp16_and_no_longer_says_the_clamp_is_dropped(tmp_path, marker):
    path = write(tmp_path, marker, small_networks(resolution=8, channels=1))
    note = ARCH.import_checkpoint([path]).files[path.name]
    assert "fp16 layers (4 resolutions)" in note and "conv_clamp" not in note


@pytest.mark.slow
def test_imported_pickle_samples_exports_and_runs_without_torch_alike(tmp_path, marker):
    run_dir = tmp_path / "run"
    path = write(tmp_path, marker, small_networks(resolution=32, channels=3, seed=7))
    result = invoke("import", path, "--arch", "stylegan-lite", "--out", run_dir)
    assert result.exit_code == 0, result.output
    result = invoke("sample", run_dir, "--n", "6", "--seed", "4", "--out", tmp_path / "torch.npz")
    assert result.exit_code == 0, result.output
    result = invoke("export", run_dir, "--out", tmp_path / "export")
    assert result.exit_code == 0, result.output
    (model,) = (tmp_path / "export").glob("*.onnx")
    result = invoke("sample", model, "--n", "6", "--seed", "4", "--out", tmp_path / "onnx.npz")
    assert result.exit_code == 0, result.output
    a, b = np.load(tmp_path / "torch.npz"), np.load(tmp_path / "onnx.npz")
    assert a["images"].shape == (6, 32, 32, 3) and a["images"].std() > 0
    assert np.abs(a["images"].astype(int) - b["images"].astype(int)).max() <= 1  # uint8 images, rounding at most


# --- conditional pickles (c_dim > 0) -------------------------------------------------------------------------------

CONDITIONAL = {  # name -> (networks, batch): a batch of one minibatch-std group, so both groupings agree
    "resnet": (lambda seed: small_networks(resolution=16, channels=3, c_dim=10, seed=seed), 4),
    "cifar": (lambda seed: cifar_networks(c_dim=10, seed=seed), 8),  # orig D, groups of min(32, 8)
    "cifar-legacy": (lambda seed: cifar_networks(c_dim=10, seed=seed, d_mapping_kwargs=LEGACY_D_MAPPING), 8),
}


def labels(n, c_dim=10, seed=0):
    classes = torch.as_tensor(np.random.default_rng(seed).integers(0, c_dim, n))
    return classes, torch.nn.functional.one_hot(classes, c_dim).double()


def test_a_conditional_pickle_imports_its_label_layers(tmp_path, marker):
    nets = small_networks(resolution=16, channels=3, c_dim=10)
    imported = ARCH.import_checkpoint([write(tmp_path, marker, nets)])
    assert imported.overrides["c_dim"] == 10 and imported.overrides["d_mapping_layers"] == 8
    assert "d_architecture" not in imported.overrides  # resnet, the default
    cfg = ARCH.make_config(imported.overrides)
    built = ARCH.build(cfg)
    for key, role, (table, _) in (("G_ema", "G", generator_table(16, 2, 10)),
                                  ("D", "D", discriminator_table(16, 10, 8, "resnet"))):
        got, source = imported.networks[key], nets[key].state_dict()
        assert set(got) == set(built[role].state_dict())
        for ref, lite in table.items():
            assert torch.equal(got[lite], source[ref]), ref
    assert imported.networks["G_ema"]["mapping.embed.weight"].shape == (8, 10)  # c_dim -> w_dim
    assert imported.networks["G_ema"]["mapping.layers.0.weight"].shape == (8, 16)  # z_dim + w_dim in
    assert imported.networks["D"]["mapping.embed.weight"].shape == (16, 10)  # c_dim -> cmap_dim (16 at 4x4)
    assert imported.networks["D"]["mapping.layers.7.weight"].shape == (16, 16)
    assert imported.networks["D"]["out.weight"].shape == (16, 16)  # cmap_dim outputs
    assert "mapping.w_avg" not in imported.networks["D"]


@pytest.mark.parametrize("kind", list(CONDITIONAL))
def test_conditional_networks_compute_the_reference_with_labels(tmp_path, marker, kind):
    """fp64, against the reference's definitions with labels: the mapping (embedding, truncation towards the one
    w_avg), the whole generator and the projection discriminator; another class changes every output."""
    make, n = CONDITIONAL[kind]
    nets = make(13)
    imported = ARCH.import_checkpoint([write(tmp_path, marker, nets)])
    if kind != "resnet":
        assert imported.overrides["d_architecture"] == "orig" and imported.overrides["mbstd_group"] == 32
        assert imported.overrides["d_mapping_layers"] == (0 if kind == "cifar-legacy" else 8)
    G, D = lite_from(imported, "G_ema"), lite_from(imported, "D")
    z_dim, res = G.mapping.layers[0].weight.shape[1] - G.mapping.embed.weight.shape[0], G.synthesis.resolutions[-1]
    z = torch.randn(n, z_dim, dtype=torch.float64)
    classes, c = labels(n)
    other = torch.nn.functional.one_hot((classes + 1) % 10, 10).double()
    img = torch.randn(n, 3, res, res, dtype=torch.float64)
    with torch.no_grad():
        for psi in (1.0, 0.7):
            want = nets["G_ema"].mapping(z, psi, c=c)
            got = G.mapping(z, torch.full((n, 1), psi, dtype=torch.float64), label=c)
            assert (got - want).abs().max() < 1e-10
        want = nets["G_ema"](z, c=c).clamp(-1, 1)
        got = G(z, torch.ones(n, 1, dtype=torch.float64), c)
        assert (got - want).abs().max() < 1e-9
        assert (G(z, torch.ones(n, 1, dtype=torch.float64), other) - want).abs().max() > 1e-2
        want = nets["D"](img, c=c)
        assert (D(img, c) - want).abs().max() < 1e-9
        assert (D(img, other) - want).abs().max() > 1e-2


def test_what_stylegan_lite_cannot_express_in_a_conditional_pickle_is_refused_by_name(tmp_path, marker):
    nets = small_networks(resolution=8, channels=1, c_dim=10, d_architecture="skip",
                          d_mapping_kwargs={"num_layers": 2, "lr_multiplier": 0.1, "embed_features": 4})
    nets["G"]._init_kwargs["mapping_kwargs"]["embed_features"] = 4
    nets["D"]._init_kwargs["cmap_dim"] = 7
    message = refusal([write(tmp_path, marker, nets)])
    for part in ("D.architecture = 'skip'", "D.cmap_dim = 7", "D.mapping_kwargs.lr_multiplier = 0.1",
                 "D.mapping_kwargs.embed_features = 4", "G.mapping_kwargs.embed_features = 4"):
        assert part in message, part


def test_a_label_only_generator_is_refused_by_name(tmp_path, marker):
    message = refusal([write(tmp_path, marker, small_networks(resolution=8, channels=1, c_dim=10, z_dim=0))])
    assert "z_dim=0: must be greater than 0" in message


def test_networks_that_disagree_on_the_classes_are_refused(tmp_path, marker):
    nets = small_networks(resolution=8, channels=1, c_dim=10)
    nets["D"] = small_networks(resolution=8, channels=1, c_dim=5)["D"]
    assert "D has c_dim 5 where another network has 10" in refusal([write(tmp_path, marker, nets)])


CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def test_ganzoo_import_records_the_class_names_given(tmp_path, marker):
    path = write(tmp_path, marker, small_networks(resolution=8, channels=1, c_dim=10))
    run = tmp_path / "run"
    result = invoke("import", path, "--arch", "stylegan-lite", "--out", run, "--classes", ",".join(CLASSES))
    assert result.exit_code == 0, result.output
    assert "(10 classes: airplane, automobile," in result.output
    assert json.loads((run / "config.json").read_text())["classes"] == CLASSES
    result = invoke("import", path, "--arch", "stylegan-lite", "--out", tmp_path / "plain")
    assert result.exit_code == 0 and "(10 classes: 0, 1, 2," in result.output  # none given: their indices
    assert "classes" not in json.loads((tmp_path / "plain" / "config.json").read_text())


@pytest.mark.parametrize("networks, args, message", [
    (dict(c_dim=10), ["--classes", "cat,dog"], "--classes must name the 10 classes of network-snapshot-000000.pkl "
                                                "(c_dim=10) once each, in label order; got 2: cat, dog"),
    (dict(c_dim=2), ["--classes", "cat,cat"], "once each, in label order; got 2: cat, cat"),
    (dict(c_dim=0), ["--classes", "cat,dog"], "--classes names 2 classes, but network-snapshot-000000.pkl holds "
                                              "an unconditional network (c_dim=0): leave the class names out"),
    (dict(c_dim=10), ["--set", "c_dim=5"], "--set c_dim=5 contradicts network-snapshot-000000.pkl, which "
                                           "determine c_dim=10"),
])
def test_class_names_that_do_not_fit_the_network_are_refused(tmp_path, marker, networks, args, message):
    path = write(tmp_path, marker, small_networks(resolution=8, channels=1, **networks))
    result = invoke("import", path, "--arch", "stylegan-lite", "--out", tmp_path / "run", *args)
    assert result.exit_code == 1 and message in result.output, result.output
    assert result.output.count("\n") == 1 and not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_conditional_pickle_samples_each_class_and_exports_with_the_references_images(tmp_path, marker):
    """cifar-configured networks: each class sampled in PyTorch and in ONNX Runtime is the reference's image."""
    import onnxruntime

    from ganzoo import rundir
    from ganzoo.sampling import generate, to_uint8

    nets = cifar_networks(c_dim=10, seed=17)
    run_dir = tmp_path / "run"
    result = invoke("import", write(tmp_path, marker, nets), "--arch", "stylegan-lite", "--out", run_dir)
    assert result.exit_code == 0, result.output
    result = invoke("export", run_dir, "--out", tmp_path / "export")
    assert result.exit_code == 0, result.output
    (model,) = (tmp_path / "export").glob("*.onnx")
    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    run = rundir.open_run(run_dir)
    G, _ = rundir.load_sampling_nets(run, torch.device("cpu"))
    spec = run.arch.generators(run.resolved.config)["G"]
    classes = np.arange(12) % 10
    inputs = spec.latents(12, 4, labels=classes)
    with torch.no_grad():
        want = to_uint8(nets["G_ema"](torch.from_numpy(inputs["z"]).double(),
                                      c=torch.from_numpy(inputs["label"]).double()).clamp(-1, 1))
    torch_images = generate(G["G"], spec, 12, 4, torch.device("cpu"), labels=classes)
    (onnx_out,) = session.run(None, inputs)
    onnx_images = to_uint8(torch.from_numpy(onnx_out))
    assert want.float().std() > 0
    assert (torch_images.int() - want.int()).abs().max() <= 1 and (onnx_images.int() - want.int()).abs().max() <= 1
    same_z = [generate(G["G"], spec, 2, 4, torch.device("cpu"), labels=k) for k in (0, 1)]
    assert not torch.equal(*same_z)  # the same latents, another class


# --- refusals -----------------------------------------------------------------------------------------------------


class RunsShell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_reduce_calling_os_system_is_refused_unrun(tmp_path, marker):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G": RunsShell(marker)}, protocol=3))
    message = refusal([path])
    assert str(path) in message and f"{os.system.__module__}.system" in message and "nothing" in message


def test_an_unknown_global_is_named(tmp_path, marker):
    path = tmp_path / "odd.pkl"
    nets = small_networks(resolution=8, channels=1)
    path.write_bytes(network_pickle_bytes({**nets, "progress": np.arange(3)}, source_that_marks(marker)))
    message = refusal([path])
    assert "numpy" in message and "reconstruct" in message and str(path) in message


@pytest.mark.parametrize("fraction", [0.0005, 0.3, 0.9, 0.9999])
def test_a_truncated_pickle_is_one_error(tmp_path, marker, fraction):
    whole = write(tmp_path, marker, small_networks(resolution=8, channels=1)).read_bytes()
    path = tmp_path / "cut.pkl"
    path.write_bytes(whole[:max(1, int(len(whole) * fraction))])
    message = refusal([path])
    assert str(path) in message and ("truncated" in message or "damaged" in message)


def test_an_empty_file_and_a_missing_file_are_named(tmp_path):
    (tmp_path / "empty.pkl").write_bytes(b"")
    assert "empty file" in refusal([tmp_path / "empty.pkl"])
    assert "cannot read" in refusal([tmp_path / "absent.pkl"])


def test_everything_stylegan_lite_cannot_express_is_listed_in_one_error(tmp_path, marker):
    nets = small_networks(resolution=8, channels=1, architecture="resnet")
    nets["D"]._init_kwargs["epilogue_kwargs"]["mbstd_group_size"] = None
    nets["D"]._init_kwargs["channel_max"] = 32
    message = refusal([write(tmp_path, marker, nets)])
    for part in ("G.synthesis_kwargs.architecture = 'resnet'", "D.epilogue_kwargs.mbstd_group_size = None",
                 "D has channel_max 32"):
        assert part in message


def test_a_tensor_of_the_wrong_shape_or_an_extra_tensor_is_named(tmp_path, marker):
    nets = small_networks(resolution=8, channels=1)
    layer = nets["G"].synthesis.b8.conv0
    layer.bias = torch.nn.Parameter(torch.zeros(layer.bias.shape[0] + 1))
    nets["D"].b4.register_buffer("extra", torch.zeros(2))
    message = refusal([write(tmp_path, marker, nets)])
    assert "synthesis.b8.conv0.bias has shape" in message and "b4.extra" in message


def test_a_foreign_resample_filter_is_refused(tmp_path, marker):
    nets = small_networks(resolution=8, channels=1)
    nets["G_ema"].synthesis.b8.conv0.resample_filter.fill_(1 / 16)
    assert "synthesis.b8.conv0.resample_filter is not the [1,3,3,1] filter" in refusal(
        [write(tmp_path, marker, nets)])


def test_ganzoo_import_refuses_a_malicious_pickle_in_one_line(tmp_path, marker):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": RunsShell(marker)}, protocol=3))
    result = ganzoo("import", str(path), "--arch", "stylegan-lite", "--out", str(tmp_path / "run"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error:") and "system" in line and str(path) in line
    assert not (tmp_path / "run").exists()
