"""A page in headless Chromium, driven through the DevTools protocol (aiohttp's websocket client, already a
dependency of DVC): load, click, evaluate JavaScript, take a screenshot, collect uncaught JavaScript errors."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import time
from pathlib import Path

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


class Page:
    def __init__(self, ws, errors: list):
        self._ws, self._id, self.errors = ws, 0, errors

    async def call(self, method: str, **params):
        self._id += 1
        await self._ws.send_json({"id": self._id, "method": method, "params": params})
        async for msg in self._ws:
            data = json.loads(msg.data)
            if data.get("method") == "Runtime.exceptionThrown":
                self.errors.append(data["params"]["exceptionDetails"].get("exception", {}).get("description")
                                   or data["params"]["exceptionDetails"].get("text"))
            if data.get("id") == self._id:
                if "error" in data:
                    raise RuntimeError(f"{method}: {data['error']}")
                return data["result"]
        raise RuntimeError("the browser closed the connection")

    async def js(self, expression: str):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}...: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 30.0):
        """Poll a JavaScript expression until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = await self.js(expression)
            if value:
                return value
            await asyncio.sleep(0.2)
        raise TimeoutError(f"never true: {expression}")

    async def click_text(self, text: str, timeout: float = 15.0):
        """Click the first link or button whose visible text is ``text`` (what a reader would click)."""
        expr = (f"(() => {{ const el = [...document.querySelectorAll('a, button')].find(e => e.innerText.trim() === "
                f"{json.dumps(text)}); if (el) {{ el.click(); return true; }} return false; }})()")
        await self.wait_for(expr, timeout)
        await asyncio.sleep(0.3)

    async def goto(self, url: str):
        await self.call("Page.navigate", url=url)
        await self.wait_for("document.readyState === 'complete'")

    async def screenshot(self, path: Path):
        shot = await self.call("Page.captureScreenshot", format="png")
        Path(path).write_bytes(base64.b64decode(shot["data"]))


async def _with_page(url: str, profile: Path, action, width: int, height: int):
    import aiohttp

    profile.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                             "--no-first-run", "--remote-debugging-port=0", f"--user-data-dir={profile}",
                             f"--window-size={width},{height}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.is_file() and port_file.read_text().count("\n") >= 1):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start: {proc.stderr.read().decode()[-2000:]}")
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().splitlines()[0])
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as resp:
                targets = await resp.json()
            ws_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
            async with session.ws_connect(ws_url, max_msg_size=0) as ws:
                page = Page(ws, [])
                await page.call("Runtime.enable")
                await page.call("Page.enable")
                await page.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                                deviceScaleFactor=1, mobile=False)
                await page.goto(url)
                return await action(page)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def with_page(url: str, profile: Path, action, width: int = 1400, height: int = 1000):
    """Open ``url`` in a fresh headless Chromium and run ``await action(page)``; returns its result."""
    return asyncio.run(_with_page(url, profile, action, width, height))
