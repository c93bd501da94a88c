"""Real-browser load test: K visitors in one Chromium against the real server, as `make run` starts it.

    python -m bench.load [--visitors 1,5,10,20] [--loops 5] [--think 3] [--arrive 10] [--with-job]
                         [--no-stress] [--sessions 200]

Each visitor is a browser context of its own (a person) that opens /digits by its URL, then, in a
bounded loop, draws a digit and waits for the reading, goes to the Text page with the app's
navigation and types until suggestions for the word being typed show, goes to Mood and uploads a
face. Visitors arrive at random moments of the first `--arrive` seconds (a class opening a shared
link) and look at each result for `--think` seconds on average; the stress row has the most
visitors arrive at once and never pause. Each action is timed inside the page, from the person's
event (pen up, last key, file chosen) to the first animation frame that shows the result, so the
tool's own overhead is not counted. With --server-timing (a diagnostic, stored apart: it costs the browsers CPU) a
stroke is also timed on its websocket: from its message sent to the run's "script finished" received, as the page's
Chrome DevTools Protocol frame events see them (taken in the renderer, so they still include its queueing, but not
the drawing of the result). Reported per action: p50/p95/max, over all visits and over the
visits after the first (once the app is open in every browser); errors of any kind (timeouts,
exception boxes, console errors, failed requests); the server's peak RSS; the server's CPU per
interaction (CPU time over browser-to-server websocket messages); the browsers' CPU share. Then the
server CPU per interaction of each page alone (one visitor), an idle Training tab's CPU, the same
load with a training job running, and 200 sessions opened and closed (RSS before and after).

Chromium runs at the lowest CPU priority (nice 19), kept there by dropping its CAP_SYS_NICE (run as
root, it raises some of its threads to nice -8 otherwise), and its session groups are set to nice 19
as well (`keep_browsers_niced`: with Linux autogroup a process's nice level counts only inside its session):
real visitors' browsers run on their own machines, and on this 2-core machine they compete with the server. The in-page times include the
browsers' own work, K browsers on 2 cores here; the server's CPU per interaction is the figure that
scales. Only 127.0.0.1 is contacted; every loop is bounded in count and time. Results go to
bench/results/results.json ("load") and the README table (bench/run.py renders it).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import os
import shutil
import stat
import sys
import tempfile
import time
from contextlib import suppress
from pathlib import Path

import numpy as np
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

from pipelines import core, runs

ROOT = core.ROOT
sys.path.insert(0, str(ROOT / "tests"))
from browser import CHROMIUM, CHROMIUM_ARGS, DESKTOP, streamlit_server  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
# A text never typed before on each visit (192 of them, in turn): suggestions kept from an earlier visit
# cannot pass for the new ones, and the text model's memo of readings has nothing of it yet.
PROMPTS = [f"{a} {adj} {noun[:-2]}" for a in ("the", "a", "his")
           for adj in ("free", "great", "new", "old", "strong", "noble", "wise", "deep")
           for noun in ("spirit", "truth", "philosopher", "morality", "soul", "world", "will", "nature")]
TYPED = itertools.count()  # the visits to the text page so far, all visitors
ACTION_TIMEOUT_MS = 60_000
# No fake camera: the Mood page opens on its webcam view, and Chromium's fake camera streamed into every visitor's
# tab on this machine (three idle Mood tabs: 68% of a core), where a real visitor's preview runs on their own.
VISITOR_ARGS = [a for a in CHROMIUM_ARGS if "media-stream" not in a]
SCRIPT_RUNS = Path(tempfile.gettempdir()) / f"bench-script-runs-{os.getpid()}.jsonl"  # bench.serve_timed writes it
SAMPLES = 8  # per page for the CPU per interaction: the kernel counts CPU time in 10 ms ticks

# In every page: the time of the person's last event, and a wait for the first frame showing a result.
PROBE = """
window.__lt = { t0: null };
for (const type of ['pointerup', 'touchend', 'keyup', 'change']) {
  document.addEventListener(type, () => { window.__lt.t0 = performance.now(); }, true);
}
// Polled every 10 ms (not on every animation frame: twenty pages asking for frames would load the browser's
// compositor themselves); once the result is in the page, the next animation frame is the one that shows it.
window.__lt.until = (check, timeout) => new Promise((resolve) => {
  const start = performance.now();
  const poll = () => {
    if (document.querySelector('[data-testid=stException]')) return resolve({error: 'exception box'});
    if (check()) return requestAnimationFrame(() => resolve({ms: performance.now() - window.__lt.t0}));
    if (performance.now() - start > timeout) return resolve({error: 'timeout'});
    setTimeout(poll, 10);
  };
  poll();
});
window.__lt.shadow = (selector) => [...document.querySelectorAll('[data-testid=stBidiComponentIsolated]')]
  .some((h) => h.shadowRoot && h.shadowRoot.querySelector(selector));
