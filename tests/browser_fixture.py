"""A real headless browser for tests of HTML pages: Debian's chromium (installed with apt-get when
missing and this is root with apt-get), driven by Playwright (its own browser downloads are never
used: nothing is fetched from outside the package registries)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
# No GPU, no sandbox (root in a container), and none of the background traffic a browser starts.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def ensure_chromium() -> str | None:
    """Install Debian's chromium when it is missing; why a browser test cannot run, or None."""
    if CHROMIUM.exists():
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return f"no {CHROMIUM}; installing it needs root and apt-get (apt-get install chromium)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    result = subprocess.run(install, env=env, capture_output=True, text=True)
    if result.returncode != 0:  # stale or missing package lists: refresh once, retry
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, text=True)
        result = subprocess.run(install, env=env, capture_output=True, text=True)
    if not CHROMIUM.exists():
        return f"could not install chromium: {(result.stdout + result.stderr)[-1000:]}"
    return None


@contextmanager
def headless_chromium() -> Iterator:
    """Playwright's handle on a headless Debian chromium."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
