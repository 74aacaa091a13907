"""A headless Chromium driven over the Chrome DevTools protocol: open a page, run JavaScript in it,
collect its console errors, name the fonts that drew an element's text, take a screenshot.
Debian's ``chromium`` package is the browser (no browser is downloaded); ``websocket-client``
carries the protocol.

    with Chromium() as browser:
        errors = browser.open("file:///.../index.html")   # the console errors of the load
        browser.evaluate("document.title")
        browser.screenshot(Path("page.png"))

``tests/test_site.py`` checks the built site with it;
``python -m shared.docgen.browser URL OUT.png`` takes one screenshot.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
LISTENING = re.compile(r"DevTools listening on (ws://\S+)")


def find_chromium() -> str | None:
    """The browser's path: ``$CHROMIUM`` if set, else the first of :data:`CANDIDATES` on PATH."""
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


class BrowserError(RuntimeError):
    """The browser did not start, or a protocol command failed or timed out."""


class Chromium:
    """One headless Chromium with one page (tab); use it as a context manager.

    Args:
        binary: the browser (default :func:`find_chromium`).
        width, height: the viewport in CSS pixels.
        timeout: seconds to wait for the browser, a command or a page load.
    """

    def __init__(self, binary: str | None = None, width=1280, height=900, timeout=30.0):
        self.binary = binary or find_chromium()
        if self.binary is None:
            raise BrowserError(f"no Chromium found (tried {', '.join(CANDIDATES)}, $CHROMIUM)")
        self.size, self.timeout = (width, height), timeout
        self.errors: list[str] = []
        self._ids = itertools.count(1)
        self._profile = self._proc = self._ws = None

    def __enter__(self) -> Chromium:
        import websocket  # websocket-client

        self._profile = tempfile.mkdtemp(prefix="rosetta-chromium-")
        args = [self.binary, "--headless=new", "--no-sandbox", "--disable-gpu"]
        args += ["--no-first-run", "--no-default-browser-check", "--disable-extensions"]
        args += ["--remote-debugging-port=0", f"--user-data-dir={self._profile}", "about:blank"]
        self._proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
        url = self._browser_url()
        page = json.loads(
            _http_get(url.replace("ws://", "http://").split("/devtools/")[0] + "/json/list")
        )
        target = next(t for t in page if t["type"] == "page")
        self._ws = websocket.create_connection(
            target["webSocketDebuggerUrl"], timeout=self.timeout, suppress_origin=True
        )
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")
        width, height = self.size
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        return self

    def _browser_url(self) -> str:
        deadline = time.monotonic() + self.timeout
        seen = []
        while time.monotonic() < deadline:
            line = self._proc.stderr.readline()
            if not line and self._proc.poll() is not None:
                break
            seen.append(line.strip())
            m = LISTENING.search(line)
            if m:
                return m.group(1)
        self.__exit__()
        raise BrowserError(f"{self.binary} did not start: {' / '.join(seen[-5:])}")

    def __exit__(self, *exc) -> None:
        if self._ws is not None:
            self._ws.close()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc is not None:
            self._proc.stderr.close()
        if self._profile:
            shutil.rmtree(self._profile, ignore_errors=True)

    def send(self, method: str, **params) -> dict:
        """Send one protocol command and return its result; events that arrive meanwhile are
        recorded (console errors) or dropped."""
        msg_id = next(self._ids)
        self._ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            msg = json.loads(self._ws.recv())
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise BrowserError(f"{method}: {msg['error'].get('message')}")
                return msg.get("result", {})
            self._record(msg)
        raise BrowserError(f"{method}: no answer in {self.timeout} s")

    def _record(self, msg: dict) -> None:
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = params.get("args", [])
            self.errors.append(
                "console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in args)
            )
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text", "")
            self.errors.append(f"exception: {text}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            self.errors.append(f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}")

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (promises awaited), as JSON."""
        result = self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"evaluate: {text}")
        return result["result"].get("value")

    def open(self, url: str) -> list[str]:
        """Load ``url``, wait for its load event and its images; return the console errors
        (uncaught exceptions, console.error, failed loads) the load produced. The previous
        page is left for about:blank first, so that its late events are not counted here."""
        self._load("about:blank")
        self.errors = []
        self._load(url)
        self.evaluate(
            "Promise.all([...document.images].map(i => { i.loading = 'eager';"
            " return i.decode().catch(() => null); }))"
        )
        self.evaluate("new Promise(r => requestAnimationFrame(() => setTimeout(r, 50)))")
        return list(self.errors)

    def _load(self, url: str) -> None:
        self.send("Page.navigate", url=url)
        deadline = time.monotonic() + self.timeout
        while self.evaluate("[location.href, document.readyState]") != [url, "complete"]:
            if time.monotonic() > deadline:
                raise BrowserError(f"{url}: not loaded in {self.timeout} s")
            time.sleep(0.05)

    def wait(self, seconds: float) -> list[str]:
        """Let the page run for ``seconds`` (events keep arriving); return the errors so far."""
        self.evaluate(f"new Promise(r => setTimeout(r, {1000 * seconds:.0f}))")
        return list(self.errors)

    def rendered_fonts(self, selector: str) -> dict[str, int]:
        """The fonts that draw the text of the elements matching ``selector`` on the open page,
        as the renderer chose them after fallback: family name -> number of glyphs drawn."""
        self.evaluate("document.fonts.ready.then(() => true)")
        self.send("DOM.enable")
        self.send("CSS.enable")
        try:
            root = self.send("DOM.getDocument", depth=-1)["root"]["nodeId"]
            nodes = self.send("DOM.querySelectorAll", nodeId=root, selector=selector)["nodeIds"]
            families: dict[str, int] = {}
            for node in nodes:
                for font in self.send("CSS.getPlatformFontsForNode", nodeId=node)["fonts"]:
                    name = font["familyName"]
                    families[name] = families.get(name, 0) + font["glyphCount"]
            return families
        finally:
            self.send("CSS.disable")
            self.send("DOM.disable")

    def screenshot(self, path: Path, full_page: bool = False) -> Path:
        """Write the page as a PNG (the viewport, or the whole page with ``full_page``)."""
        params = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
        data = self.send("Page.captureScreenshot", **params)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path


def _http_get(url: str, timeout: float = 10.0) -> str:
    from urllib.request import urlopen

    with urlopen(url, timeout=timeout) as r:  # the browser's own loopback endpoint
        return r.read().decode()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m shared.docgen.browser URL OUT.png", file=sys.stderr)
        return 2
    with Chromium() as browser:
        errors = browser.open(args[0])
        browser.screenshot(Path(args[1]))
    for e in errors:
        print(f"console error: {e}", file=sys.stderr)
    print(f"wrote {args[1]}")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