"""
SHOWN = {
    "digits": "() => { const m = document.querySelector('[data-testid=stMetricValue]'); return m && m.textContent.trim(); }",
    "text": "() => window.__lt.shadow(`.ta[data-for=\"${window.__lt.prompt}\"]`)",
    # The reading and the photo with its boxes, loaded (a visitor who left before the photo arrived would make
    # the server drop it mid-request: a 404 that no person, who looks at the photo first, would cause).
    # Back on the page, the last visit's reading is kept, with a note: the new photo's reading replaces both.
    "mood": "() => { const caps = [...document.querySelectorAll('[data-testid=stCaptionContainer]')]"
            ".map(e => e.textContent); return caps.some(t => t.includes('face(s) found')) && "
            "!caps.some(t => t.includes('Your last photo, kept')) && "
            "[...document.querySelectorAll('[data-testid=stImage] img')].every(i => i.complete && i.naturalWidth > 0); }",
}


# ---------------------------------------------------------------- processes


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith(key))) / 1024


def parent(pid: str) -> str:
    return (Path("/proc") / pid / "stat").read_text().rsplit(")", 1)[1].split()[1]


def descends_from_us(pid: str) -> bool:
    """Started by this process (the Chromium it launched), not some other browser on the machine."""
    me = str(os.getpid())
    for _ in range(32):
        pid = parent(pid)
        if pid == me:
            return True
        if pid in ("0", "1"):
            return False
    return False


def chromium_processes():
    """/proc folders of the processes of the Chromium this bench launched."""
    for d in Path("/proc").iterdir():
        with suppress(OSError, IndexError):
            if d.name.isdigit() and "chromium" in (d / "comm").read_text() and descends_from_us(d.name):
                yield d


def chromium_cpu_seconds() -> float:
    """CPU of Chromium's processes, with the renderers that already ended (a closed visitor's tab) counted
    through their parent's children times."""
    total = 0.0
    for d in chromium_processes():
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(f) for f in fields[11:15]) / TICK  # utime, stime, cutime, cstime
        except (OSError, ValueError, IndexError):
            continue
    return total


async def keep_browsers_niced():
    """Chromium runs in a session of its own (Playwright starts it detached), and where Linux shares CPU time
    between sessions first (autogroup) their nice 19 counted only among themselves: the browsers' sessions got
    as much CPU as the server's. Each of their session groups is set to nice 19 too, as they appear."""
    while True:
        for d in chromium_processes():
            with suppress(OSError):
                if not (d / "autogroup").read_text().strip().endswith("nice 19"):
                    runs.nice_autogroup(19, d.name)
        await asyncio.sleep(0.5)


def niced_chromium() -> str:
    """A launcher that starts Debian's Chromium at the lowest CPU priority, for good: run as root, Chromium
    raises some of its threads' priority again (nice -8 for its compositor and I/O threads) unless it lacks
    CAP_SYS_NICE, so the launcher drops that capability (util-linux `setpriv`). Where `setpriv` is missing,
    Chromium is pinned to the last core instead, as before."""
    path = Path(tempfile.gettempdir()) / "chromium-nice19"
    cores = os.cpu_count() or 1
    if shutil.which("setpriv"):
        keep_nice = "setpriv --inh-caps=-sys_nice --ambient-caps=-sys_nice --bounding-set=-sys_nice "
    else:
        keep_nice = f"taskset -c {cores - 1} " if cores > 1 else ""
    path.write_text(f'#!/bin/sh\nexec {keep_nice}nice -n 19 {CHROMIUM} "$@"\n')
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


