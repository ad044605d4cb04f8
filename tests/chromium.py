"""Headless Chromium for tests, driven over the DevTools protocol on a pipe (standard library only).

Used by the report and nightly tests: load a file, collect script errors, dialogs and requests,
read the page's text and take a full-page screenshot.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
    "--disable-extensions", "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
    "--force-color-profile=srgb",
    # no network at all: every request goes to a dead proxy, every name fails to resolve
    "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>", "--host-resolver-rules=MAP * ~NOTFOUND",
    "--remote-debugging-pipe",
]


class DevTools:
    """Chromium driven over the DevTools protocol on a pipe (fd 3 in, fd 4 out, NUL-separated JSON)."""

    def __init__(self, exe: str, profile: Path) -> None:
        child_in, self._out = os.pipe()
        self._in, child_out = os.pipe()
        # bash, not sh: dash cannot redirect from descriptors above 9
        cmd = [shutil.which("bash") or "/bin/bash", "-c", f'exec "$0" "$@" 3<&{child_in} 4>&{child_out}', exe,
               *CHROMIUM_FLAGS,
               f"--user-data-dir={profile}", "about:blank"]
        self.proc = subprocess.Popen(cmd, pass_fds=(child_in, child_out), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        os.close(child_in)
        os.close(child_out)
        self._buf = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []

    def _write(self, method: str, params: dict | None, session: str | None) -> int:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._out, json.dumps(msg).encode() + b"\0")
        return self._id

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("Chromium did not answer in time")
            if select.select([self._in], [], [], left)[0]:
                chunk = os.read(self._in, 1 << 20)
                if not chunk:
                    err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                    raise RuntimeError(f"Chromium closed the DevTools pipe:\n{err[-3000:]}")
                self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        msg = json.loads(raw)
        if msg.get("method") == "Page.javascriptDialogOpening":  # an alert() ran: record it, dismiss it
            self._write("Page.handleJavaScriptDialog", {"accept": True}, msg.get("sessionId"))
        return msg

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict[str, Any]:
        want = self._write(method, params, session)
        deadline = time.monotonic() + timeout
        while True:
            msg = self._read(deadline)
            if msg.get("id") == want:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def wait_event(self, method: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            msg = self._read(deadline)
            if "method" in msg:
                self.events.append(msg)

    def close(self) -> None:
        try:
            self._write("Browser.close", None, None)
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            if self.proc.stderr:
                self.proc.stderr.close()
            os.close(self._in)
            os.close(self._out)


@dataclass
class Page:
    text: str
    screenshot: bytes
    scripts: int
    images: list[int]  # natural widths
    svgs: int
    events: list[dict[str, Any]] = field(default_factory=list)
    #: elements whose content is wider than their box (clipped or scrolled sideways): "tag.class"
    overflowing: list[str] = field(default_factory=list)

    def of(self, method: str) -> list[dict[str, Any]]:
        return [e["params"] for e in self.events if e.get("method") == method]

    @property
    def errors(self) -> list[str]:
        out = [json.dumps(p) for p in self.of("Runtime.exceptionThrown")]
        out += [json.dumps(p) for p in self.of("Log.entryAdded") if p["entry"]["level"] == "error"]
        out += [json.dumps(p) for p in self.of("Runtime.consoleAPICalled") if p["type"] in ("error", "assert")]
        return out

    @property
    def requests(self) -> list[str]:
        return [p["request"]["url"] for p in self.of("Network.requestWillBeSent")]


def open_in_chromium(exe: str, path: Path, profile: Path, width: int = 1280) -> Page:
    """Load ``path`` in a fresh headless Chromium, wait for the load event, screenshot the whole page."""
    b = DevTools(exe, profile)
    try:
        target = b.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        s = b.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            b.send(f"{domain}.enable", session=s)
        b.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": 900, "deviceScaleFactor": 1,
                                                      "mobile": False}, session=s)
        b.send("Page.navigate", {"url": path.resolve().as_uri()}, session=s)
        b.wait_event("Page.loadEventFired")

        def js(expr: str) -> Any:
            return b.send("Runtime.evaluate", {"expression": expr, "returnByValue": True}, session=s)["result"]["value"]

        text = js("document.body.innerText")
        scripts = js("document.querySelectorAll('script').length")
        images = js("Array.from(document.images).map(i => i.complete ? i.naturalWidth : -1)")
        svgs = js("document.querySelectorAll('svg').length")
        overflowing = js("Array.from(document.querySelectorAll('body, main, section, .card, .card *, .scroll, "
                         "figure, table')).filter(e => e.scrollWidth > e.clientWidth + 1)"
                         ".map(e => e.tagName.toLowerCase() + (e.className ? '.' + e.className : '') + ' ' + "
                         "(e.querySelector('th, h2, .k') || e).textContent.slice(0, 30) + ' ' + e.scrollWidth + '>' "
                         "+ e.clientWidth)")
        size = b.send("Page.getLayoutMetrics", session=s)["cssContentSize"]
        shot = b.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": {
            "x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}}, session=s)["data"]
        return Page(text, base64.b64decode(shot), scripts, images, svgs, list(b.events), overflowing)
    finally:
        b.close()


def find_chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None and Path("/usr/bin/chromium").exists():
        exe = "/usr/bin/chromium"
    if exe is None:
        msg = "headless Chromium not found (Debian: apt-get install chromium; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return exe
