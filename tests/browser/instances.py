"""The instances page in a real Chromium: create an instance against the stand-in backend with the
form, watch it turn running without a reload (the event stream), stop it with a confirmation, and
see the API's refusal of a form at its field. Phone width, keyboard, no console errors.

Environment (from tests/browser.rs): LLAMACTL_URL, LLAMACTL_KEY (a management key), READY_FILE (a
path that does not exist yet: the stand-in reports ready once it does), CHROMIUM, SCREENSHOTS.
"""

import json
import os
import pathlib
import re

from dashboard import URL, browser_page, fits_phone, shot, sign_in, tab_to
from playwright.sync_api import expect

KEY = os.environ["LLAMACTL_KEY"]
READY_FILE = pathlib.Path(os.environ["READY_FILE"])


def main():
    with browser_page() as page:
        sign_in(page, KEY)
        expect(page.get_by_role("heading", name="Instances")).to_be_visible()
        expect(page.locator("#no-instances")).to_be_visible()

        # Create with the form: common fields plus a raw option (the stand-in's readiness switch).
        page.get_by_role("link", name="New instance").click()
        expect(page).to_have_url(f"{URL}/instances/new")
        page.get_by_label("Name").fill("web")
        page.get_by_label("Model path").fill("/models/demo.gguf")
        page.get_by_label("Context size").fill("2048")
        page.get_by_label("Restart after a crash").select_option("true")
        page.get_by_label("Raw options (JSON object)").fill(json.dumps({"fake_ready_file": str(READY_FILE)}))
        shot(page, "instance-new")
        page.get_by_role("button", name="Create and start").click()
        expect(page).to_have_url(f"{URL}/")
        row = page.locator("#instance-web")
        expect(row.locator(".status")).to_have_text("starting")

        # It becomes running while the page stays as it is: no reload, no polling.
        page.evaluate("() => { window.stillThisPage = true }")
        READY_FILE.write_text("ready")
        expect(row.locator(".status")).to_have_text("running", timeout=20000)
        assert page.evaluate("() => window.stillThisPage === true"), "the page was reloaded"
        expect(row.locator("td[data-label=PID]")).to_have_text(re.compile(r"^\d+$"))
        shot(page, "instances")
        fits_phone(page, "instances")

        # Keyboard: the row's buttons are reachable with Tab.
        tab_to(page, "Stop web")

        # Stop, confirmed in the browser's dialog.
        asked = []
        page.once("dialog", lambda d: (asked.append(d.message), d.accept()))
        page.get_by_role("button", name="Stop web").click()
        expect(row.locator(".status")).to_have_text("stopped", timeout=20000)
        assert asked == ["Stop web?"], asked

        # Declining the dialog does nothing.
        page.once("dialog", lambda d: d.dismiss())
        page.get_by_role("button", name="Delete web").click()
        expect(row).to_be_visible()

        # A refused form: the API's message at the field it names, the typed values kept.
        page.goto(f"{URL}/instances/new")
        page.get_by_label("Name").fill("bad")
        page.get_by_label("Model path").fill("-oops.gguf")
        page.get_by_role("button", name="Create and start").click()
        error = page.locator("#error-model")
        expect(error).to_contain_text("may not start with '-'")
        expect(page.get_by_label("Model path")).to_have_attribute("aria-invalid", "true")
        expect(page.get_by_label("Model path")).to_have_value("-oops.gguf")
        shot(page, "instance-new-error")
        # The name taken: at the name field.
        page.get_by_label("Name").fill("web")
        page.get_by_label("Model path").fill("/models/demo.gguf")
        page.get_by_role("button", name="Create and start").click()
        expect(page.locator("#error-name")).to_contain_text("already exists")
        fits_phone(page, "instance-new-error")
        # The 400 answers of the refused forms are logged by Chromium; they are the page working.
        page.problems[:] = [p for p in page.problems if "400" not in p and "409" not in p]


if __name__ == "__main__":
    main()
