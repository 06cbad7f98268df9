"""Debian's headless Chromium driven by selenium through Debian's chromium-driver (never a downloaded browser).

``chromium_driver(downloads, language=..., tz=...)`` starts a fresh browser profile in a temporary directory,
with downloads saved to ``downloads`` and the browser's language and time zone set as a worker's would be.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def require_chromium() -> None:
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.path.exists(path):
            pytest.skip(f"{path} is missing: apt-get install {package} (.ci/run installs it)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("selenium is not installed: pip install -e '.[dev]'")


@contextmanager
def chromium_driver(downloads: Path, *, language: str = "ja", tz: str = "Asia/Tokyo") -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    require_chromium()
    profile = tempfile.mkdtemp(prefix="mamori-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",  # as root in CI
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        f"--lang={language}",
        "--window-size=1280,1000",
    ):
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs",
        {
            "intl.accept_languages": language,
            "download.default_directory": str(downloads),
            "download.prompt_for_download": False,
        },
    )
    service = Service(executable_path=CHROMEDRIVER, env={**os.environ, "TZ": tz})
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.execute_cdp_cmd(
            "Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
        )
        driver.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": tz})
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for_file(directory: Path, pattern: str, timeout: float = 15.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = [p for p in directory.glob(pattern) if not p.name.endswith(".crdownload")]
        if done:
            return done[0]
        time.sleep(0.1)
    raise AssertionError(f"no {pattern} downloaded to {directory} within {timeout:g} s")


# How many lines each occurrence of ``word`` in the page's text is drawn on (1 = never split by a line break).
SPLIT_WORDS_JS = """
const word = arguments[0];
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
const found = [];
while (walker.nextNode()) {
  const node = walker.currentNode;
  let at = node.data.indexOf(word);
  while (at >= 0) {
    const range = document.createRange();
    range.setStart(node, at);
    range.setEnd(node, at + word.length);
    const tops = new Set(Array.from(range.getClientRects()).filter(r => r.width > 0).map(r => Math.round(r.top)));
    if (tops.size > 0) { found.push(tops.size); }
    at = node.data.indexOf(word, at + 1);
  }
}
return found;
"""
