"""A bad config value is one `Error:` line through the real CLI: architecture, key, value, what is allowed, and
where the value came from; no traceback, nothing written.

BAD_VALUES holds one bad value per constrained key of every built-in
architecture (the WGAN-GP example's are in tests/test_third_party_plugin.py).
"""

from __future__ import annotations

import json

import pytest
from helpers import SMOKE, ganzoo, invoke

MUST_BE_POSITIVE = "must be greater than 0"
BETA = "must lie in [0, 1)"
FRACTION = "must lie in [0, 1]"

BAD_VALUES = {
    "dcgan": [
        ("resolution", "48", "must be a power of two, 32 or more"),
        ("resolution", "16", "must be a power of two, 32 or more"),
        ("channels", "2", "must be 1 (grey) or 3 (RGB)"),
        ("nz", "0", MUST_BE_POSITIVE),
        ("ngf", "0", MUST_BE_POSITIVE),
        ("ndf", "-8", MUST_BE_POSITIVE),
        ("max_channels", "0", MUST_BE_POSITIVE),
        ("lr", "0", MUST_BE_POSITIVE),
        ("beta1", "1", BETA),
        ("beta2", "-0.1", BETA),
        ("batch_size", "0", "must be a positive integer"),
    ],
    "cyclegan": [
        ("resolution", "30", "must be a multiple of 4 (two stride-2 downsamplings in G) and at least 24"),
        ("resolution", "20", "must be a multiple of 4 (two stride-2 downsamplings in G) and at least 24 for a "
                             "3-layer PatchGAN"),
        ("load_resolution", "28", "must be at least resolution (32)"),
        ("channels", "4", "must be 1 (grey) or 3 (RGB)"),
        ("ngf", "0", MUST_BE_POSITIVE),
        ("ndf", "0", MUST_BE_POSITIVE),
        ("n_blocks", "-1", "must be 0 or more"),
        ("n_layers_d", "0", "must be at least 1"),
        ("lambda_a", "-1", "must be 0 (off) or more"),
        ("lambda_b", "-10", "must be 0 (off) or more"),
        ("lambda_identity", "-0.5", "must be 0 (off) or more"),
        ("pool_size", "-1", "must be 0 (off) or more"),
        ("lr", "-2e-4", MUST_BE_POSITIVE),
        ("beta1", "1.5", BETA),
        ("beta2", "1", BETA),
        ("lr_decay_start", "1.5", FRACTION),
        ("init_gain", "0", MUST_BE_POSITIVE),
        ("batch_size", "0", "must be a positive integer"),
    ],
    "stylegan-lite": [
        ("resolution", "48", "must be a power of two from 8 to 1024"),
        ("resolution", "2048", "must be a power of two from 8 to 1024"),
        ("channels", "2", "must be 1 (grey) or 3 (RGB)"),
        ("z_dim", "0", MUST_BE_POSITIVE),
        ("w_dim", "0", MUST_BE_POSITIVE),
        ("mapping_layers", "0", MUST_BE_POSITIVE),
        ("mapping_lr_multiplier", "0", MUST_BE_POSITIVE),
        ("channel_base", "16", "must be at least resolution (32)"),
        ("channel_max", "0", MUST_BE_POSITIVE),
        ("mbstd_group", "0", MUST_BE_POSITIVE),
        ("mbstd_channels", "3", "must be 0 (off) or divide the 32 feature maps at 4x4"),
        ("lr", "0", MUST_BE_POSITIVE),
        ("beta1", "-1", BETA),
        ("beta2", "1", BETA),
        ("r1_gamma", "-1", "must be 0 (off) or more"),
        ("r1_interval", "0", MUST_BE_POSITIVE),
        ("pl_weight", "-2", "must be 0 (off) or more"),
        ("pl_interval", "0", MUST_BE_POSITIVE),
        ("pl_batch_shrink", "0", MUST_BE_POSITIVE),
        ("pl_decay", "2", FRACTION),
        ("style_mixing", "1.5", FRACTION),
        ("diffaugment", "maybe", "must be auto, on or off"),
        ("diffaugment_policy", "color,rotate", "must be a comma-separated list of color, translation, cutout"),
        ("batch_size", "0", "must be a positive integer"),
    ],
}
CASES = [(arch, key, value, allowed) for arch, rows in BAD_VALUES.items() for key, value, allowed in rows]


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("Error:")]


@pytest.mark.parametrize("arch,key,value,allowed", CASES, ids=[f"{a}-{k}={v}" for a, k, v, _ in CASES])
def test_a_bad_value_is_one_error_line_naming_key_value_and_what_is_allowed(tmp_path, arch, key, value, allowed):
    out = tmp_path / "run"
    result = invoke("train", arch, "--set", f"{key}={value}", "--steps", 1, "--device", "cpu", "--out", out)
    assert result.exit_code == 1, result.output
    (line,) = error_lines(result.output)
    assert line.startswith(f"Error: invalid {arch} config: {key}="), line
    assert f": {allowed}" in line and line.endswith("(from --set)"), line
    assert "Traceback" not in result.output
    assert not out.exists()  # nothing was written


def test_the_message_says_which_flag_or_preset_gave_the_value(tmp_path):
    flag = invoke("train", "dcgan", "--batch-size", 0, "--out", tmp_path / "a")
    assert error_lines(flag.output) == ["Error: invalid dcgan config: batch_size=0: must be a positive integer "
                                        "(from --batch-size)"]
    preset = invoke("train", "cyclegan", "--preset", "cyclegan-128", "--set", "load_resolution=100",
                    "--out", tmp_path / "b")
    assert error_lines(preset.output) == ["Error: invalid cyclegan config: load_resolution=100: must be at least "
                                          "resolution (128): random crops of resolution are taken from it (from --set)"]
    # The preset's own resolution is what makes the default n_layers_d too deep here.
    deep = invoke("train", "cyclegan", "--preset", "cyclegan-128", "--set", "n_layers_d=6", "--out", tmp_path / "c")
    assert error_lines(deep.output) == ["Error: invalid cyclegan config: resolution=128: must be a multiple of 4 "
                                        "(two stride-2 downsamplings in G) and at least 192 for a 6-layer PatchGAN "
                                        "(lower n_layers_d for smaller images) (from preset cyclegan-128)"]


def test_every_architecture_through_the_installed_script(tmp_path):
    """The console script in a real process: exit status 1, one line on stderr, nothing else."""
    for arch, (key, value, allowed) in ((a, rows[0]) for a, rows in BAD_VALUES.items()):
        result = ganzoo("train", arch, "--set", f"{key}={value}", "--out", tmp_path / arch)
        assert result.returncode == 1 and result.stdout == "", result.stdout
        assert result.stderr.startswith(f"Error: invalid {arch} config: {key}=") and allowed in result.stderr
        assert result.stderr.count("\n") == 1 and not (tmp_path / arch).exists()


def test_a_bad_value_in_config_json_names_the_file(tmp_path):
    run = tmp_path / "run"
    assert invoke("train", "dcgan", *SMOKE, "--steps", 1, "--out", run).exit_code == 0
    record = json.loads((run / "config.json").read_text())
    record["config"]["resolution"] = 48
    (run / "config.json").write_text(json.dumps(record))
    for command in (["sample", run], ["export", run], ["train", "dcgan", "--resume", run, "--steps", 2]):
        result = invoke(*command)
        assert result.exit_code == 1, result.output
        assert error_lines(result.output) == [f"Error: {run / 'config.json'}: invalid dcgan config: resolution=48: "
                                              "must be a power of two, 32 or more"]