class RssPeak:
    """Polls the server's RSS in the background (VmHWM covers the whole life, this one a phase)."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._task = pid, 0.0, None

    async def _poll(self):
        while True:
            self.peak = max(self.peak, rss_mb(self.pid))
            await asyncio.sleep(0.2)

    def __enter__(self):
        self._task = asyncio.get_running_loop().create_task(self._poll())
        return self

    def __exit__(self, *exc):
        self._task.cancel()


# ---------------------------------------------------------------- a visitor


class Visitor:
    server_timing = False  # --server-timing: also time each stroke at the server (costs the browsers CPU)

    def __init__(self, browser, url: str, face: Path, counter: dict):
        self.browser, self.url, self.face, self.counter = browser, url, face, counter
        self.times: dict[str, list[float]] = {"digits": [], "text": [], "mood": []}
        self.errors: list[str] = []
        self.visits = 0
        self.later: dict[str, list[float]] = {"digits": [], "text": [], "mood": []}  # after the first visit
        self.server: list[float] = []  # each stroke's websocket round trip (--server-timing; see open)
        self.watch: dict | None = None
        self.on_ready = None  # awaited once a page is open and ready for the person's action (cpu_per_page)

    async def open(self):
        self.context = await self.browser.new_context(viewport=DESKTOP)
        await self.context.add_init_script(PROBE)
        self.page = await self.context.new_page()
        page = self.page
        page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text[:120]}"))
        page.on("pageerror", lambda e: self.errors.append(f"page error: {str(e)[:120]}"))
        # A request the page itself drops on navigating away (net::ERR_ABORTED) is not a failure.
        page.on("requestfailed", lambda r: "ERR_ABORTED" not in (r.failure or "")
                and self.errors.append(f"failed request: {r.url} {r.failure}"))
        page.on("response", lambda r: r.status >= 400 and self.errors.append(f"HTTP {r.status}: {r.url}"))
        page.on("websocket", lambda ws: ws.on("framesent", self._sent))
        if not self.server_timing:
            return
        # A stroke's websocket round trip: its message sent to the server's "script finished" received (frame events,
        # stamped by the renderer as it handles each frame, before anything is drawn).
        self.cdp = await self.context.new_cdp_session(page)
        self.cdp.on("Network.webSocketFrameSent", self._frame_sent)
        self.cdp.on("Network.webSocketFrameReceived", self._frame_received)
        await self.cdp.send("Network.enable")

    def _sent(self, _frame):
        self.counter["messages"] += 1

    def _frame_sent(self, event: dict):
        if self.watch is not None and "sent" not in self.watch:
            self.watch["sent"] = event["timestamp"]

    def _frame_received(self, event: dict):
        watch, frame = self.watch, event["response"]
        if watch is None or "sent" not in watch or "done" in watch or frame.get("opcode") != 2:
            return
        if ForwardMsg.FromString(base64.b64decode(frame["payloadData"])).WhichOneof("type") == "script_finished":
            watch["done"] = event["timestamp"]

    async def close(self):
        await self.context.close()

    async def go(self, path: str):
        """Open a page as a visitor does: by its URL the first time, then with the app's navigation (a click in
        the sidebar keeps the session and does not load the app again)."""
        page = self.page
        if page.url.startswith(self.url):
            await page.get_by_test_id("stSidebarNav").locator(f"a[href$='/{path}']").click(timeout=ACTION_TIMEOUT_MS)
            await page.wait_for_url(f"**/{path}", timeout=ACTION_TIMEOUT_MS)
        else:
            await page.goto(f"{self.url}/{path}")

    async def _state(self) -> str:
        """What the page showed when a result did not come: for the error's example, with a screenshot."""
        shot = Path(tempfile.mkdtemp(prefix="bench-load-")) / "page.png"
        await self.page.screenshot(path=str(shot), full_page=True)
        state = await self.page.evaluate("""() => ({
            running: !!document.querySelector('[data-testid=stStatusWidget]'),
            readings: document.querySelectorAll('[data-testid=stMetricValue]').length,
            alerts: [...document.querySelectorAll('[data-testid=stAlert]')].map((e) => e.innerText.slice(0, 80)),
            selected_text: String(getSelection()).length, url: location.pathname })""")
        state["canvases"] = await self.page.locator("canvas.upper-canvas").count()  # also inside components
        return f"{state}, screenshot {shot}"

    async def ready(self):
        if self.on_ready:
            await self.on_ready()

    async def idle(self):
        """Until the page's script is done: no running indicator twice in a row, 250 ms apart."""
        quiet = 0
        for _ in range(int(ACTION_TIMEOUT_MS / 250)):
            await self.page.wait_for_timeout(250)
            quiet = 0 if await self.page.get_by_test_id("stStatusWidget").count() else quiet + 1
            if quiet >= 2:
                return

    async def _result(self, action: str):
        result = await self.page.evaluate(f"window.__lt.until({SHOWN[action]}, {ACTION_TIMEOUT_MS})")
        if "error" in result:
            self.errors.append(f"{action}: {result['error']} ({await self._state()})")
        else:
            self.times[action].append(result["ms"])
            if self.visits:
                self.later[action].append(result["ms"])

    async def digits(self):
        page = self.page
        await self.go("digits")
        canvas = page.locator("canvas.upper-canvas")
        await self.settled(canvas)
        if await page.get_by_test_id("stMetricValue").count():  # the drawing of an earlier visit is kept: clear it
            await page.get_by_role("button", name="Clear").click(timeout=ACTION_TIMEOUT_MS)
            await page.get_by_test_id("stMetricValue").wait_for(state="detached", timeout=ACTION_TIMEOUT_MS)
            await self.settled(canvas)
        await self.ready()
        box = await canvas.bounding_box()
        x, y, h = box["x"] + box["width"] * 0.4, box["y"], box["height"]
        await page.mouse.move(x, y + 0.15 * h)
        await page.mouse.down()
        for i in range(1, 12):
            await page.mouse.move(x + i * 0.6, y + 0.15 * h + i * 0.065 * h)
        self.watch = {}
        await page.mouse.up()
        await self._result("digits")
        for _ in range(40):  # the reading shows before the run's last messages arrive
            if "done" in self.watch or "sent" not in self.watch:
                break
            await asyncio.sleep(0.05)
        watch, self.watch = self.watch, None
        if "done" in watch:
            self.server.append(1000 * (watch["done"] - watch["sent"]))

    async def settled(self, canvas):
        """Until the canvas is there at its final size, the page's script is done and nothing of the page
        before is left on screen, as a person sees a canvas ready to draw on (a stroke on a canvas still
        being replaced would be lost; and the last page's elements, removed late under load, take the
        scroll position with them: the canvas moves under the pen)."""
        await canvas.wait_for(timeout=ACTION_TIMEOUT_MS)
        last = None
        for _ in range(int(ACTION_TIMEOUT_MS / 250)):
            await self.page.wait_for_timeout(250)
            box = await canvas.bounding_box()
            busy = await self.page.evaluate(
                "() => !!document.querySelector('[data-testid=stStatusWidget], [data-stale=true]')")
            if box and box == last and not busy:
                return
            last = box

    async def text(self):
        page = self.page
        await self.go("text")
        box = page.locator("textarea[aria-label='Your text']")
        await box.wait_for(timeout=ACTION_TIMEOUT_MS)
        await box.click()
        if await box.input_value():  # the text of an earlier visit: select it and delete it, as a person does
            await page.keyboard.press("ControlOrMeta+a")
            await page.keyboard.press("Backspace")
        prompt = PROMPTS[next(TYPED) % len(PROMPTS)]
        await page.evaluate("(p) => { window.__lt.prompt = p; }", prompt)
        await self.ready()
        await page.keyboard.type(prompt, delay=90)
        await self._result("text")

    async def mood(self):
        page = self.page
        await self.go("mood")
        # The radio, once: back on the page it is still on Upload, and a person does not pick it again (the boxes'
        # own "Upload" buttons matched the text too, and a click on a radio left under the sticky header waited out
        # its timeout).
        if not await page.get_by_role("radio", name="Upload").is_checked(timeout=ACTION_TIMEOUT_MS):
            await page.get_by_role("radiogroup", name="Photo from").get_by_text("Upload", exact=True).click(
                timeout=ACTION_TIMEOUT_MS)
        uploader = page.get_by_test_id("stFileUploaderDropzoneInput").first
        await self.ready()
        await uploader.set_input_files(self.face, timeout=ACTION_TIMEOUT_MS)
        await self._result("mood")

    async def visit(self, loops: int, deadline: float, think_s: float = 0.0, arrive_s: float = 0.0,
                    actions=("digits", "text", "mood")):
        """`arrive_s`: the visitor arrives at a random moment of the first `arrive_s` seconds; `think_s`: the mean
        pause after each result (a person looks at it; uniform over 0.5x..1.5x)."""
        rng = np.random.default_rng(id(self) % 2**32)
        await asyncio.sleep(arrive_s * rng.uniform())
        await self.open()
        try:
            for self.visits in range(loops):
                for action in actions:
                    if time.monotonic() > deadline:
                        return
                    try:
                        await getattr(self, action)()
                        if think_s:
                            await self.page.wait_for_timeout(1000 * think_s * rng.uniform(0.5, 1.5))
                    except Exception as exc:  # a timeout or a crash of the page: counted, the loop goes on
                        try:  # what the page showed then, with a screenshot (the Mood radio's timeouts: not known why)
                            state = await self._state()
                        except Exception as why:  # the page itself gone
                            state = f"no state: {type(why).__name__}"
                        self.errors.append(f"{action}: {type(exc).__name__}: {str(exc).splitlines()[0][:120]} ({state})")
        finally:
            await self.close()


