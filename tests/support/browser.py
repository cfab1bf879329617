"""A real headless browser for tests that look at HTML pages, installed from Debian if missing.

``browser`` (a session fixture) finds ``chromium`` on PATH or installs Debian's
``chromium`` package with apt (as root). Where it cannot be installed (not root, no
apt), tests using it skip and say why, except under ``CI=true``, where they fail:

    images = browser.images(tmp_path / "report.html", tmp_path)  # [Image(alt, width)]
    dom = browser.dom(page, tmp_path)                           # the DOM after load
    browser.screenshot(page, tmp_path / "page.png", width=1280, height=2400)
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.apt import install_or_skip

PACKAGE = "chromium"
RUN_TIMEOUT_S = 120
# Run budget of page time: the page's load event fires well within it.
VIRTUAL_TIME_MS = 10_000
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", f"--virtual-time-budget={VIRTUAL_TIME_MS}")  # fmt: skip
CHECK_ID = "browser-image-check"
# Appended to a copy of the page: after load, every image's natural width, in the DOM.
IMAGE_CHECK = (
    "<script>window.addEventListener('load', () => {"
    f"const out = document.createElement('pre'); out.id = '{CHECK_ID}';"
    "out.textContent = JSON.stringify(Array.from(document.images,"
    " (image) => [image.alt, image.complete ? image.naturalWidth : -1]));"
    "document.body.appendChild(out);});</script>"
)


@dataclass(frozen=True)
class Image:
    alt: str
    natural_width: int  # 0: the image did not load; -1: still loading after the budget


@dataclass(frozen=True)
class Browser:
    binary: Path

    def run(self, *arguments: str) -> str:
        """Run chromium headless with a fresh profile; its stdout."""
        with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
            done = subprocess.run(
                [str(self.binary), *FLAGS, f"--user-data-dir={profile}", *arguments],
                capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False,
            )  # fmt: skip
        if done.returncode != 0:
            pytest.fail(f"chromium exited {done.returncode}:\n{done.stderr[-3000:]}")
        return done.stdout

    def dom(self, page: Path) -> str:
        """The page's DOM, serialised after its load event."""
        return self.run("--dump-dom", page.resolve().as_uri())

    def images(self, page: Path, workdir: Path) -> list[Image]:
        """Every <img> of ``page`` with its natural width once the page has loaded."""
        checked = workdir / f"checked-{page.name}"
        text = page.read_text(encoding="utf-8")
        checked.write_text(text.replace("</body>", IMAGE_CHECK + "</body>"), encoding="utf-8")
        dom = self.dom(checked)
        start = dom.find(f'<pre id="{CHECK_ID}">')
        if start < 0:
            pytest.fail(f"the image check did not run: no #{CHECK_ID} in the DOM")
        found = dom[start:].split(">", 1)[1].split("</pre>", 1)[0]
        return [Image(alt, width) for alt, width in json.loads(_unescape(found))]

    def screenshot(self, page: Path, out: Path, width: int, height: int) -> None:
        self.run(f"--window-size={width},{height}", f"--screenshot={out.resolve()}",
                 page.resolve().as_uri())  # fmt: skip
        if not out.exists():
            pytest.fail(f"chromium wrote no screenshot to {out}")


def _unescape(text: str) -> str:
    return (
        text.replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    )


@pytest.fixture(scope="session", name="browser")
def browser_fixture() -> Browser:
    """Chromium, installed with apt first if it is not on PATH."""
    if shutil.which(PACKAGE) is None:
        install_or_skip(PACKAGE, "the report tests in a headless browser")
    binary = shutil.which(PACKAGE)
    if binary is None:
        pytest.fail(f"apt installed {PACKAGE}, yet chromium is not on PATH")
    return Browser(Path(binary))
