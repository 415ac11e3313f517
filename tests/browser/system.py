"""The system page in a real Chromium: llamactl's version, the backend's version and devices,
running against the limit, and each backend's memory.

Environment (from tests/browser.rs): LLAMACTL_URL, LLAMACTL_KEY (a management key), INSTANCE (a
running instance of the stand-in backend; the server allows 3 running). CHROMIUM, SCREENSHOTS.
"""

import os
import re

from dashboard import URL, browser_page, fits_phone, shot, sign_in
from playwright.sync_api import expect

KEY = os.environ["LLAMACTL_KEY"]
NAME = os.environ["INSTANCE"]


def main():
    with browser_page() as page:
        sign_in(page, KEY)
        page.get_by_role("link", name="System").click()
        expect(page).to_have_url(f"{URL}/system")
        expect(page.locator("#version")).to_contain_text(re.compile(r"^\d+\.\d+\.\d+"))
        expect(page.locator("#running")).to_have_text("1 of 3")
        expect(page.locator("#backend-version")).to_contain_text("version: 0 (fake)")
        expect(page.locator("#devices")).to_contain_text("none: fake backend")
        expect(page.locator("#own-memory")).to_contain_text("MiB")
        expect(page.locator("#processes")).to_contain_text(NAME)
        expect(page.locator("#processes")).to_contain_text("MiB")
        shot(page, "system")
        fits_phone(page, "system")


if __name__ == "__main__":
    main()
