"""StyleGAN-lite against StyleGAN2 and its reference implementation: layers, counts, losses, regularisers."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from ganzoo import config, registry
from ganzoo.api import LossContext
from ganzoo_stylegan_lite import DIFFAUGMENT_BELOW, default_coarse_layers
from ganzoo_stylegan_lite.diffaugment import color, cutout, diff_augment, parse_policy, translation
from ganzoo_stylegan_lite.layers import (Blur, Conv2d, SynthesisLayer, Upsample2x, bilinear_zero_border,
                                         modulated_conv2d, upsample_conv3x3)
from ganzoo_stylegan_lite.losses import mixing_mask, path_length_loss, r1_penalty
from ganzoo_stylegan_lite.networks import Discriminator, MinibatchStd, num_ws

ARCH = registry.get("stylegan-lite")


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def context(cfg=None, seed=0, state=None):
    logged = {}
    ctx = LossContext(cfg=cfg, device=torch.device("cpu"), generator=torch.Generator().manual_seed(seed), step=0,
                      total_steps=1, log=lambda k, v: logged.__setitem__(k, v), state=state)
    return ctx, logged


# -- shapes and parameter counts ------------------------------------------------------------------


def test_layer_parameter_counts_match_stylegan2_ada_tables():
    """Config F's widths at 256 px (channel_base 32768): the per-layer counts stylegan2-ada-pytorch prints."""
    nets = ARCH.build(ARCH.make_config({"resolution": 256, "channel_base": 32768}))
    G, D = nets["G"], nets["D"]
    blocks = G.synthesis.blocks
    assert count(G.mapping.layers[0]) == 262_656
    assert len(G.mapping.layers) == 8
    assert count(blocks["b4"].conv1) == 2_622_465
    assert count(blocks["b4"].torgb) == 264_195
    assert blocks["b4"].const.numel() == 8_192
    assert count(blocks["b8"].conv0) == 2_622_465
    assert count(blocks["b128"].conv0) == 1_442_561
    assert count(blocks["b128"].conv1) == 721_409
    assert count(blocks["b128"].torgb) == 132_099
    assert (count(blocks["b256"].conv0), count(blocks["b256"].conv1), count(blocks["b256"].torgb)) == (
        426_369, 213_249, 66_051)
    # Discriminator rows of the same tables (256x256 block: 128 -> 256 channels; 128x128: 256 -> 512).
    assert (count(D.blocks["b256"].conv0), count(D.blocks["b256"].conv1), count(D.blocks["b256"].skip)) == (
        147_584, 295_168, 32_768)
    assert (count(D.blocks["b128"].conv0), count(D.blocks["b128"].conv1), count(D.blocks["b128"].skip)) == (
        590_080, 1_180_160, 131_072)
    assert count(D.blocks["b256"].fromrgb) == 3 * 128 + 128
    assert (count(D.conv), count(D.fc), count(D.out)) == (2_364_416, 4_194_816, 513)


@pytest.mark.parametrize("resolution", [8, 32, 256])
def test_styles_and_shapes_per_resolution(resolution):
    cfg = ARCH.make_config({"resolution": resolution, "channel_base": 512, "channel_max": 32, "z_dim": 16,
                            "w_dim": 16})
    nets = ARCH.build(cfg)
    G = nets["G"].eval()
    assert G.synthesis.num_ws == num_ws(resolution) == 2 * int(math.log2(resolution)) - 2
    with torch.no_grad():
        images = G(torch.randn(2, 16))
        assert images.shape == (2, 3, resolution, resolution)
        assert nets["D"](images).shape == (2, 1)


def test_resolution_must_be_a_power_of_two():
    from ganzoo.api import ConfigError

    with pytest.raises(ConfigError, match="resolution=48: must be a power of two from 8 to 1024"):
        ARCH.validate(ARCH.make_config({"resolution": 48}))
    with pytest.raises(ConfigError, match="diffaugment_policy='color,rotate': must be a comma-separated list of color"):
        ARCH.validate(ARCH.make_config({"diffaugment_policy": "color,rotate"}))


