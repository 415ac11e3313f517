"""Signs in to llamactl's dashboard in a real headless Chromium, signs out, signs in again, and
checks that revoking the key ends the session (a reload shows the sign-in page).

Run by tests/browser.rs against a llamactl it started. Environment: LLAMACTL_URL, LLAMACTL_KEY (a
stored management key to sign in with), LLAMACTL_KEY_ID (its id), LLAMACTL_ADMIN_KEY (to revoke
it through the API), CHROMIUM (the browser's executable), SCREENSHOTS (a directory).
Exits non-zero, saying why, on the first thing a person would see go wrong, and on any console
error or page error.
"""

import json
import os
import sys
import urllib.request

from playwright.sync_api import expect, sync_playwright

URL = os.environ["LLAMACTL_URL"]
KEY = os.environ["LLAMACTL_KEY"]
KEY_ID = os.environ["LLAMACTL_KEY_ID"]
ADMIN_KEY = os.environ["LLAMACTL_ADMIN_KEY"]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SHOTS = os.environ["SCREENSHOTS"]


def revoke(key_id):
    req = urllib.request.Request(
        f"{URL}/api/v1/auth/keys/{key_id}",
        method="DELETE",
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )
    with urllib.request.urlopen(req) as resp:
        assert resp.status == 204, resp.status


def sign_in(page, key):
    page.goto(f"{URL}/")
    expect(page).to_have_url(f"{URL}/sign-in")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()


def main():
    os.makedirs(SHOTS, exist_ok=True)
    problems = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))

        # A wrong key: told so at the field, still on the sign-in page.
        sign_in(page, "not-a-key")
        expect(page.get_by_role("alert")).to_contain_text("invalid API key")
        page.screenshot(path=f"{SHOTS}/sign-in-error.png", full_page=True)
        # The 401 answer of a failed sign-in is logged by Chromium as a console error; it is the
        # page working as meant, not a fault.
        problems[:] = [p for p in problems if "401" not in p]

        sign_in(page, KEY)
        expect(page).to_have_url(f"{URL}/")
        expect(page.locator("#who")).to_have_text("browser-test")
        expect(page.locator("#kind")).to_have_text("management")
        page.screenshot(path=f"{SHOTS}/signed-in.png", full_page=True)
        # The key is in no page and in no storage a script can read.
        assert KEY not in page.content(), "the key is in the page"
        stored = page.evaluate("() => JSON.stringify([localStorage, sessionStorage, document.cookie])")
        assert KEY not in stored and "llamactl_session" not in stored, stored
        cookies = page.context.cookies()
        session = [c for c in cookies if c["name"] == "llamactl_session"]
        assert session and session[0]["httpOnly"] and session[0]["sameSite"] == "Strict", cookies

        page.get_by_role("button", name="Sign out").click()
        expect(page).to_have_url(f"{URL}/sign-in")
        page.goto(f"{URL}/")
        expect(page).to_have_url(f"{URL}/sign-in")
        page.screenshot(path=f"{SHOTS}/sign-in.png", full_page=True)

        # Signed in again, then the key is revoked elsewhere: a reload shows the sign-in page.
        sign_in(page, KEY)
        expect(page.locator("#who")).to_have_text("browser-test")
        revoke(KEY_ID)
        page.reload()
        expect(page).to_have_url(f"{URL}/sign-in")
        expect(page.get_by_label("API key")).to_be_visible()

        # Phone width: the sign-in form still fits.
        page.set_viewport_size({"width": 375, "height": 700})
        page.screenshot(path=f"{SHOTS}/sign-in-phone.png", full_page=True)
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 375, f"the page scrolls sideways at phone width ({width}px)"
        browser.close()
    if problems:
        sys.exit("\n".join(problems))
    print(json.dumps({"ok": True, "screenshots": sorted(os.listdir(SHOTS))}))


if __name__ == "__main__":
    main()
