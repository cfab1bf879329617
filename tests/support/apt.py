"""Install a Debian package for tests that need a real tool (Prometheus, Chromium).

``apt_install(package)`` runs ``apt-get update`` and ``apt-get install`` as root, each
waiting up to ten minutes for the dpkg lock, and raises ``AptInstallError`` saying why
and how to install it by hand when it cannot (not root, no apt, no such package, apt
failed). ``install_or_skip`` is what the tests' fixtures call: where the package cannot
be installed (macOS, not root) the tests that need it skip and say why, except under
``CI=true``, where a missing tool must fail the run rather than hide its tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

APT_TIMEOUT_S = 900
LOCK_WAIT = ("-o", "DPkg::Lock::Timeout=600")


class AptInstallError(RuntimeError):
    """The package could not be installed with apt; the message says why and what to do."""


def apt_install(package: str) -> None:
    """Install ``package`` (without recommends) after refreshing the package lists."""
    how = f"install it with: apt-get update && apt-get install -y {package}"
    if shutil.which("apt-get") is None:
        raise AptInstallError(f"{package} is missing and there is no apt-get here; {how}")
    if os.geteuid() != 0:
        raise AptInstallError(f"{package} is missing and this user is not root; {how}")
    _run(["apt-get", *LOCK_WAIT, "update", "-q"], how)
    policy = _run(["apt-cache", "policy", package], how)
    if "Candidate: (none)" in policy or "Candidate:" not in policy:
        raise AptInstallError(f"apt knows no installable {package} package:\n{policy}\n{how}")
    install = ["apt-get", *LOCK_WAIT, "install", "-y", "-q", "--no-install-recommends", package]
    _run(install, how)


def install_or_skip(package: str, needed_for: str) -> None:
    """``apt_install(package)``; if that cannot be done, skip the calling test (fail it
    under CI=true), naming what it was ``needed_for`` and why."""
    try:
        apt_install(package)
    except AptInstallError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and no {package} for {needed_for}: {exc}")
        pytest.skip(f"no {package} for {needed_for}: {exc}")


def _run(command: list[str], how: str) -> str:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AptInstallError(f"{' '.join(command)} failed: {exc}; {how}") from exc
    if done.returncode != 0:
        tail = done.stderr[-3000:]
        raise AptInstallError(f"{' '.join(command)} exited {done.returncode}:\n{tail}\n{how}")
    return done.stdout