def test_conv_clamp_is_none_or_positive():
    from ganzoo.api import ConfigError

    for bad in (0, -1.0, "256", True):
        with pytest.raises(ConfigError, match=r"conv_clamp=.*: must be more than 0, or none for no clamping"):
            ARCH.validate(ARCH.make_config({"conv_clamp": bad}))
    for good in (None, 256.0, 0.5):
        ARCH.validate(ARCH.make_config({"conv_clamp": good}))
    assert ARCH.make_config().conv_clamp is None


def test_conv_clamp_bounds_the_layers_the_reference_clamps():
    """Each clamped layer's output lies in +-clamp (x gain); with None nothing is clipped; the skip never is."""
    from ganzoo_stylegan_lite.layers import ToRGB

    torch.manual_seed(0)
    x, w = torch.randn(2, 4, 8, 8) * 10, torch.randn(2, 6)
    for make in (lambda c: SynthesisLayer(4, 4, 6, 8, conv_clamp=c), lambda c: ToRGB(4, 3, 6, conv_clamp=c)):
        free, clamped = make(None).eval(), make(0.5).eval()
        clamped.load_state_dict(free.state_dict())
        with torch.no_grad():
            a, b = free(x, w), clamped(x, w)
        assert a.abs().max() > 1 and b.abs().max() <= 0.5 and torch.equal(b, a.clamp(-0.5, 0.5))
    conv = Conv2d(4, 4, 3, down=2, conv_clamp=0.5)
    with torch.no_grad():
        assert conv(x, gain=math.sqrt(0.5)).abs().max() == pytest.approx(0.5 * math.sqrt(0.5))
    nets = ARCH.build(ARCH.make_config({**ARCH.smoke, "conv_clamp": 2.0}))
    clamps = {name: m.conv_clamp for name, m in nets["D"].named_modules() if hasattr(m, "conv_clamp")}
    assert all(value is None for name, value in clamps.items() if name.endswith("skip"))
    assert all(value == 2.0 for name, value in clamps.items() if not name.endswith("skip"))
    assert all(m.conv_clamp == 2.0 for m in nets["G"].modules() if hasattr(m, "conv_clamp"))


# -- layers ---------------------------------------------------------------------------------------


def test_modulated_conv_equals_per_sample_modulated_weights():
    """Scaling activations (ours, exportable) equals StyleGAN2's grouped conv with per-sample weights."""
    torch.manual_seed(0)
    x, weight, styles = torch.randn(3, 5, 8, 8, dtype=torch.float64), torch.randn(4, 5, 3, 3, dtype=torch.float64), \
        torch.randn(3, 5, dtype=torch.float64)
    ours = modulated_conv2d(x, weight, styles, demodulate=True, padding=1)
    w = weight[None] * styles[:, None, :, None, None]  # (N, O, I, k, k)
    w = w * (w.square().sum(dim=(2, 3, 4), keepdim=True) + 1e-8).rsqrt()
    grouped = F.conv2d(x.reshape(1, -1, 8, 8), w.reshape(-1, 5, 3, 3), padding=1, groups=3).reshape(3, 4, 8, 8)
    torch.testing.assert_close(ours, grouped, rtol=1e-10, atol=1e-10)
    # Demodulation restores unit output variance for unit-variance inputs, whatever the style's scale.
    big = modulated_conv2d(torch.randn(64, 5, 16, 16, dtype=torch.float64), weight, 100 * styles.repeat(22, 1)[:64])
    assert 0.8 < big.std().item() < 1.2


def test_upsampling_is_bilinear_inside_and_zero_padded_at_the_border():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    up = Upsample2x(3).double()(x)
    bilinear = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    assert up.shape == (2, 3, 12, 12)
    torch.testing.assert_close(up[..., 1:-1, 1:-1], bilinear[..., 1:-1, 1:-1])
    # At the border the reference's upfirdn2d pads with zeros: out[0] = 3/4 x[0] in each direction.
    torch.testing.assert_close(up[..., 0, 0], x[..., 0, 0] * 0.75 * 0.75)


def reference_up_conv(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """stylegan2-ada-pytorch's conv2d_resample(up=2, padding=1) for a 3x3 kernel, from its definition:
    a stride-2 transposed convolution (no padding, so 2n + 1 pixels), then upfirdn2d with the [1,3,3,1]
    filter, gain 4 and padding 1 on every side (2n pixels)."""
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=x.dtype)
    fir = (torch.outer(taps, taps) / 64 * 4).expand(w.shape[0], 1, 4, 4)  # sums to the gain, 4
    y = F.conv_transpose2d(x, w.transpose(0, 1), stride=2)
    return F.conv2d(F.pad(y, (1, 1, 1, 1)), fir, groups=w.shape[0])


