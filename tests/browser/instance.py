"""One instance's page in a real Chromium: its live row, the command line, the definition, the
history, the playground, the live log followed as it is written, paused and searched, and the edit
form.

Environment (from tests/browser.rs): LLAMACTL_URL, LLAMACTL_KEY (a management key),
LLAMACTL_ADMIN_KEY (to restart the instance through the API while the page watches), INSTANCE (a
running instance of the stand-in backend), CHROMIUM, SCREENSHOTS.
"""

import os
import re
import urllib.request

from dashboard import URL, browser_page, fits_phone, shot, sign_in
from playwright.sync_api import expect

KEY = os.environ["LLAMACTL_KEY"]
ADMIN_KEY = os.environ["LLAMACTL_ADMIN_KEY"]
NAME = os.environ["INSTANCE"]
STARTING = f"=== llamactl: starting '{NAME}'"


def restart():
    req = urllib.request.Request(
        f"{URL}/api/v1/instances/{NAME}/restart",
        method="POST",
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )
    with urllib.request.urlopen(req) as resp:
        assert resp.status == 200, resp.status


def wait_runs(page, n):
    """Waits until the log shows `n` runs' first lines."""
    page.wait_for_function(
        "([s, n]) => document.getElementById('log').textContent.split(s).length - 1 === n",
        arg=[STARTING, n],
        timeout=20000,
    )


def main():
    with browser_page() as page:
        sign_in(page, KEY)
        page.get_by_role("link", name=NAME, exact=True).click()
        expect(page).to_have_url(f"{URL}/instances/{NAME}")
        expect(page.get_by_role("heading", name=NAME, exact=True)).to_be_visible()
        row = page.locator(f"#instance-{NAME}")
        expect(row.locator(".status")).to_have_text("running")
        expect(page.locator("#command")).to_contain_text(f"--alias {NAME}")
        expect(page.locator("#command")).to_contain_text("--port")
        expect(page.locator("#definition")).to_contain_text('"model": "/models/demo.gguf"')
        expect(page.locator("#history")).to_contain_text("created")

        # The playground: the answer streams in; the conversation goes on.
        page.get_by_label("Message").fill("hello there")
        page.get_by_role("button", name="Send").click()
        expect(page.locator("#chat-state")).to_have_text("Done.", timeout=20000)
        expect(page.locator("#chat-answer .reply").first).to_contain_text("tok0")
        page.get_by_label("Message").fill("and again")
        page.get_by_role("button", name="Send").click()
        expect(page.locator("#chat-answer .reply")).to_have_count(2)
        expect(page.locator("#chat-state")).to_have_text("Done.", timeout=20000)

        # The log so far: one run.
        log = page.locator("#log")
        expect(log).to_contain_text(STARTING)
        assert log.inner_text().count(STARTING) == 1, log.inner_text()

        # Followed: a restart's new run appears without a reload.
        restart()
        wait_runs(page, 2)
        expect(row.locator(".status")).to_have_text("running", timeout=20000)
        shot(page, "instance")

        # Paused: new lines wait (and say so) until resumed.
        page.get_by_role("button", name="Pause").click()
        restart()
        expect(page.locator("#log-state")).to_contain_text(re.compile(r"paused, [1-9]\d* new waiting"), timeout=20000)
        assert log.inner_text().count(STARTING) == 2, log.inner_text()
        page.get_by_role("button", name="Resume").click()
        wait_runs(page, 3)

        # Search: only the matching lines.
        page.get_by_label("Search").fill(STARTING)
        expect(page.locator("#log-state")).to_contain_text("3 of")
        shown = [line for line in log.inner_text().split("\n") if line]
        assert len(shown) == 3 and all(STARTING in line for line in shown), shown
        shot(page, "instance-log-search")
        fits_phone(page, "instance")

        # Edit: the form shows the definition; a refused change is shown at its field and
        # changes nothing; a good one is in the command line after the restart.
        page.get_by_role("link", name="Edit").click()
        expect(page).to_have_url(f"{URL}/instances/{NAME}/edit")
        expect(page.get_by_label("Context size")).to_have_value("512")
        page.get_by_label("Model path").fill("-oops.gguf")
        page.get_by_role("button", name="Save").click()
        expect(page.locator("#error-model")).to_contain_text("may not start with '-'")
        page.get_by_label("Model path").fill("/models/demo.gguf")
        page.get_by_label("Context size").fill("1024")
        page.get_by_label("Other options (JSON object)").fill('{"temp": 0.5}')
        shot(page, "instance-edit")
        page.get_by_role("button", name="Save").click()
        expect(page).to_have_url(f"{URL}/instances/{NAME}")
        expect(page.locator("#command")).to_contain_text("--ctx-size 1024")
        expect(page.locator("#command")).to_contain_text("--temp 0.5")
        expect(page.locator("#history")).to_contain_text("updated")
        page.problems[:] = [p for p in page.problems if "400" not in p]


if __name__ == "__main__":
    main()
