"""A real browser for the tests: Debian's chromium driven by Playwright.

Never ``playwright install`` (it downloads browsers); the system chromium is
launched headless with the flags that keep it off the network. Playwright's
sync API must not run inside a running asyncio loop, so browser tests talk to
servers running in other threads or processes.

:func:`module_page` is the bench for the portal's ES modules (sealed.js,
account.js): a page on 127.0.0.1 (a secure context, so WebCrypto is there)
that loads a test script importing them from /static/, exactly as the portal
serves them, with the test vectors under /vectors/ and blobs Python prepares
under /data/.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "gateway" / "portal" / "static"
VECTORS = ROOT / "tests" / "vectors"

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


TEST_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>module test</title>
<script type="module" src="/test.js"></script></head><body></body></html>
"""
CONTENT_TYPES = {".js": "text/javascript", ".json": "application/json", ".css": "text/css"}


class _Handler(BaseHTTPRequestHandler):
    server: _TestServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?", 1)[0]
        if path == "/":
            self._send(TEST_HTML.encode(), "text/html; charset=utf-8")
        elif path == "/test.js":
            self._send(self.server.test_js.encode(), "text/javascript")
        elif path.startswith("/data/") and path[6:] in self.server.blobs:
            self._send(self.server.blobs[path[6:]], "application/octet-stream")
        elif path.startswith("/static/"):
            self._file(STATIC, path[len("/static/") :])
        elif path.startswith("/vectors/"):
            self._file(VECTORS, path[len("/vectors/") :])
        else:
            self.send_error(404)

    def _file(self, directory: Path, name: str) -> None:
        target = (directory / name).resolve()  # subfolders too: static/vendor/
        if not target.is_relative_to(directory.resolve()) or not target.is_file():
            self.send_error(404)
            return
        self._send(
            target.read_bytes(), CONTENT_TYPES.get(target.suffix, "application/octet-stream")
        )

    def _send(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in self.server.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


class _TestServer(ThreadingHTTPServer):
    daemon_threads = True
    blobs: dict[str, bytes]
    test_js: str
    headers: Mapping[str, str]


class ModulePage:
    """The test page in chromium, with the console errors it logged."""

    def __init__(self, page: Any, server: _TestServer) -> None:
        self.page = page
        self.server = server
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def serve(self, name: str, data: bytes) -> str:
        self.server.blobs[name] = data
        return f"/data/{name}"

    def call(self, function: str, argument: Any = None) -> Any:
        """``window.sgTest[function](argument)`` in the page, awaited; JSON-able in and out."""
        return self.page.evaluate(
            "([name, argument]) => window.sgTest[name](argument)", [function, argument]
        )

    def take_errors(self) -> list[str]:
        errors, self.errors[:] = list(self.errors), []
        return errors


@contextmanager
def module_page(test_js: str, headers: Mapping[str, str] | None = None) -> Iterator[ModulePage]:
    """Chromium on a page that runs ``test_js`` as a module; it must set ``window.sgTest``.

    ``headers`` go on every response (the portal's Content-Security-Policy, say). One launch
    per call: a test module holds it in a module-scoped fixture.
    """
    server = _TestServer(("127.0.0.1", 0), _Handler)
    server.blobs, server.test_js, server.headers = {}, test_js, dict(headers or {})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with chromium() as browser:
            context = browser.new_context()  # type: ignore[attr-defined]
            tab = ModulePage(context.new_page(), server)
            tab.page.goto(f"{tab.origin}/")
            tab.page.wait_for_function("window.sgTest !== undefined && window.isSecureContext")
            yield tab
            context.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
