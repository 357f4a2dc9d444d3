"""Headless Chromium for the tests that look at a page as a person would (Debian's `chromium`,
installed by `make browser-deps`): a screenshot of it and its DOM after the scripts ran."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import List, Tuple

TIMEOUT_SECONDS = 120
WINDOW = (1280, 2400)
# No first-run UI, no background fetches (updates, sync, component downloads): the page alone.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", f"--window-size={WINDOW[0]},{WINDOW[1]}")
# Lets the page's load event and its scripts run before the DOM is dumped or the shot taken.
VIRTUAL_TIME_BUDGET_MS = 5000


def chromium() -> str:
    """The chromium binary; an assertion naming `make browser-deps` when there is none."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "no chromium on PATH: `make browser-deps` installs Debian's chromium"
    return found


def _run(url: str, extra: List[str]) -> str:
    """Chromium's stdout for `url` with a fresh profile (nothing carried between runs)."""
    with tempfile.TemporaryDirectory(prefix="funnel-chromium-") as profile:
        command = [chromium(), *FLAGS, f"--user-data-dir={profile}",
                   f"--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}", *extra, url]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired as e:
            raise AssertionError(f"chromium took over {TIMEOUT_SECONDS} s on {url}; stderr:\n{e.stderr}") from e
    assert done.returncode == 0, f"chromium exited {done.returncode} on {url}; stderr:\n{done.stderr}"
    return done.stdout


def render(html_path: str, out_dir: str) -> Tuple[str, str]:
    """(the DOM after the page loaded, the path of a WINDOW-sized PNG screenshot in `out_dir`)."""
    url = Path(os.path.abspath(html_path)).as_uri()
    screenshot = os.path.join(out_dir, "screenshot.png")
    _run(url, [f"--screenshot={screenshot}"])
    assert os.path.exists(screenshot), f"chromium wrote no screenshot of {url}"
    dom = _run(url, ["--dump-dom"])
    assert "<body" in dom, f"chromium dumped no DOM of {url}:\n{dom[:2000]}"
    return dom, screenshot
