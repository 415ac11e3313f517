"""The keys page in a real Chromium: create an inference key limited to one instance (its secret
shown once, with a copy button), see what that key sees when signed in (its instance only, no
buttons, no keys page), revoke it with a confirmation, and see its session gone.

Environment (from tests/browser.rs): LLAMACTL_URL, LLAMACTL_KEY (a management key); instances
`alpha` and `beta` exist. CHROMIUM, SCREENSHOTS.
"""

import os

from dashboard import URL, another_page, browser_page, fits_phone, shot, sign_in
from playwright.sync_api import expect

KEY = os.environ["LLAMACTL_KEY"]


def main():
    with browser_page() as admin:
        sign_in(admin, KEY)
        admin.get_by_role("link", name="Keys").click()
        expect(admin).to_have_url(f"{URL}/keys")
        expect(admin.locator("#keys")).to_contain_text("operator")

        # A refused form: the API's message at its field.
        admin.get_by_role("button", name="Create key").click()
        expect(admin.locator("#error-name")).to_contain_text("key name must be 1 to 64 characters")
        expect(admin.get_by_label("Name")).to_have_attribute("aria-invalid", "true")

        # Created: the secret shown once, with a copy button that copies it.
        admin.get_by_label("Name").fill("chat-app")
        admin.get_by_label("Kind").select_option("inference")
        admin.get_by_label("Instances").fill("alpha")
        admin.get_by_role("button", name="Create key").click()
        secret = admin.locator("#new-secret").inner_text().strip()
        assert secret.startswith("llamactl_ik_"), secret
        admin.get_by_role("button", name="Copy").click()
        expect(admin.get_by_role("button", name="Copied")).to_be_visible()
        assert admin.evaluate("() => navigator.clipboard.readText()") == secret
        shot(admin, "keys-created")
        admin.goto(f"{URL}/keys")
        assert secret not in admin.content(), "the secret is shown again"
        row = admin.locator("#keys tr", has_text="chat-app")
        expect(row).to_contain_text("alpha")
        expect(row.locator(".key-status")).to_have_text("active")
        shot(admin, "keys")
        fits_phone(admin, "keys")

        # What the inference key sees: its instance only, no buttons, no keys page.
        user = another_page(admin.context.browser, admin.problems)
        sign_in(user, secret)
        expect(user.locator("#kind")).to_have_text("inference")
        expect(user.locator("#instance-alpha")).to_be_visible()
        expect(user.locator("#instance-beta")).to_have_count(0)
        expect(user.get_by_role("button")).to_have_count(1)  # Sign out only
        expect(user.get_by_role("link", name="Keys")).to_have_count(0)
        expect(user.get_by_role("link", name="New instance")).to_have_count(0)
        shot(user, "instances-inference-key")
        for path in ["/keys", "/system", "/activity", "/instances/beta", "/instances/new"]:
            response = user.goto(f"{URL}{path}")
            assert response.status == 403, (path, response.status)
        user.goto(f"{URL}/instances/beta/row")
        assert "beta" not in user.locator("main").inner_text().replace("'beta'", ""), user.content()

        # It may chat with its instance in the playground (no management buttons there).
        user.goto(f"{URL}/instances/alpha")
        expect(user.get_by_role("link", name="Edit")).to_have_count(0)
        expect(user.locator("#log")).to_have_count(0)
        user.get_by_label("Message").fill("hello")
        user.get_by_role("button", name="Send").click()
        expect(user.locator("#chat-state")).to_have_text("Done.", timeout=20000)

        # Revoked (confirmed): the key's session is gone at its next page.
        user.goto(f"{URL}/")
        admin.once("dialog", lambda d: d.accept())
        admin.get_by_role("button", name="Revoke chat-app").click()
        expect(admin.locator("#keys tr", has_text="chat-app").locator(".key-status")).to_have_text("revoked")
        user.reload()
        expect(user).to_have_url(f"{URL}/sign-in")
        # The refusals above are logged by Chromium; they are the pages working as meant.
        admin.problems[:] = [p for p in admin.problems if "400" not in p and "403" not in p]


if __name__ == "__main__":
    main()
