"""Damaged config.json and metrics.jsonl: one Error line naming the file, or a resume that drops the damage."""

import json
import math

import pytest

from helpers import SMOKE, invoke


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("damaged") / "run"
    result = invoke("train", "dcgan", *SMOKE, "--steps", 2, "--out", run, "--set", "log_every=1")
    assert result.exit_code == 0, result.output
    return run


def edited(record: dict, path: tuple, value) -> dict:
    record = json.loads(json.dumps(record))
    target = record
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return record


CONFIG_DAMAGE = {
    "not UTF-8": (b"\xff\xfe{}", "not UTF-8"),
    "null": (b"null", "expected a JSON object, got NoneType"),
    "a list": (b"[1, 2]", "expected a JSON object, got list"),
    "truncated": (None, "not valid JSON"),
    "nested 100000 deep": (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
    "empty": (b"", "not valid JSON"),
}
VALUE_DAMAGE = {
    "lr a string": (("config", "lr"), "abc", "'lr' must be float, got 'abc'"),
    "steps a float": (("train", "steps"), 1.5, "'steps' must be int, got 1.5"),
    "compile a number": (("train", "compile"), 1, "'compile' must be bool, got 1"),
    "train a string": (("train",), "x", "'train' must be an object"),
    "config a list": (("config",), [], "'config' must be an object, got list"),
    "architecture a number": (("architecture",), 7, "'architecture' must be a string"),
    "unknown architecture": (("architecture",), "nope", "unknown architecture 'nope'"),
    "lr infinite": (("config", "lr"), 1e999, "lr=inf: must be a finite number"),
    "lr negative": (("config", "lr"), -1, "lr=-1.0: must be greater than 0"),
    "seed negative": (("train", "seed"), -1, "seed=-1: must lie in [0, 2**32)"),
    "log_every zero": (("train", "log_every"), 0, "log_every=0: must be at least 1"),
    "preset a number": (("preset",), 3, "'preset' has the wrong type"),
    "overrides a list": (("overrides",), [1], "'overrides' has the wrong type"),
}


def check_one_error(run, damaged: bytes, expected: str, info: bool = True):
    path = run / "config.json"
    good = path.read_bytes()
    path.write_bytes(damaged)
    try:
        for command in ([["info", run]] if info else []) + [["sample", run, "--n", 1, "--out", run.parent / "s.png"], ["export", run, "--out", run.parent / "x"],
                        ["train", "dcgan", "--resume", run, "--steps", 3]]:
            result = invoke(*command)
            assert result.exit_code == 1, (command, result.output)
            errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
            assert len(errors) == 1 and str(path) in errors[0] and expected in errors[0], (command, result.output)
        assert path.read_bytes() == damaged  # nothing rewrote it
    finally:
        path.write_bytes(good)


@pytest.mark.parametrize("case", sorted(CONFIG_DAMAGE))
def test_a_damaged_config_json_is_one_error_naming_it(trained, case):
    content, expected = CONFIG_DAMAGE[case]
    if content is None:
        content = (trained / "config.json").read_bytes()[:40]
    check_one_error(trained, content, expected)


@pytest.mark.parametrize("case", sorted(VALUE_DAMAGE))
def test_a_wrong_value_in_config_json_names_config_json_and_the_key(trained, case):
    path, value, expected = VALUE_DAMAGE[case]
    record = json.loads((trained / "config.json").read_text())
    damaged = json.dumps(edited(record, path, value)).encode()
    # info shows a run of an architecture that is not installed (it builds nothing); the rest need it
    check_one_error(trained, damaged, expected, info=case != "unknown architecture")


@pytest.mark.parametrize("tail", [b'{"step": 3, "loss/G": 0.7', b"\x00\x00\x00\x00", b'garbage\n{"step": "x"}\n'])
def test_a_damaged_metrics_log_does_not_block_resume(tmp_path, tail):
    """A power cut or a full disk leaves half a line; resume drops it and the log stays one record per line."""
    run = tmp_path / "run"
    assert invoke("train", "dcgan", *SMOKE, "--steps", 2, "--out", run, "--set", "log_every=1").exit_code == 0
    with open(run / "metrics.jsonl", "ab") as f:
        f.write(tail)
    info = invoke("info", run)
    assert info.exit_code == 0 and "last metrics: step=2" in info.output, info.output
    result = invoke("train", "dcgan", "--resume", run, "--steps", 4)
    assert result.exit_code == 0, result.output
    assert "dropped" in result.output and "damaged line" in result.output
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]


def test_appending_after_a_cut_line_starts_a_new_line(tmp_path):
    from ganzoo.train.loggers import MetricsLog

    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2, "lo')
    log = MetricsLog(tmp_path)
    log.write({"step": 3, "loss/G": 1.0})
    log.close()
    assert (tmp_path / "metrics.jsonl").read_text().splitlines()[-1] == '{"step": 3, "loss/G": 1.0}'


def test_metrics_are_strict_json_with_non_finite_values_as_null(tmp_path):
    from ganzoo.train.loggers import MetricsLog

    log = MetricsLog(tmp_path)
    log.write({"step": 1, "loss/D": math.nan, "loss/G": math.inf, "D/real": -math.inf, "ok": 0.5, "nonfinite/D": 1})
    log.close()

    def refuse(constant):
        raise ValueError(f"non-JSON constant {constant}")

    record = json.loads((tmp_path / "metrics.jsonl").read_text(), parse_constant=refuse)
    assert record == {"step": 1, "loss/D": None, "loss/G": None, "D/real": None, "ok": 0.5, "nonfinite/D": 1}


def test_a_diverging_run_logs_null_losses_and_counts_the_skipped_steps(tmp_path):
    """lr=1e30 is finite, so it is accepted; the losses it produces are not, and the log stays valid JSON."""
    run = tmp_path / "run"
    result = invoke("train", "dcgan", *SMOKE, "--steps", 12, "--out", run, "--set", "lr=1e30",
                    "--set", "log_every=4", "--set", "max_nonfinite=1000")
    assert result.exit_code == 0, result.output

    def refuse(constant):
        raise ValueError(f"non-JSON constant {constant}")

    records = [json.loads(line, parse_constant=refuse) for line in (run / "metrics.jsonl").read_text().splitlines()]
    skipped = [r.get("nonfinite/D", 0) + r.get("nonfinite/G", 0) for r in records]
    assert sum(skipped) > 0 and all(count == int(count) for count in skipped)
    assert max(r.get("nonfinite/D", 0) for r in records) <= 4  # a count of steps in a 4-step interval, not a mean


@pytest.mark.parametrize("assignment", ["lr=inf", "lr=nan", "lr=-inf", "beta1=nan", "ema_kimg=inf",
                                        "ema_rampup=-1", "epochs=nan"])
def test_non_finite_or_negative_hyperparameters_are_refused(tmp_path, assignment):
    result = invoke("train", "dcgan", *SMOKE, "--steps", 1, "--out", tmp_path / "run", "--set", assignment)
    assert result.exit_code == 1
    key = assignment.split("=")[0]
    assert f"Error: invalid dcgan config: {key}=" in result.output and "(from --set)" in result.output
    assert not (tmp_path / "run").exists()
