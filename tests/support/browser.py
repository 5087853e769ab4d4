"""A real browser for the tests: Debian's chromium driven by Playwright.

Never ``playwright install`` (it downloads browsers); the system chromium is
launched headless with the flags that keep it off the network. Playwright's
sync API must not run inside a running asyncio loop, so browser tests talk to
servers running in other threads or processes.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@contextmanager
def chromium() -> Iterator[object]:
    """A launched Playwright Browser; closed (and its processes gone) on exit.

    Fails, never skips, without chromium: `make test` installs it (Debian's chromium).
    """
    from playwright.sync_api import sync_playwright

    if shutil.which(CHROMIUM) is None:
        raise RuntimeError(
            f"no chromium at {CHROMIUM}: run `make test` as root, or "
            "apt-get install -y --no-install-recommends chromium"
        )

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()