@pytest.mark.parametrize("size", [4, 8, 16])
def test_upsampling_conv_equals_the_reference_for_its_stored_kernel(size):
    """What docs/stylegan-lite.md says: SynthesisLayer(up=True)'s convolution is the reference's, for the kernel
    as the reference stores it (applied as a true convolution), including the outermost ring of pixels, which
    reads the transposed convolution's overhang. tests/test_stylegan_upsampling.py checks it at every resolution
    against upfirdn2d's definition."""
    torch.manual_seed(size)
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    w = torch.randn(5, 3, 3, 3, dtype=torch.float64)
    layer = SynthesisLayer(3, 5, 4, 2 * size, up=True).double()
    ours = upsample_conv3x3(x, w, layer.up_filter)  # what SynthesisLayer(up=True) does
    reference = reference_up_conv(x, w)
    assert ours.shape == reference.shape == (2, 5, 2 * size, 2 * size)
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-12)
    old = F.conv2d(Upsample2x(3).double()(x), w.flip([2, 3]), padding=1)  # before: filter, then zero-padded 3x3
    ring = (old - reference).abs().amax(dim=(0, 1))
    assert ring[0].max() > 0.1 and ring[-1].max() > 0.1 and ring[:, 0].max() > 0.1 and ring[:, -1].max() > 0.1


def test_downsampling_low_passes_then_halves():
    x = torch.ones(1, 2, 8, 8)
    blurred = Blur(2, padding=1, stride=2)(x)
    assert blurred.shape == (1, 2, 4, 4)
    assert torch.allclose(blurred[..., 1:-1, 1:-1], torch.ones(()))  # a constant passes the low-pass unchanged
    conv = Conv2d(2, 5, 3, down=2)
    assert conv(torch.randn(1, 2, 8, 8)).shape == (1, 5, 4, 4)


def test_minibatch_std_sees_variety_across_the_group():
    layer = MinibatchStd(group_size=4)
    same = torch.randn(1, 6, 4, 4).repeat(8, 1, 1, 1)
    out = layer(same)
    assert out.shape == (8, 7, 4, 4)
    assert out[:, -1].max() < 1e-3  # identical samples: no spread
    varied = layer(torch.randn(8, 6, 4, 4))
    assert varied[:, -1].min() > 0.3
    assert layer(torch.randn(6, 6, 4, 4)).shape == (6, 7, 4, 4)  # a batch the group does not divide


def test_equalised_lr_layers_keep_unit_variance():
    """Weights are N(0,1) and scaled at run time, so activations neither blow up nor vanish with width."""
    D = Discriminator(32, 3, channel_base=4096, channel_max=128)
    assert all(abs(p.std().item() - 1) < 0.1 for name, p in D.named_parameters() if name.endswith("weight")
               and p.numel() > 1000)
    G = ARCH.build(config.resolve(ARCH, preset="fashion-mnist").config)["G"]
    mapping_weight = G.mapping.layers[0].weight
    assert abs(mapping_weight.std().item() - 100) < 5  # N(0, 1) / lr_multiplier 0.01


# -- generator behaviour --------------------------------------------------------------------------


def small_generator(seed=0):
    torch.manual_seed(seed)
    cfg = ARCH.make_config(dict(ARCH.smoke))
    return ARCH.build(cfg)["G"], cfg


def test_noise_is_random_in_training_and_fixed_in_eval():
    G, cfg = small_generator()
    with torch.no_grad():
        for layer in G.synthesis.modules():
            if hasattr(layer, "noise_strength"):
                layer.noise_strength.fill_(0.5)
        z = torch.randn(2, cfg.z_dim)
        G.train()
        assert not torch.equal(G(z), G(z))
        G.eval()
        assert torch.equal(G(z), G(z))


