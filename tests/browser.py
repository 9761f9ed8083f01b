"""A real Chromium for the kiosk page tests, driven by Playwright, and what it sees of the page.

Debian's `chromium` (/usr/bin/chromium), never a browser Playwright downloads: the test
machines have no network, and CI installs the package (`./manage.sh test`). A missing
browser or Playwright is an error, not a reason to skip: a skipped browser suite would
hide every regression of the page.

The browser runs on a thread of its own, with its own event loop. Playwright's objects
belong to the loop that made them, and pytest-asyncio gives each test a fresh one; a
browser shared by the whole session must live on a loop that outlives them. It also keeps
the browser's traffic and the assistant under test (on the test's loop) from waiting on
each other. Tests reach it through `Browser.call`, which runs a coroutine there.

Every page opened gets a recorder (RECORDER, injected before the page's own script): a
MutationObserver notes what the page shows after each change (`View`), and a wrapped
WebSocket notes each message kind received and each command sent. A state shown for a few
milliseconds is therefore seen, where polling from outside could miss it.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

if TYPE_CHECKING:
    from playwright.async_api import Browser as PlaywrightBrowser
    from playwright.async_api import BrowserContext, CDPSession, Page, Playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # With no network, Chromium's own background fetches (component updates, sync, field
    # trials) stall and slow everything down: none of them.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
INSTALL_HINT = (
    "install Debian's chromium (`apt-get install chromium`) and Playwright "
    "(`pip install -e '.[dev]'`); `./manage.sh test` installs both"
)
CALL_TIMEOUT_S = 10.0
"""Longest wait for one browser action (a wait for the page has its own timeout)."""
LAUNCH_TIMEOUT_S = 60.0

Touch = Literal["mouse", "touch"]
T = TypeVar("T")


class BrowserMissing(RuntimeError):
    """The browser, or Playwright, is not installed."""


RECORDER = """
(() => {
  const kiosk = { history: [], received: [], sent: [] };
  window.__kiosk = kiosk;
  const text = (id) => (document.getElementById(id) || {}).textContent || "";
  kiosk.view = () => {
    const banner = document.getElementById("banner");
    const talk = document.getElementById("talk");
    return {
      t: Date.now(),
      state: text("state"),
      data_state: document.body.dataset.state || "",
      colour: document.documentElement.style.getPropertyValue("--state").trim(),
      app: text("app"),
      transcript: text("transcript"),
      answer: [...document.querySelectorAll("#answer p")].map((p) => p.textContent),
      banner: banner && banner.classList.contains("shown") ? banner.textContent : "",
      talk_shown: Boolean(talk && !talk.hidden),
      talk_enabled: Boolean(talk && !talk.disabled),
      talk_held: Boolean(talk && talk.classList.contains("held")),
      marks: text("marks"),
    };
  };
  const same = (a, b) => JSON.stringify({ ...a, t: 0 }) === JSON.stringify({ ...b, t: 0 });
  const record = () => {
    const view = kiosk.view();
    const last = kiosk.history[kiosk.history.length - 1];
    if (!last || !same(last, view)) kiosk.history.push(view);
  };
  document.addEventListener("DOMContentLoaded", () => {
    record();
    new MutationObserver(record).observe(document.documentElement, {
      subtree: true, childList: true, characterData: true, attributes: true });
  });
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (e) => {
        try { kiosk.received.push(JSON.parse(e.data).kind); } catch (err) { /* not JSON */ }
      });
    }
    send(data) {
      try { kiosk.sent.push(JSON.parse(data).command); } catch (err) { /* not JSON */ }
      return super.send(data);
    }
  };
})();
"""

LAYOUT = """
(selectors) => {
  const root = document.documentElement;
  const boxes = {};
  for (const selector of selectors) {
    const el = document.querySelector(selector);
    if (!el) { boxes[selector] = null; continue; }
    const r = el.getBoundingClientRect();
    const style = getComputedStyle(el);
    boxes[selector] = {
      left: r.left, top: r.top, right: r.right, bottom: r.bottom,
      width: r.width, height: r.height,
      shown: style.display !== "none" && style.visibility !== "hidden" && r.width > 0,
      scroll_width: el.scrollWidth, client_width: el.clientWidth,
      scroll_height: el.scrollHeight, client_height: el.clientHeight,
      scroll_top: el.scrollTop, overflow_y: style.overflowY,
    };
  }
  const talk = document.getElementById("talk").getBoundingClientRect();
  const hit = document.elementFromPoint(talk.left + talk.width / 2, talk.top + talk.height / 2);
  const last = document.querySelector("#answer p:last-child");
  return {
    width: root.clientWidth, height: root.clientHeight,
    scroll_width: root.scrollWidth, scroll_height: root.scrollHeight,
    talk_hit: Boolean(hit && hit.closest("#talk")),
    last_sentence: last ? (() => {
      const r = last.getBoundingClientRect();
      return { top: r.top, bottom: r.bottom };
    })() : null,
    boxes,
  };
}
"""


@dataclass(frozen=True, slots=True)
class View:
    """What the page showed at one moment (`t`: the page's clock, ms since the epoch)."""

    t: float
    state: str
    data_state: str
    colour: str
    """The light's colour: the `--state` custom property, e.g. `var(--speaking)`."""
    app: str
    transcript: str
    answer: tuple[str, ...]
    banner: str
    talk_shown: bool
    talk_enabled: bool
    talk_held: bool
    marks: str

    @classmethod
    def of(cls, raw: dict[str, Any]) -> View:
        return cls(**{**raw, "answer": tuple(raw["answer"])})


class Browser:
    """One headless Chromium on a thread (and event loop) of its own; `start`, then `open`."""

    def __init__(self, executable: Path = CHROMIUM) -> None:
        self._executable = executable
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="browser", daemon=True)
        self._playwright: Playwright | None = None
        self._browser: PlaywrightBrowser | None = None

    def start(self) -> None:
        """Launch Chromium; BrowserMissing when it or Playwright is not installed."""
        if not os.access(self._executable, os.X_OK):
            raise BrowserMissing(f"{self._executable} is missing: {INSTALL_HINT}")
        try:
            import playwright.async_api  # noqa: F401
        except ImportError as exc:
            raise BrowserMissing(f"Playwright for Python is missing: {INSTALL_HINT}") from exc
        self._thread.start()
        self._run_sync(self._launch(), LAUNCH_TIMEOUT_S)

    async def _launch(self) -> None:
        from playwright.async_api import async_playwright

        self._playwright = await async_playwright().start()
        # launch() (not a persistent context) starts from a fresh temporary profile each
        # time and deletes it at close: nothing carries over from another run.
        self._browser = await self._playwright.chromium.launch(
            executable_path=str(self._executable),
            args=list(CHROMIUM_ARGS),
            headless=True,
            timeout=LAUNCH_TIMEOUT_S * 1000,
        )

    def stop(self) -> None:
        if self._thread.is_alive():
            try:
                self._run_sync(self._close(), CALL_TIMEOUT_S)
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(CALL_TIMEOUT_S)
        if not self._thread.is_alive():
            self._loop.close()

    async def _close(self) -> None:
        if self._browser is not None:
            await self._browser.close()
        if self._playwright is not None:
            await self._playwright.stop()

    def _run_sync(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    async def call(self, coro: Coroutine[Any, Any, T], timeout: float = CALL_TIMEOUT_S) -> T:
        """Run `coro` (Playwright calls) on the browser's loop; cancelled after `timeout`."""
        future = asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))
        async with asyncio.timeout(timeout):
            return await future

    async def open(self, url: str, width: int, height: int, *, touch: bool = False) -> KioskPage:
        """`url` in a fresh context (no cookies, no storage) with a `width`×`height`
        viewport; `touch`: a touch screen (touch events work, as on a kiosk's panel)."""

        async def opening() -> KioskPage:
            assert self._browser is not None, "not started"
            context = await self._browser.new_context(
                viewport={"width": width, "height": height},
                device_scale_factor=1,
                has_touch=touch,
            )
            await context.add_init_script(RECORDER)
            page = await context.new_page()
            kiosk = KioskPage(self, context, page)
            await page.goto(url, wait_until="load", timeout=CALL_TIMEOUT_S * 1000)
            return kiosk

        return await self.call(opening())


