"""The test suite's own tooling: a tool it cannot install skips its tests, but not in CI."""

import os

import pytest

from tests.support.apt import install_or_skip


def test_a_tool_that_cannot_be_installed_skips_its_tests_except_under_ci(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # as a user who is not root
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no prometheus for the checks"):
        install_or_skip("prometheus", "the checks")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true and no prometheus"):
        install_or_skip("prometheus", "the checks")