def test_w_avg_tracks_in_training_and_truncation_pulls_towards_it():
    G, cfg = small_generator()
    assert torch.count_nonzero(G.mapping.w_avg) == 0
    G.train()
    with torch.no_grad():
        G(torch.randn(64, cfg.z_dim))
    tracked = G.mapping.w_avg.clone()
    assert torch.count_nonzero(tracked) > 0
    G.eval()
    z = torch.randn(4, cfg.z_dim)
    with torch.no_grad():
        ws_full = G.mapping(z, torch.ones(4, 1))
        ws_zero = G.mapping(z, torch.zeros(4, 1))
        ws_half = G.mapping(z, torch.full((4, 1), 0.5))
        torch.testing.assert_close(ws_zero, tracked.expand_as(ws_zero))
        torch.testing.assert_close(ws_half, (ws_full + ws_zero) / 2)
        images = G(z, torch.zeros(4, 1))
    torch.testing.assert_close(images[0], images[3])  # psi = 0: every latent gives the average image
    assert torch.equal(G.mapping.w_avg, tracked)  # eval mode leaves w_avg alone


def test_style_mixing_mask_is_a_suffix_of_layers_drawn_with_the_probability():
    cutoffs = []
    for seed in range(200):
        ctx, _ = context(seed=seed)
        mask = mixing_mask(8, 0.9, ctx)
        assert mask.shape == (8,) and mask.dtype == torch.bool
        if mask.any():
            first = int(mask.nonzero()[0])
            assert 1 <= first <= 7 and mask[first:].all() and not mask[:first].any()
            cutoffs.append(first)
    assert 0.8 <= len(cutoffs) / 200 <= 0.97
    assert set(cutoffs) == set(range(1, 8))
    ctx, _ = context()
    assert not mixing_mask(8, 0.0, ctx).any()


def test_mixed_styles_take_the_second_latent_from_the_cutoff():
    G, cfg = small_generator()
    G.eval()
    z, z2 = torch.randn(2, cfg.z_dim), torch.randn(2, cfg.z_dim)
    mask = torch.arange(num_ws(cfg.resolution)) >= 3
    with torch.no_grad():
        mixed = G(z, mix_z=z2, mix_mask=mask, styles_only=True)
        first, second = G(z, styles_only=True), G(z2, styles_only=True)
    torch.testing.assert_close(mixed[:, :3], first[:, :3])
    torch.testing.assert_close(mixed[:, 3:], second[:, 3:])


def test_eval_images_are_clamped_to_the_declared_range():
    G, cfg = small_generator()
    with torch.no_grad():
        G.synthesis.blocks["b16"].torgb.bias.fill_(5.0)
        G.train()
        assert G(torch.randn(2, cfg.z_dim)).max() > 1.5  # training sees StyleGAN2's unbounded images
        G.eval()
        assert G(torch.randn(2, cfg.z_dim)).abs().max() <= 1.0


# -- losses and regularisers ----------------------------------------------------------------------


def tiny_discriminator():
    torch.manual_seed(1)
    return Discriminator(8, 1, channel_base=32, channel_max=4, mbstd_group=2).double()


def test_r1_by_double_backward_matches_finite_differences():
    """R1 = |dD/dx|^2 per sample; its gradient in D's weights (double backward) agrees with central differences."""
    D = tiny_discriminator()
    real = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    ctx, _ = context()
    penalty, _ = r1_penalty(D, real, ctx, policy=())
    eps = 1e-6

    def total_logit(x):
        return D(x).sum().item()

    numeric = torch.zeros_like(real)
    for index in np.ndindex(*real.shape):
        up, down = real.clone(), real.clone()
        up[index] += eps
        down[index] -= eps
        numeric[index] = (total_logit(up) - total_logit(down)) / (2 * eps)
    torch.testing.assert_close(penalty, numeric.square().sum(dim=(1, 2, 3)), rtol=1e-6, atol=1e-9)

    # Double backward: d(sum R1)/d(a weight) against central differences of the penalty in that weight.
    weight = D.blocks["b8"].conv0.weight
    (analytic,) = torch.autograd.grad(penalty.sum(), weight)
    for index in [(0, 0, 1, 1), (2, 1, 0, 2), (3, 3, 2, 0)]:
        original = weight[index].item()
        values = []
        for delta in (eps, -eps):
            with torch.no_grad():
                weight[index] = original + delta
            values.append(r1_penalty(D, real, ctx, policy=())[0].sum().item())
        with torch.no_grad():
            weight[index] = original
        assert analytic[index].item() == pytest.approx((values[0] - values[1]) / (2 * eps), rel=1e-5, abs=1e-8)