class KioskPage:
    """The kiosk page in one browser context, and what the recorder saw of it."""

    def __init__(self, browser: Browser, context: BrowserContext, page: Page) -> None:
        self._browser = browser
        self._context = context
        self._page = page
        self._touch: CDPSession | None = None
        self.page_errors: list[str] = []
        """Uncaught exceptions in the page's script."""
        self.console_errors: list[str] = []
        """Errors the browser logged for the page: a Content-Security-Policy violation,
        a failed connection, a resource that would not load."""
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        page.on(
            "console",
            lambda message: (
                self.console_errors.append(message.text) if message.type == "error" else None
            ),
        )

    async def close(self) -> None:
        await self._browser.call(self._context.close())

    async def view(self) -> View:
        return View.of(await self._browser.call(self._page.evaluate("window.__kiosk.view()")))

    async def history(self) -> list[View]:
        """Every distinct view since the page loaded, in order."""
        raw = await self._browser.call(self._page.evaluate("window.__kiosk.history"))
        return [View.of(view) for view in raw]

    async def received(self) -> list[str]:
        """The kind of every message the page received, in order, over every connection."""
        kinds: list[str] = await self._browser.call(self._page.evaluate("window.__kiosk.received"))
        return kinds

    async def sent(self) -> list[str]:
        """The command of every message the page sent, in order."""
        commands: list[str] = await self._browser.call(self._page.evaluate("window.__kiosk.sent"))
        return commands

    async def wait_until(self, condition: str, timeout: float, arg: Any = None) -> None:
        """Until the JavaScript `condition` (a function of `view`, the current View, and
        `arg`) is true: checked in the page at each change and every 50 ms."""
        expression = f"(arg) => {{ const view = window.__kiosk.view(); return ({condition}); }}"
        await self._browser.call(
            self._page.wait_for_function(expression, arg=arg, polling=50, timeout=timeout * 1000),
            timeout + CALL_TIMEOUT_S,
        )

    async def wait_for_state(self, *states: str, timeout: float) -> None:
        await self.wait_until("arg.includes(view.state)", timeout, list(states))

    async def press_talk(self, how: Touch) -> None:
        """Put a finger (or the mouse button) down on the talk button, and keep it there."""
        x, y = await self._talk_centre()
        if how == "mouse":
            await self._browser.call(self._mouse_down(x, y))
        else:
            await self._browser.call(self._touch_event("touchStart", [{"x": x, "y": y}]))

    async def release_talk(self, how: Touch, *, slide_off: bool = False) -> None:
        """Lift it; `slide_off`: first move it off the button (a finger that slid away)."""
        if slide_off:
            await self._browser.call(self._slide_off(how))
        if how == "mouse":
            await self._browser.call(self._page.mouse.up())
        else:
            await self._browser.call(self._touch_event("touchEnd", []))

    async def _talk_centre(self) -> tuple[float, float]:
        box = await self._browser.call(self._page.locator("#talk").bounding_box())
        assert box is not None, "the talk button is not shown"
        return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2

    async def _mouse_down(self, x: float, y: float) -> None:
        await self._page.mouse.move(x, y)
        await self._page.mouse.down()

    async def _slide_off(self, how: Touch) -> None:
        if how == "mouse":
            await self._page.mouse.move(5, 5, steps=5)
        else:
            await self._touch_event("touchMove", [{"x": 5, "y": 5}])

    async def _touch_event(self, kind: str, points: list[dict[str, float]]) -> None:
        # Playwright's touchscreen only taps; holding a finger down takes the DevTools
        # protocol's touch input, which the page receives as real pointer events.
        if self._touch is None:
            self._touch = await self._context.new_cdp_session(self._page)
        await self._touch.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

    async def layout(self, selectors: list[str]) -> dict[str, Any]:
        """The viewport, its scroll size, and each element's box and scroll sizes."""
        result: dict[str, Any] = await self._browser.call(self._page.evaluate(LAYOUT, selectors))
        return result

    async def screenshot(self) -> bytes:
        """The viewport as a PNG."""
        return await self._browser.call(self._page.screenshot(type="png", animations="disabled"))
