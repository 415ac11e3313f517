"""End to end in a real Chromium with the real llama-server: chat with an instance of the bundled
model in the playground, see the answer stream in, and its tokens counted on the activity page.

Environment (from tests/e2e_dashboard.rs): LLAMACTL_URL, LLAMACTL_KEY (a management key),
INSTANCE (a running instance of the model). CHROMIUM, SCREENSHOTS.
"""

import os

from dashboard import URL, browser_page, shot, sign_in
from playwright.sync_api import expect

KEY = os.environ["LLAMACTL_KEY"]
NAME = os.environ["INSTANCE"]


def main():
    with browser_page() as page:
        sign_in(page, KEY)
        page.goto(f"{URL}/instances/{NAME}")
        page.get_by_label("Message").fill("Say hello in one word.")
        page.get_by_role("button", name="Send").click()
        try:
            expect(page.locator("#chat-state")).to_have_text("Done.", timeout=120000)
        finally:
            shot(page, "e2e-playground")
            print("reply so far:", page.locator("#chat-answer").inner_text())
        reply = page.locator("#chat-answer .reply").first.inner_text().strip()
        assert reply, "no answer"
        shot(page, "e2e-playground")

        page.get_by_role("link", name="Activity").click()
        row = page.locator("#usage-instance tbody tr", has_text=NAME)
        expect(row.locator("td").nth(0)).to_have_text("1")
        tokens = int(row.locator("td").nth(4).inner_text().split()[-1])
        assert tokens > 0, tokens
        shot(page, "e2e-activity")
        print({"reply": reply, "tokens": tokens})


if __name__ == "__main__":
    main()
