"""Every registered architecture passes the conformance kit (as a third-party plugin would)."""

import pytest

from ganzoo import registry
from ganzoo.testing import CHECKS

ARCHITECTURES = sorted(e.name for e in registry.discover() if e.usable)


def test_builtin_architectures_are_registered():
    assert {"dcgan", "cyclegan", "stylegan-lite"} <= set(ARCHITECTURES)


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_conformance(arch, check, tmp_path):
    check(arch, tmp_path)
