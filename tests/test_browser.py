"""The detection explorer in a real browser: Voilà serves notebook 05 (two models, its
defaults), headless Chromium picks a row of the ranking table, whose video must open with both
models' APs as the table gives them, then moves a slider and the marker line must change.

The notebook is served from a temporary copy (its ``../figures`` is a temporary folder too),
in quick mode, on 127.0.0.1 and a free port; the server is always stopped. A screenshot is
saved to ``test-artifacts/explorer_two_models.png`` (ignored by git). Skipped only when
Debian's ``/usr/bin/chromium`` is missing (``apt-get install -y chromium``; CI installs it).
A failure shows the end of the server log with the Python stacks of the server and its
kernel (where they were stuck) and the page's console warnings and errors.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from _servers import dump_stacks, free_port, stop_session

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "05_detection_explorer.ipynb"
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts"
# The two-model marker line (ecmlib.views.explorer.pair_marker_line), written out here so the
# test does not import the package it checks.
MARKER = re.compile(r"video=\S+ class=.+? \| \S+ AP@0\.5=\S+ mAP@0\.5=\S+ detections=\d+"
                    r" \| \S+ AP@0\.5=\S+ mAP@0\.5=\S+ detections=\d+")
FIELDS = re.compile(r"video=(\S+) class=(.+?) \| (\S+) AP@0\.5=(\S+) mAP@0\.5=\S+ detections=\d+"
                    r" \| (\S+) AP@0\.5=(\S+) mAP@0\.5=")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SERVER_START_S = 60
# The first render (kernel start, 60 synthetic videos, two inference passes, ranking, first
# redraw) takes 20 s on an idle machine and minutes on a loaded one: the wait goes on while
# the page or the server log still grows, and gives up after STALL_S without progress.
STALL_S = 120
RENDER_MAX_S = 900
REDRAW_S = 60

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.is_file(),
                       reason=f"{CHROMIUM} not installed (apt-get install -y chromium)"),
]


def _wait_for_port(port: int, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"voila exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"voila did not listen on port {port} within {timeout} s:\n"
                         f"{log.read_text()[-3000:]}")


def _wait_for_marker(page, timeout: float, differs_from: str | None = None,
                     settle: float = 0.0, log: Path | None = None,
                     stall: float | None = None) -> str:
    """The last marker line on the page, once there is one different from ``differs_from``
    and it has not changed for ``settle`` seconds (queued redraws have finished).

    With ``stall``, the wait lasts as long as the page text or the server ``log`` keeps
    growing, up to ``timeout``, and fails after ``stall`` seconds without either."""
    start = time.monotonic()
    last, since = None, start
    progress, progressed = None, start
    while time.monotonic() - start < timeout:
        text = page.inner_text("body")
        found = MARKER.findall(text)
        current = found[-1] if found else None
        if current != last:
            last, since = current, time.monotonic()
        if current is not None and current != differs_from and time.monotonic() - since >= settle:
            return current
        now = (len(text), log.stat().st_size if log else 0)
        if now != progress:
            progress, progressed = now, time.monotonic()
        if stall is not None and time.monotonic() - progressed > stall:
            break
        page.wait_for_timeout(250)
    waited = time.monotonic() - start
    raise AssertionError(f"no {'new ' if differs_from else ''}marker line after {waited:.0f} s "
                         f"(page and server log unchanged for {time.monotonic() - progressed:.0f} s); "
                         f"page text ends with: {page.inner_text('body')[-1500:]!r}")


@pytest.fixture
def voila_url():
    """Serve a temporary copy of notebook 05 with Voilà; yield (URL, server log, server
    process); always stop the server."""
    with tempfile.TemporaryDirectory(prefix="voila-05-") as tmp:
        nb_dir = Path(tmp) / "notebooks"
        nb_dir.mkdir()
        (Path(tmp) / "figures").mkdir()  # the notebook's ../figures
        shutil.copy2(NOTEBOOK, nb_dir / NOTEBOOK.name)
        port = free_port()
        env = {**os.environ, "WORKBOOK_QUICK": "1", "TQDM_DISABLE": "1",
               "PYTHONFAULTHANDLER": "1"}  # stacks on SIGABRT: tests/_servers.dump_stacks
        env.pop("MPLBACKEND", None)  # the notebook selects the inline backend itself
        log = Path(tmp) / "voila.log"
        cmd = [sys.executable, "-m", "voila", "--no-browser", f"--port={port}",
               "--Voila.ip=127.0.0.1", "--show_tracebacks=True", NOTEBOOK.name]
        with log.open("w") as fh:
            proc = subprocess.Popen(cmd, cwd=nb_dir, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        try:
            _wait_for_port(port, proc, log, SERVER_START_S)
            yield f"http://127.0.0.1:{port}/", log, proc
        finally:
            stop_session(proc)  # the server and its kernel share the new session


def _fields(marker: str) -> dict:
    video, klass, label_a, ap_a, label_b, ap_b = FIELDS.match(marker).groups()
    return {"video": video, "class": klass, "labels": (label_a, label_b),
            "aps": tuple(float("nan") if x == "n/a" else float(x) for x in (ap_a, ap_b))}


def _row(text: str) -> dict:
    """A ranking row: rank, video, classes (may hold spaces and commas), AP a, AP b, a − b."""
    tokens = text.split()
    return {"video": tokens[1], "classes": " ".join(tokens[2:-3]),
            "aps": (float(tokens[-3]), float(tokens[-2])), "difference": float(tokens[-1])}


def test_two_model_explorer_in_a_browser(voila_url, tmp_path):
    url, log, server = voila_url
    console: list[str] = []  # the page's warnings and errors
    try:
        first, picked, row, moved, shot = _drive(url, tmp_path, log, console)
    except Exception as err:  # assertion or Playwright timeout: show what server and page said
        dump_stacks(server)  # where the server and its kernel are stuck, into the log
        raise AssertionError(f"{type(err).__name__}: {err}\n--- voila log (end) ---\n"
                             f"{log.read_text()[-20000:]}\n--- browser console (warnings and "
                             f"errors, last 20) ---\n" + "\n".join(console[-20:])) from None
    print(f"\nopened:        {first}\nrow picked:    {row}\nafter pick:    {picked}"
          f"\nslider moved:  {moved}\nscreenshot: {shot.relative_to(REPO)}")
    a, b, c = _fields(first), _fields(picked), _fields(moved)
    assert a["labels"] == b["labels"] == ("ECM", "pre-only")
    # the row's video opened, with both models' APs as the ranking table gives them
    assert b["video"] == row["video"] != a["video"]
    assert b["class"].startswith(row["classes"].rstrip("…"))  # long names are cut with …
    assert all(abs(x - y) < 5e-4 for x, y in zip(b["aps"], row["aps"])), (b, row)
    # the slider redraws the same video and class for both models
    assert (c["video"], c["class"]) == (b["video"], b["class"]) and moved != picked
    assert shot.is_file() and shot.stat().st_size > 10_000


def _drive(url: str, tmp_path: Path, log: Path,
           console: list[str]) -> tuple[str, str, dict, str, Path]:
    """Open the page, wait for the first marker, pick the last single-class row of the ranking
    and wait for its marker, move a slider and wait for the new marker, take a screenshot.
    The page's console warnings and errors are appended to ``console`` as they come."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "explorer_two_models.png"
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1300, "height": 1100})
        try:
            page = browser.new_page()
            page.on("console", lambda m: console.append(f"{m.type}: {m.text[:300]}")
                    if m.type in ("warning", "error") else None)
            # Voilà streams the page while the kernel runs the notebook; the marker comes
            # before the page has finished loading (the static figures are still running).
            page.goto(url, timeout=STALL_S * 1000, wait_until="commit")
            first = _wait_for_marker(page, RENDER_MAX_S, log=log, stall=STALL_S)
            ranking = page.locator(".ecm-ranking select")
            options = ranking.locator("option").all_inner_texts()
            assert len(options) >= 2, f"expected a ranking of the test videos, found {options}"
            top = _row(options[0])
            assert top["video"] == _fields(first)["video"], "the explorer opens on the top row"
            diffs = [_row(o)["difference"] for o in options]
            assert diffs == sorted(diffs, reverse=True), "rows are ranked by AP difference"
            # The last single-class row: the video where pre-only gains most (its marker's AP
            # of the class is then the video's AP in the table).
            k = max(i for i, o in enumerate(options) if "," not in _row(o)["classes"])
            row = _row(options[k])
            ranking.select_option(index=k)
            picked = _wait_for_marker(page, REDRAW_S, differs_from=first, settle=3.0)

            handles = page.locator(".widget-slider .noUi-handle")
            assert handles.count() == 5, f"expected the explorer's 5 sliders, found {handles.count()}"
            # The second slider is the lowest activation threshold: raising it by a few steps
            # changes which runs become proposals, so the detections (and APs) change.
            start = float(handles.nth(1).get_attribute("aria-valuetext"))
            handles.nth(1).focus()
            for _ in range(5):
                page.keyboard.press("ArrowRight")
            # Each key press is one redraw; the settled marker is the last press's.
            moved = _wait_for_marker(page, REDRAW_S, differs_from=picked, settle=3.0)
            step = float(handles.nth(1).get_attribute("aria-valuetext")) - start
            assert abs(step - 0.05) < 1e-6, f"the slider moved by {step}, not five steps of 0.01"
            explorer_box = page.locator(".widget-vbox").first
            explorer_box.locator(".widget-output img").first.wait_for(timeout=REDRAW_S * 1000)
            explorer_box.screenshot(path=str(shot))
        finally:
            browser.close()
    return first, picked, row, moved, shot
