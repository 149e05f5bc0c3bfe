"""Debian's Chromium driven by Playwright (never `playwright install`: no browser is downloaded)."""
from __future__ import annotations

import os
import pathlib

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
# screenshots of each page, for a look and for the README (git-ignored)
SCREENS = pathlib.Path(__file__).resolve().parents[2] / "bench" / "screens"


def missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not os.path.exists(CHROMIUM):
        return f"{CHROMIUM} is absent (apt-get install chromium chromium-driver; .ci/run does)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is absent (pip install -e '.[test]')"
    return None


def launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)


def sign_in(page, base: str, token: str, ready: str = "queue") -> None:
    page.goto(base + "/console/")
    page.fill("#token", token)
    page.click("#signin button[type=submit]")
    page.wait_for_selector(f"body[data-ready={ready}]")


def go(page, hash_: str, ready: str) -> None:
    page.evaluate("h => { document.body.dataset.ready = ''; location.hash = h; }", hash_)
    page.wait_for_selector(f"body[data-ready={ready}]")


def shot(page, name: str) -> pathlib.Path:
    SCREENS.mkdir(parents=True, exist_ok=True)
    path = SCREENS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
