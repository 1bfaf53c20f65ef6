"""A headless Chromium driven over the Chrome DevTools Protocol, with nothing but aiohttp: launch
the browser, open a page, navigate, type, click (real mouse events at the element's centre),
read text and take PNG screenshots."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")
APT_HINT = "apt-get update && apt-get install -y chromium"


def find_chromium() -> str:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError(
        "headless Chromium is required for the console browser tests and was not found on PATH "
        f"(looked for {', '.join(CHROMIUM_NAMES)}); install it with: {APT_HINT}"
    )


class Page:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._events: list[dict[str, Any]] = []
        self._event_signal = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if "id" in data and data["id"] in self._pending:
                fut = self._pending.pop(data["id"])
                if "error" in data:
                    fut.set_exception(RuntimeError(f"CDP error: {data['error']}"))
                else:
                    fut.set_result(data.get("result", {}))
            elif "method" in data:
                self._events.append(data)
                self._event_signal.set()

    async def send(self, method: str, **params: Any) -> Any:
        msg_id = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        await self._ws.send_str(json.dumps({"id": msg_id, "method": method, "params": params}))
        return await asyncio.wait_for(fut, 30)

    async def wait_event(self, method: str, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for index, event in enumerate(self._events):
                if event["method"] == method:
                    del self._events[: index + 1]
                    return event
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {method} within {timeout}s")
            self._event_signal.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event_signal.wait(), remaining)

    async def eval(self, expression: str) -> Any:
        result = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def goto(self, url: str) -> None:
        self._events.clear()
        await self.send("Page.navigate", url=url)
        await self.wait_event("Page.loadEventFired")

    async def url(self) -> str:
        return str(await self.eval("location.href"))

    async def text(self, selector: str = "body") -> str:
        return str(
            await self.eval(
                f"(document.querySelector({json.dumps(selector)}) || {{innerText: ''}}).innerText"
            )
        )

    async def count(self, selector: str) -> int:
        return int(await self.eval(f"document.querySelectorAll({json.dumps(selector)}).length"))

    async def type(self, selector: str, text: str) -> None:
        await self.click(selector, navigates=False)
        await self.eval(f"document.querySelector({json.dumps(selector)}).value = ''")
        await self.send("Input.insertText", text=text)

    async def click(self, selector: str, *, navigates: bool = True) -> None:
        """A real mouse click at the centre of the element (scrolled into view)."""
        box = await self.eval(
            f"""(() => {{
                const el = document.querySelector({json.dumps(selector)});
                if (!el) return null;
                el.scrollIntoView({{block: 'center'}});
                const r = el.getBoundingClientRect();
                return {{x: r.left + r.width / 2, y: r.top + r.height / 2}};
            }})()"""
        )
        if box is None:
            raise AssertionError(f"no element matches {selector!r} on {await self.url()}")
        self._events.clear()
        for kind in ("mousePressed", "mouseReleased"):
            await self.send(
                "Input.dispatchMouseEvent",
                type=kind,
                x=box["x"],
                y=box["y"],
                button="left",
                clickCount=1,
            )
        if navigates:
            await self.wait_event("Page.loadEventFired")

    async def press(self, key: str, *, navigates: bool = False) -> None:
        """One key pressed and released on whatever has the focus (Tab, Shift+Tab, Enter, ...)."""
        shift = key.startswith("Shift+")
        name = key.removeprefix("Shift+")
        codes = {"Tab": 9, "Enter": 13, "Escape": 27, "Space": 32}
        text = {"Enter": "\r", "Space": " "}.get(name, "")
        self._events.clear()
        params: dict[str, Any] = {
            "key": " " if name == "Space" else name,
            "code": name,
            "windowsVirtualKeyCode": codes.get(name, 0),
            "modifiers": 8 if shift else 0,
        }
        await self.send("Input.dispatchKeyEvent", type="keyDown", text=text, **params)
        await self.send("Input.dispatchKeyEvent", type="keyUp", **params)
        if navigates:
            await self.wait_event("Page.loadEventFired")

    async def focused(self) -> dict[str, str]:
        """What has the keyboard focus: its tag, id, data-action and accessible label."""
        found: dict[str, str] = await self.eval(
            """(() => { const el = document.activeElement; return {
                tag: el.tagName.toLowerCase(), id: el.id || '',
                action: el.dataset ? (el.dataset.action || '') : '',
                label: el.getAttribute('aria-label') || (el.textContent || '').trim() }; })()"""
        )
        return found

    async def tab_to(self, selector: str, limit: int = 200) -> None:
        """Press Tab until the element `selector` has the focus (keyboard only)."""
        for _ in range(limit):
            await self.press("Tab")
            if await self.eval(f"document.activeElement.matches({json.dumps(selector)})"):
                return
        raise AssertionError(f"{selector!r} was not reached with Tab on {await self.url()}")

    async def a11y_problems(self) -> list[str]:
        """WCAG AA checks of the rendered page (tests/support/a11y.js): text contrast 4.5:1 (3:1
        large), control and input borders 3:1 against what is around them, an accessible name
        on every control, and no two buttons or links with one name doing different things."""
        script = (Path(__file__).parent / "a11y.js").read_text()
        problems: list[str] = await self.eval(script)
        return problems

    async def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        shot = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(shot["data"]))

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader
        await self._ws.close()


@contextlib.asynccontextmanager
async def chromium(width: int = 1360, height: int = 900) -> AsyncIterator[Page]:
    binary = find_chromium()
    profile = Path(tempfile.mkdtemp(prefix="relay-chromium-"))
    proc = subprocess.Popen(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            f"--window-size={width},{height}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    session: aiohttp.ClientSession | None = None
    page: Page | None = None
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.poll() is not None:
                raise RuntimeError(f"chromium exited with code {proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError("chromium did not open its DevTools port")
            await asyncio.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        session = aiohttp.ClientSession()
        async with session.get(f"http://127.0.0.1:{port}/json/list") as resp:
            targets = await resp.json()
        pages = [t for t in targets if t.get("type") == "page"]
        if pages:
            ws_url = pages[0]["webSocketDebuggerUrl"]
        else:
            async with session.put(f"http://127.0.0.1:{port}/json/new?about:blank") as resp:
                ws_url = (await resp.json())["webSocketDebuggerUrl"]
        ws = await session.ws_connect(ws_url, max_msg_size=0)
        page = Page(ws)
        await page.send("Page.enable")
        await page.send("Runtime.enable")
        await page.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        yield page
    finally:
        if page is not None:
            await page.close()
        if session is not None:
            await session.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)
