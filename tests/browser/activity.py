"""The activity and usage page in a real Chromium: the requests sent before show in the recent
list with their key, instance, status and tokens, and in the sums per key, instance and day.

Environment (from tests/browser.rs): LLAMACTL_URL, LLAMACTL_KEY (a management key), INSTANCE (the
instance that answered REQUESTS chat completions made with the configured inference key, each
reporting PROMPT prompt and 1 completion tokens). CHROMIUM, SCREENSHOTS.
"""

import os

from dashboard import URL, browser_page, fits_phone, shot, sign_in
from playwright.sync_api import expect

KEY = os.environ["LLAMACTL_KEY"]
NAME = os.environ["INSTANCE"]
REQUESTS = int(os.environ["REQUESTS"])
PROMPT = int(os.environ["PROMPT"])


def main():
    with browser_page() as page:
        sign_in(page, KEY)
        page.get_by_role("link", name="Activity").click()
        expect(page).to_have_url(f"{URL}/activity")
        recent = page.locator("#recent tbody tr")
        expect(recent).to_have_count(REQUESTS)
        expect(recent.first).to_contain_text(NAME)
        expect(recent.first).to_contain_text("200")
        expect(recent.first).to_contain_text("config-inference-key")

        tokens = REQUESTS * (PROMPT + 1)
        row = page.locator("#usage-instance tbody tr", has_text=NAME)
        expect(row.locator("td").nth(0)).to_have_text(str(REQUESTS))
        expect(row.locator("td").nth(4)).to_contain_text(str(tokens))
        expect(page.locator("#usage-key tbody tr", has_text="config-inference-key")).to_contain_text(str(tokens))
        expect(page.locator("#usage-day tbody tr")).to_have_count(1)

        # Another range: chosen with the form, kept in the address.
        page.get_by_label("Range").select_option("7d")
        page.get_by_role("button", name="Show").click()
        expect(page).to_have_url(f"{URL}/activity?range=7d")
        expect(recent).to_have_count(REQUESTS)
        shot(page, "activity")

        # The instances table counts the same tokens for today.
        page.get_by_role("link", name="Instances").click()
        cell = page.locator(f"#instance-{NAME} td[data-label='Tokens today']")
        expect(cell).to_have_text(str(tokens))
        page.go_back()
        fits_phone(page, "activity")


if __name__ == "__main__":
    main()
