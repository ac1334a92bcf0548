"""A minimal Chrome DevTools Protocol client over --remote-debugging-pipe, for benchmarks only.

Why not Playwright here: Playwright's driver forwards every WebSocket frame of every page to its
Python client (base64, validated, unconditionally); pages that stream live media send and
receive 100-250 frames/s each, and on a loaded machine the client falls minutes behind, so every
evaluate waits behind that backlog. This client enables no domain but Runtime on the pages it
opens: nothing arrives that it did not ask for. Works through `ip netns exec` (the pipe is
inherited file descriptors 3 and 4). Never used by tests or the product.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time


class CdpError(RuntimeError):
    pass


class Browser:
    def __init__(self, argv_prefix: list[str], chromium: str, args: list[str]) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="cdp-")
        to_r, to_w = os.pipe()      # we write, Chromium reads on fd 3
        from_r, from_w = os.pipe()  # Chromium writes on fd 4

        def fds() -> None:  # in the child: the pipe on fds 3 and 4 (dup2 makes them inheritable)
            os.dup2(to_r, 3)
            os.dup2(from_w, 4)

        self.proc = subprocess.Popen([*argv_prefix, chromium, "--headless=new", "--remote-debugging-pipe",
                                      f"--user-data-dir={self._tmp.name}", *args, "about:blank"],
                                     preexec_fn=fds, close_fds=False, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        os.close(to_r)
        os.close(from_w)
        self._w = os.fdopen(to_w, "wb", buffering=0)
        self._r = os.fdopen(from_r, "rb", buffering=0)
        self._buf = b""
        self._id = 0

    def _send(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self._w.write(json.dumps(msg).encode() + b"\0")
        return self._id

    def _recv(self) -> dict:
        while b"\0" not in self._buf:
            chunk = self._r.read(1 << 16)
            if not chunk:
                raise CdpError("Chromium closed its DevTools pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        want = self._send(method, params, session)
        while True:
            m = self._recv()
            if m.get("id") == want:
                if "error" in m:
                    raise CdpError(f"{method}: {m['error']}")
                return m.get("result", {})

    def new_page(self, url: str) -> "Page":
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        page.goto(url)
        return page

    def close(self) -> None:
        try:
            self._send("Browser.close")
            self.proc.wait(10)
        except Exception:  # noqa: BLE001 - closing anyway
            self.proc.kill()
        self._tmp.cleanup()


class Page:
    def __init__(self, browser: Browser, session: str) -> None:
        self.b, self.session = browser, session
        self.url = "about:blank"

    def goto(self, url: str, guard_s: float = 60.0) -> None:
        self.url = url
        self.b.call("Page.navigate", {"url": url}, self.session)
        end = time.monotonic() + guard_s
        while self.evaluate("location.href === 'about:blank' ? '' : document.readyState") != "complete":
            if time.monotonic() > end:
                raise CdpError(f"{url} did not load")
            time.sleep(0.1)

    def evaluate(self, expr: str):
        r = self.b.call("Runtime.evaluate", {"expression": expr, "returnByValue": True, "awaitPromise": True},
                        self.session)
        if "exceptionDetails" in r:
            raise CdpError(f"{self.url}: {expr}: {r['exceptionDetails'].get('text')} "
                           f"{r['exceptionDetails'].get('exception', {}).get('description')}")
        return r["result"].get("value")