# ---------------------------------------------------------------- phases


def stats(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    a = np.asarray(values)
    return {"n": len(a), "p50_ms": round(float(np.median(a)), 1), "p95_ms": round(float(np.percentile(a, 95)), 1),
            "max_ms": round(float(a.max()), 1)}


async def run_visitors(browser, url, pid, face, k: int, loops: int, budget_s: float, think_s: float = 0.0,
                       arrive_s: float = 0.0) -> dict:
    counter = {"messages": 0}
    visitors = [Visitor(browser, url, face, counter) for _ in range(k)]
    cpu0, browsers0, t0, since = cpu_seconds(pid), chromium_cpu_seconds(), time.monotonic(), time.time()
    with RssPeak(pid) as rss:
        await asyncio.gather(*(v.visit(loops, t0 + budget_s, think_s, arrive_s) for v in visitors))
    wall = time.monotonic() - t0
    server_cpu, browsers_cpu = cpu_seconds(pid) - cpu0, chromium_cpu_seconds() - browsers0
    errors = [e for v in visitors for e in v.errors]
    cores = os.cpu_count() or 1
    per_msg = 1000 * server_cpu / max(counter["messages"], 1)
    done = sum(len(v.times[a]) for v in visitors for a in v.times)  # actions with a result shown
    return {
        "visitors": k, "think_s": think_s, "arrive_s": arrive_s, "wall_s": round(wall, 1),
        "actions": {a: stats([t for v in visitors for t in v.times[a]]) for a in ("digits", "text", "mood")},
        # The same once every visitor has opened the app (their second and later visits).
        "actions_after_first_visit": {a: stats([t for v in visitors for t in v.later[a]])
                                      for a in ("digits", "text", "mood")},
        # The server's part: each script run's time there (fragments: a stroke, keys typed; pages: a photo, a page
        # opened), from bench.serve_timed. What the in-page times add to it is the browsers' and the network's.
        "script_runs_at_server": script_runs(since),
        # A stroke's websocket round trip (--server-timing only; see open).
        "digits_server_round_trip": stats([t for v in visitors for t in v.server]),
        "errors": len(errors), "error_examples": sorted(set(errors))[:5],
        "server_rss_peak_mb": round(rss.peak, 1),
        "server_cpu_ms_per_message": round(per_msg, 1), "messages": counter["messages"],
        "server_cpu_share_of_machine": round(server_cpu / wall / cores, 3),
        "browsers_cpu_share_of_machine": round(browsers_cpu / wall / cores, 3),
        # Per action shown, page changes and typing included: what each side needs, whoever it shares a machine with.
        "actions_done": done, "server_cpu_ms_per_action": round(1000 * server_cpu / max(done, 1)),
        "browsers_cpu_ms_per_action": round(1000 * browsers_cpu / max(done, 1)),
        # The server alone: how many such visitors one core serves, at this pace of interaction.
        "visitors_per_server_core": round(k / max(server_cpu / wall, 1e-9), 1),
    }


def script_runs(since: float) -> dict:
    """Wall and CPU time of the script runs that ended after `since`, fragments and whole pages apart."""
    with suppress(OSError):
        rows = [json.loads(line) for line in SCRIPT_RUNS.read_text(encoding="utf-8").splitlines()]
        rows = [r for r in rows if r["t"] >= since]
        return {kind: {**stats([r["ms"] for r in rows if r["fragment"] == frag]),
                       "cpu": stats([r["cpu_ms"] for r in rows if r["fragment"] == frag])}
                for kind, frag in (("fragment", True), ("page", False))}
    return {}


def per_message(samples: list[tuple[float, int, float, float]], background: float = 0.0) -> dict:
    """(server CPU s, messages, browser CPU s, wall s) samples -> server CPU ms per message (over all samples, and
    the median sample), and the browser's CPU ms for the whole of one sample (median): the other side of the same
    work. `background`: the server's own CPU with no tab open, as a share of one core; "net" figures take out what
    it spent over each sample's time (a sample lasts a second or more, for one to three messages)."""
    cpu, msgs = sum(c for c, *_ in samples), sum(m for _, m, *_ in samples)
    net = [(max(c - background * w, 0.0), m) for c, m, _, w in samples]
    return {"server_cpu_ms_per_message": round(1000 * cpu / max(msgs, 1), 1), "messages": msgs,
            "median_sample_ms_per_message": round(float(np.median([1000 * c / max(m, 1) for c, m, *_ in samples])), 1),
            "net_server_cpu_ms_per_message": round(1000 * sum(c for c, _ in net) / max(msgs, 1), 1),
            "server_cpu_ms": round(float(np.median([1000 * c for c, *_ in samples]))),
            "browser_cpu_ms": round(float(np.median([1000 * b for _, _, b, _ in samples])))}


async def cpu_per_page(browser, url, pid, face) -> dict:
    """Server CPU per interaction (one websocket message) of each page alone, one visitor, warm: the page's
    own action (the stroke, the suggestions for the typed text, the photo) apart from opening the page by
    its URL (a new session and a full run of the app), and both together."""
    counter = {"messages": 0}
    out, samples = {}, {}

    def now():
        return cpu_seconds(pid), counter["messages"], chromium_cpu_seconds(), time.monotonic()

    for action in ("digits", "text", "mood"):
        visitor = Visitor(browser, url, face, counter)
        await visitor.open()
        await getattr(visitor, action)()  # warm: model loaded, kernels built
        opening, acting = [], []
        for _ in range(SAMPLES):
            marks = []

            async def mark(v=visitor, found=marks):
                await v.idle()
                found.append(now())

            visitor.on_ready = mark
            await visitor.page.goto("about:blank")
            start = now()
            await getattr(visitor, action)()
            await visitor.page.wait_for_timeout(500)
            await visitor.idle()
            end = now()
            opening.append(tuple(m - s for m, s in zip(marks[0], start)))
            acting.append(tuple(e - m for e, m in zip(end, marks[0])))
        await visitor.close()
        samples[action] = (acting, opening, [tuple(x + y for x, y in zip(o, a)) for o, a in zip(opening, acting)])
    # The server's own background with no tab open (its event loop, its config-file pollers, session and cache
    # housekeeping), which the Training tab's figure below charges to the tab's six ticks: measured over the same
    # time before and after it, and taken out. It is most of that figure, and it moves between runs.
    async def no_tab_share():
        await asyncio.sleep(5)
        c0, t0 = cpu_seconds(pid), time.monotonic()
        await asyncio.sleep(60)
        return (cpu_seconds(pid) - c0) / (time.monotonic() - t0)

    before = await no_tab_share()
    # An open Training tab that nobody touches: its polling fragment ticks.
    visitor = Visitor(browser, url, face, counter)
    await visitor.open()
    await visitor.page.goto(f"{url}/training")
    await visitor.page.wait_for_timeout(5000)
    m0, c0, t0, since = counter["messages"], cpu_seconds(pid), time.monotonic(), time.time()
    await visitor.page.wait_for_timeout(60_000)  # six polling ticks
    cpu, msgs, wall = cpu_seconds(pid) - c0, counter["messages"] - m0, time.monotonic() - t0
    ticks = script_runs(since).get("fragment", {})  # each tick's own run at the server: its thread's CPU, exact
    await visitor.close()
    idle_share = (before + await no_tab_share()) / 2
    for action, (acting, opening, both) in samples.items():
        out[action] = per_message(acting, idle_share) | {"opening_the_page": per_message(opening, idle_share),
                                                         "with_opening": per_message(both, idle_share)}
    out["training_idle_tab"] = {"server_cpu_ms_per_message": round(1000 * cpu / max(msgs, 1), 1), "messages": msgs,
                                "share_of_one_core": round(cpu / wall, 4),
                                "no_tab_share_of_one_core": round(idle_share, 4),
                                "net_server_cpu_ms_per_message": round(1000 * max(cpu - idle_share * wall, 0)
                                                                       / max(msgs, 1), 1),
                                "tick_script_run": ticks}
    return out


async def sessions_memory(browser, url, pid, n: int) -> dict:
    """Open and close n sessions (10 at a time) and compare the server's RSS before and after."""
    async def one():
        context = await browser.new_context(viewport=DESKTOP)
        page = await context.new_page()
        await page.goto(f"{url}/digits")
        await page.locator("canvas.upper-canvas").wait_for(timeout=ACTION_TIMEOUT_MS)
        await context.close()

    await one()
    await asyncio.sleep(2)
    before = rss_mb(pid)
    failures = 0
    for i in range(0, n, 10):
        results = await asyncio.gather(*(one() for _ in range(min(10, n - i))), return_exceptions=True)
        failures += sum(isinstance(r, Exception) for r in results)
    await asyncio.sleep(5)  # sessions are dropped once their websocket closes
    after = rss_mb(pid)
    return {"sessions": n, "failures": failures, "rss_before_mb": round(before, 1), "rss_after_mb": round(after, 1),
            "growth": round(after / before - 1, 3)}


def start_training_job(data_dir) -> object:
    """A digits training run long enough to overlap the load (the run store's normal launch path)."""
    from pipelines import runs

    args = ["--epochs", "30", "--promote", "never"] + (["--data-dir", str(data_dir)] if data_dir else [])
    return runs.launch("digits", args)


async def main_async(args) -> dict:
    import cv2
    import matplotlib.cbook
    from playwright.async_api import async_playwright

    face = Path(tempfile.gettempdir()) / "bench-face.jpg"
    cv2.imwrite(str(face), cv2.imread(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    results = {"chromium": "one Chromium at nice 19 (kept there: CAP_SYS_NICE dropped; its session groups at nice 19 "
                           "too), a context per visitor, no camera (the Mood page's webcam view waits for one; visitors upload)",
               "server": "streamlit run app.py, settings from .streamlit/config.toml (as make run), through "
                         "bench.serve_timed (the time of each script run at the server)",
               "visitor": f"opens /digits by its URL, then changes pages with the app's navigation; arrives within the "
                          f"first {args.arrive:g} s, looks at each result {args.think:g} s on average; {args.loops} visits "
                          "(digits, text, mood)"}
    runs_tmp = tempfile.mkdtemp(prefix="bench-runs-")
    with streamlit_server({"RUNS_DIR": runs_tmp}, launcher=("bench.serve_timed", str(SCRIPT_RUNS))) as url:
        pid = streamlit_server.proc.pid
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=niced_chromium(), headless=True, args=VISITOR_ARGS)
            niced = asyncio.get_running_loop().create_task(keep_browsers_niced())
            print("== warm-up and CPU per page", flush=True)
            results["per_page"] = await cpu_per_page(browser, url, pid, face)
            print(json.dumps(results["per_page"]), flush=True)
            results["visitors"] = []
            for k in args.visitors:
                print(f"== {k} visitors", flush=True)
                row = await run_visitors(browser, url, pid, face, k, args.loops, args.budget, args.think, args.arrive)
                print(json.dumps(row), flush=True)
                results["visitors"].append(row)
            if args.stress:
                k = max(args.visitors)
                print(f"== stress: {k} visitors arriving at once, no pause", flush=True)
                results["stress"] = await run_visitors(browser, url, pid, face, k, args.loops, args.budget)
                print(json.dumps(results["stress"]), flush=True)
            if args.with_job:
                print("== 5 visitors with a training job running", flush=True)
                os.environ["RUNS_DIR"] = runs_tmp
                run = start_training_job(core.data_dir(args.data_dir))
                await asyncio.sleep(15)  # past data loading, into the epochs
                row = await run_visitors(browser, url, pid, face, 5, args.loops, args.budget, args.think, args.arrive)
                row["job_state_during"] = run.status().get("state")
                run.request_stop()
                runs.kill(run)
                print(json.dumps(row), flush=True)
                results["with_training_job"] = row
            if args.sessions:
                print(f"== {args.sessions} sessions opened and closed", flush=True)
                results["sessions_memory"] = await sessions_memory(browser, url, pid, args.sessions)
                print(json.dumps(results["sessions_memory"]), flush=True)
            niced.cancel()
            await browser.close()
    SCRIPT_RUNS.unlink(missing_ok=True)  # read by each phase above; nothing to keep once they are written
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n")[0])
    parser.add_argument("--visitors", default="1,5,10,20", type=lambda s: [int(k) for k in s.split(",")])
    parser.add_argument("--loops", type=int, default=5, help="visits (digits, text, mood) per visitor")
    parser.add_argument("--think", type=float, default=3.0, help="mean seconds a visitor looks at each result")
    parser.add_argument("--arrive", type=float, default=10.0, help="visitors arrive within these first seconds")
    parser.add_argument("--stress", action=argparse.BooleanOptionalAction, default=True,
                        help="also the most visitors arriving at once with no pause")
    parser.add_argument("--budget", type=float, default=240, help="seconds at most per load level")
    parser.add_argument("--with-job", action="store_true", help="also run the load beside a training job")
    parser.add_argument("--sessions", type=int, default=200, help="sessions opened and closed for the memory check")
    parser.add_argument("--data-dir", help="training data for --with-job (default: $DATA_DIR)")
    parser.add_argument("--no-save", action="store_true", help="print only; leave the results file alone")
    parser.add_argument("--server-timing", action="store_true",
                        help="also time each stroke at the server, from the browsers' network events (a diagnostic: "
                             "it costs the browsers CPU, so the in-page times are not the headline ones)")
    args = parser.parse_args(argv)
    Visitor.server_timing = args.server_timing
    results = asyncio.run(main_async(args))
    if args.no_save:
        print(json.dumps(results, indent=1))
        return
    from bench import run as bench_run

    path = bench_run.RESULTS / "results.json"
    saved = bench_run.read_results()
    if args.server_timing:  # a diagnostic run: kept beside the headline one, never in its place
        saved["load_server_timing"] = {**results, "machine": bench_run.machine()}
        core.write_json(path, saved)
        return
    saved["load"] = {**results, "machine": bench_run.machine()}
    saved.setdefault("machine", bench_run.machine())
    core.write_json(path, saved)
    table = bench_run.markdown(saved)
    (bench_run.RESULTS / "results.md").write_text(table, encoding="utf-8")
    bench_run.quote_in_readme(table)
    print(table)


if __name__ == "__main__":
    main()