def test_r1_gamma_default_follows_the_reference_heuristic():
    cfg = ARCH.make_config({"resolution": 256, "batch_size": 16})
    assert cfg.gamma() == pytest.approx(0.8192)  # stylegan2-ada-pytorch --cfg=auto at 256 on one GPU
    assert ARCH.make_config({"r1_gamma": 10.0}).gamma() == 10.0
    fitted = ARCH.fit_to_data(cfg, 70_000)
    assert fitted.r1_gamma == pytest.approx(0.8192) and fitted.diffaugment == "off"
    assert ARCH.fit_to_data(cfg, DIFFAUGMENT_BELOW - 1).diffaugment == "on"
    assert ARCH.fit_to_data(replace(cfg, diffaugment="off"), 100).diffaugment == "off"


def test_phases_are_lazy_regularised_as_the_reference():
    cfg = ARCH.make_config({})
    phases = {p.name: p for p in ARCH.phases(cfg)}
    assert list(phases) == ["G", "G_pl", "D", "D_r1"]
    assert (phases["G_pl"].interval, phases["D_r1"].interval) == (4, 16)
    assert phases["G_pl"].eager and phases["D_r1"].eager and not phases["G"].eager and not phases["D"].eager
    assert phases["G_pl"].optimizer is None and phases["D_r1"].optimizer is None
    g, d = phases["G"].optimizer, phases["D"].optimizer
    assert g.lr == pytest.approx(0.0025 * 4 / 5) and d.lr == pytest.approx(0.0025 * 16 / 17)
    assert g.betas == pytest.approx((0.0, 0.99 ** (4 / 5))) and d.betas == pytest.approx((0.0, 0.99 ** (16 / 17)))
    assert "G_pl" not in {p.name for p in ARCH.phases(replace(cfg, pl_weight=0.0))}


def test_path_length_mean_is_run_state_and_the_penalty_pulls_lengths_together():
    G, cfg = small_generator()
    cfg = replace(cfg, pl_batch_shrink=1)
    state = {}
    ctx, logged = context(cfg, state=state)
    loss = path_length_loss({"G": G}, 8, ctx, cfg)
    assert torch.isfinite(loss) and loss > 0
    first_mean = state["pl_mean"].item()
    assert first_mean == pytest.approx(0.01 * logged["reg/path_length"].item())  # lerp from 0 by pl_decay
    loss.backward()
    assert all(p.grad is not None for p in G.synthesis.parameters() if p.requires_grad and p.dim() > 1)
    ctx, _ = context(cfg, seed=1, state=state)
    path_length_loss({"G": G}, 8, ctx, cfg)
    assert state["pl_mean"].item() > first_mean


# -- DiffAugment ----------------------------------------------------------------------------------


def test_translation_moves_content_by_at_most_an_eighth():
    x = torch.zeros(64, 1, 16, 16)
    x[:, :, 8, 8] = 1.0
    out = translation(x, torch.Generator().manual_seed(0))
    positions = out[:, 0].flatten(1).argmax(dim=1)
    rows, cols = positions // 16, positions % 16
    assert (out.flatten(1).sum(dim=1) == 1).all()  # moved, never duplicated
    assert (rows - 8).abs().max() == 2 and (cols - 8).abs().max() == 2  # 16 * 0.125 = 2 pixels
    assert len(set(zip(rows.tolist(), cols.tolist()))) > 10


def test_cutout_zeroes_one_square_of_half_the_side():
    out = cutout(torch.ones(32, 3, 16, 16), torch.Generator().manual_seed(0))
    zeroed = (out[:, 0] == 0).sum(dim=(1, 2))
    assert zeroed.max() == 64 and zeroed.min() >= 16  # 8x8, clipped at the border
    assert torch.equal(out[:, 0], out[:, 2])


def test_colour_changes_brightness_and_contrast_per_image():
    x = torch.rand(16, 3, 8, 8) * 2 - 1
    out = color(x, torch.Generator().manual_seed(0))
    shift = (out - x).mean(dim=(1, 2, 3))
    assert shift.std() > 0.1


