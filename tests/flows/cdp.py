"""Headless Chromium driven over the Chrome DevTools Protocol (its websocket, with the `websockets` package; no
chromedriver): open a page, evaluate script, click and type as a user does, reload."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--remote-debugging-port=0", "--window-size=1400,1000")


class Chromium:
    """One headless Chromium with one page (first `url`), its profile in `profile`; use as a context manager."""

    def __init__(self, profile: Path, url: str = "about:blank", timeout: float = 30.0) -> None:
        self.timeout = timeout
        self.process = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", url],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port = self._port(profile / "DevToolsActivePort")
        no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with no_proxy.open(f"http://127.0.0.1:{port}/json/list", timeout=timeout) as response:
            page = next(target for target in json.load(response) if target["type"] == "page")
        self.socket = connect(page["webSocketDebuggerUrl"], proxy=None, max_size=None, open_timeout=timeout)
        self._id = 0

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *_: object) -> None:
        self.socket.close()
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _port(self, active: Path) -> int:
        """The DevTools port Chromium chose, from the file it writes into its profile."""
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if active.is_file() and (lines := active.read_text().splitlines()):
                return int(lines[0])
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited with code {self.process.returncode}")
            time.sleep(0.1)
        raise TimeoutError("chromium did not open its DevTools port")

    def send(self, method: str, **params: Any) -> dict:
        """One DevTools command; its result (events in between are skipped)."""
        self._id += 1
        self.socket.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=self.timeout))
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str) -> Any:
        """The first truthy value of `expression`, polled; TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if value := self.evaluate(expression):
                return value
            time.sleep(0.1)
        raise TimeoutError(f"waited {self.timeout:.0f} s for {expression}")

    def click(self, selector: str) -> None:
        """A left mouse click in the middle of the element, scrolled into view, as a user's."""
        x, y = self.evaluate(f"""(() => {{
            const element = document.querySelector({json.dumps(selector)});
            element.scrollIntoView({{block: "center"}});
            const box = element.getBoundingClientRect();
            return [box.x + box.width / 2, box.y + box.height / 2];
        }})()""")
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def type(self, selector: str, text: str) -> None:
        """Click the element (a text field) and type `text` into it."""
        self.click(selector)
        self.send("Input.insertText", text=text)

    def open(self, url: str) -> None:
        """Go to `url` and wait until its document has loaded."""
        self.send("Page.navigate", url=url)
        self.wait_for(f"location.href === {json.dumps(url)} && document.readyState === 'complete'")

    def reload(self) -> None:
        """Reload the page and wait until the new document has loaded."""
        self.evaluate("window.beforeReload = true")
        self.send("Page.reload")
        self.wait_for("!window.beforeReload && document.readyState === 'complete'")
