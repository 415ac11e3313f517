"""What every browser script shares: the environment tests/browser.rs passes, a Chromium page
that records console and page errors, signing in, and the checks every page gets (no sideways
scrolling at phone width)."""

import os
import sys
from contextlib import contextmanager

from playwright.sync_api import expect, sync_playwright

URL = os.environ["LLAMACTL_URL"]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SHOTS = os.environ["SCREENSHOTS"]


@contextmanager
def browser_page():
    """A fresh browser context's page; on leaving, exits non-zero on any console or page error."""
    os.makedirs(SHOTS, exist_ok=True)
    problems = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = another_page(browser, problems)
        yield page
        browser.close()
    if problems:
        sys.exit("console errors:\n" + "\n".join(problems))


def another_page(browser, problems):
    """A page in a new context (its own cookies: another person), recording errors in `problems`."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=URL)
    page = context.new_page()
    page.set_default_timeout(15000)
    page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.problems = problems
    return page


def sign_in(page, key):
    page.goto(f"{URL}/sign-in")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{URL}/")


def shot(page, name):
    page.screenshot(path=f"{SHOTS}/{name}.png", full_page=True)


def fits_phone(page, name):
    """Screenshot at phone width; fails if the page scrolls sideways."""
    size = page.viewport_size
    page.set_viewport_size({"width": 375, "height": 740})
    shot(page, f"{name}-phone")
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 375, f"{name} scrolls sideways at phone width ({width}px)"
    page.set_viewport_size(size)


def tab_to(page, label, limit=60):
    """Presses Tab until the element labelled `label` has focus: it is keyboard reachable."""
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    for _ in range(limit):
        page.keyboard.press("Tab")
        focused = page.evaluate(
            "() => { const e = document.activeElement; return e ? (e.getAttribute('aria-label') || e.textContent.trim()) : '' }"
        )
        if focused == label:
            return
    raise AssertionError(f"'{label}' not reached with Tab")