def test_diffaugment_is_differentiable_and_reproducible():
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    policy = parse_policy("color,translation,cutout")
    a = diff_augment(x, policy, torch.Generator().manual_seed(3))
    b = diff_augment(x, policy, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    a.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="'flip'"):
        parse_policy("color,flip")


def test_default_coarse_layers_are_the_4_and_8_pixel_blocks():
    assert default_coarse_layers(32) == 4 and default_coarse_layers(256) == 4


# -- export ---------------------------------------------------------------------------------------


def test_onnx_export_keeps_a_dynamic_batch_and_matches_pytorch(tmp_path):
    """The activation-scaling modulated conv exports with a free batch: ONNX Runtime agrees at batch 1 and 4."""
    import warnings

    import onnxruntime as ort

    cfg = config.resolve(ARCH, preset="fashion-mnist").config
    torch.manual_seed(0)
    G = ARCH.build(cfg)["G"]
    G.train()
    with torch.no_grad():
        G(torch.randn(256, cfg.z_dim))  # a w_avg that is not zero, so truncation matters
        for module in G.modules():
            if hasattr(module, "noise_strength"):
                module.noise_strength.fill_(0.3)  # const noise must be baked in
    G.eval()
    latents = ARCH.generators(cfg)["G"].latents(4, 11)
    z, psi = torch.from_numpy(latents["z"]), torch.tensor([[1.0], [0.7], [0.5], [0.0]])
    path = tmp_path / "G.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(G, (z[:2], psi[:2]), str(path), dynamo=False, input_names=["z", "truncation"],
                          output_names=["image"], opset_version=17,
                          dynamic_axes={"z": {0: "batch"}, "truncation": {0: "batch"}, "image": {0: "batch"}})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] == "batch"
    for n in (1, 4):
        (onnx_images,) = session.run(None, {"z": z[:n].numpy(), "truncation": psi[:n].numpy()})
        with torch.no_grad():
            torch_images = G(z[:n], psi[:n]).numpy()
        assert onnx_images.shape == (n, 1, 32, 32)
        np.testing.assert_allclose(onnx_images, torch_images, atol=1e-4)
    assert np.abs(torch_images[0] - torch_images[3]).max() > 0.05  # psi changes the image
    import onnx

    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "Resize" in ops and "ConvTranspose" not in ops  # upsampling exported by its faster route


def test_an_active_conv_clamp_exports_as_clip_and_matches_pytorch(tmp_path):
    """conv_clamp (imported stylegan2-ada pickles carry 256) survives export: a clamp small enough to bite changes
    the image, and ONNX Runtime computes the clamped image."""
    import warnings

    import onnx
    import onnxruntime as ort

    base = config.resolve(ARCH, preset="fashion-mnist").config
    nets = {}
    for clamp in (None, 0.5):
        torch.manual_seed(0)  # the clamp is no parameter: both generators get the same weights
        nets[clamp] = ARCH.build(replace(base, conv_clamp=clamp))["G"].eval()
    z, psi = torch.randn(3, base.z_dim, generator=torch.Generator().manual_seed(5)), torch.ones(3, 1)
    with torch.no_grad():
        clamped, free = nets[0.5](z, psi).numpy(), nets[None](z, psi).numpy()
    assert np.abs(clamped - free).max() > 1e-2  # the clamp is active in this test
    path = tmp_path / "G.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(nets[0.5], (z[:2], psi[:2]), str(path), dynamo=False, input_names=["z", "truncation"],
                          output_names=["image"], opset_version=17,
                          dynamic_axes={"z": {0: "batch"}, "truncation": {0: "batch"}, "image": {0: "batch"}})
    assert "Clip" in {node.op_type for node in onnx.load(str(path)).graph.node}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_images,) = session.run(None, {"z": z.numpy(), "truncation": psi.numpy()})
    np.testing.assert_allclose(onnx_images, clamped, atol=1e-4)


@pytest.mark.parametrize("size", [(4, 4), (5, 9), (16, 16)])
def test_the_export_route_of_upsampling_equals_the_transposed_convolution(size):
    x = torch.randn(2, 6, *size, dtype=torch.float64)
    expected = Upsample2x(6).double()(x)
    assert torch.allclose(bilinear_zero_border(x), expected, atol=1e-12)
