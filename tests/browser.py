"""A real browser for the tests: headless Chromium driven over the DevTools protocol.

`rendered_text` loads a page and returns its text once it shows what the test waits for,
reading through shadow roots (TensorBoard and JupyterLab draw inside web components, which
`--dump-dom` does not show).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="chromium is not installed (scripts/install-test-tools.sh installs it)")

# Every text node the document shows (not scripts or styles), shadow roots included.
DEEP_TEXT = """(() => { const out = [];
  const walk = (node) => { if (node.nodeType === 3) out.push(node.textContent);
    if (node.nodeName === 'SCRIPT' || node.nodeName === 'STYLE') return;
    if (node.shadowRoot) walk(node.shadowRoot); for (const c of node.childNodes) walk(c); };
  walk(document); return out.join(' '); })()"""
# The text when it holds WANTED, else its start (a page's text can run to megabytes).
WAIT = "(() => { const text = %s; return text.includes(%s) ? text : text.slice(0, 2000); })()"


def rendered_text(url: str, wait_for: str, timeout: float = 120.0) -> str:
    """The page's text once it contains `wait_for` (AssertionError with the text if never)."""
    websocket = pytest.importorskip("websocket")
    assert CHROMIUM is not None, "chromium is required in CI (scripts/install-test-tools.sh)"
    profile = tempfile.mkdtemp(prefix="cade-chromium-")
    browser = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0",
         "--remote-allow-origins=*", f"--user-data-dir={profile}", "--window-size=1400,900",
         "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port = _devtools_port(Path(profile), time.time() + 60)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as answer:
            page = next(t for t in json.load(answer) if t["type"] == "page")
        socket = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60,
                                             suppress_origin=True)
        calls = iter(range(1, 10**6))

        def call(method: str, **params: object) -> dict:
            number = next(calls)
            socket.send(json.dumps({"id": number, "method": method, "params": params}))
            while True:
                message = json.loads(socket.recv())
                if message.get("id") == number:
                    return message.get("result", {})

        call("Page.navigate", url=url)
        deadline, text = time.time() + timeout, ""
        while time.time() < deadline:
            expression = WAIT % (DEEP_TEXT, json.dumps(wait_for))
            result = call("Runtime.evaluate", expression=expression, returnByValue=True)
            text = str(result.get("result", {}).get("value", ""))
            if wait_for in text:
                return text
            time.sleep(1)
        raise AssertionError(f"{wait_for!r} never appeared on {url}; the page shows: {text[:2000]}")
    finally:
        browser.terminate()
        browser.wait(timeout=30)
        shutil.rmtree(profile, ignore_errors=True)


def _devtools_port(profile: Path, deadline: float) -> int:
    marker = profile / "DevToolsActivePort"
    while time.time() < deadline:
        if marker.exists() and marker.read_text().strip():
            return int(marker.read_text().split()[0])
        time.sleep(0.2)
    raise AssertionError("chromium did not open its DevTools port")
