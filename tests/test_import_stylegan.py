"""Importing stylegan2-ada-pytorch network pickles into StyleGAN-lite, never running what they hold.

The pickles are written here with the reference's structure (tests/stylegan_reference.py): persistence
records whose embedded source, if run, would create a marker file.
"""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from stylegan_reference import network_pickle_bytes, small_networks

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


def test_a_conditional_network_is_refused_by_name(tmp_path, marker):
    message = refusal([write(tmp_path, marker, small_networks(resolution=8, channels=1, c_dim=10))])
    assert "G.c_dim = 10" in message and "G_ema.c_dim = 10" in message and "D.c_dim = 10" in message


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
