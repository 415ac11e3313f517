"""One instance's request and token charts in a real Chromium: after chats through /v1, the bars'
titles carry the exact requests and tokens, the table under them says the same, the charts fit a
phone's width, and an inference key's page counts only its own requests.

Environment (from tests/browser.rs): LLAMACTL_URL, LLAMACTL_KEY (a management key),
LLAMACTL_APP_KEY (an inference key for INSTANCE that made one chat of APP_PROMPT + APP_COMPLETION
tokens), INSTANCE (which answered REQUESTS chats in all, of PROMPT prompt and COMPLETION completion
tokens in all), CHROMIUM, SCREENSHOTS.
"""

import os

from dashboard import SHOTS, URL, another_page, browser_page, fits_phone, sign_in
from playwright.sync_api import expect

KEY = os.environ["LLAMACTL_KEY"]
APP_KEY = os.environ["LLAMACTL_APP_KEY"]
NAME = os.environ["INSTANCE"]
REQUESTS = int(os.environ["REQUESTS"])
PROMPT = int(os.environ["PROMPT"])
COMPLETION = int(os.environ["COMPLETION"])
APP_PROMPT = int(os.environ["APP_PROMPT"])
APP_COMPLETION = int(os.environ["APP_COMPLETION"])


def plural(n, one):
    return f"{n} {one}" if n == 1 else f"{n} {one}s"


def figures(page, chart):
    """The figure in each bar's title (`... UTC: 3 requests (...)` → 3), oldest first."""
    titles = page.locator(f"#chart-{chart} rect title").all_text_contents()
    return [int(t.rsplit(": ", 1)[1].split(" ")[0]) for t in titles], titles


def check(page, requests, prompt, completion):
    """Both periods sum `requests` and the tokens, bar by bar and in words."""
    tokens = prompt + completion
    for period, buckets in (("24h", 24), ("30d", 30)):
        expect(page.locator(f"#usage-summary-{period}")).to_have_text(
            f"{plural(requests, 'request')}, {plural(tokens, 'token')} ({prompt} prompt, {completion} completion)."
        )
        counts, titles = figures(page, f"requests-{period}")
        assert len(counts) == buckets and sum(counts) == requests, titles
        amounts, titles = figures(page, f"tokens-{period}")
        assert sum(amounts) == tokens, titles
        # The chats fall in one hour (one day) unless it turned between them.
        busy = [t for t, n in zip(titles, amounts) if n]
        if len(busy) == 1:
            assert busy[0].endswith(f": {plural(tokens, 'token')} ({prompt} prompt, {completion} completion)"), busy
        # The busiest bar is drawn full height, the others in proportion.
        rects = page.locator(f"#chart-tokens-{period} rect")
        tallest = max(range(buckets), key=lambda i: amounts[i])
        assert rects.nth(tallest).get_attribute("height") == "100"
        box = rects.nth(tallest).bounding_box()
        assert box and box["height"] > 10, box


def main():
    with browser_page() as page:
        sign_in(page, KEY)
        page.get_by_role("link", name=NAME, exact=True).click()
        expect(page).to_have_url(f"{URL}/instances/{NAME}")
        expect(page.get_by_role("heading", name="Requests and tokens")).to_be_visible()
        expect(page.locator("#usage-scope")).to_contain_text("Every key")
        check(page, REQUESTS, PROMPT, COMPLETION)
        # Each chart is an image named by its caption, for screen readers.
        chart = page.get_by_role("img", name="Requests (highest bar", exact=False).first
        expect(chart).to_be_visible()

        # The table under the charts says the same in rows.
        page.locator("#usage-24h summary").click()
        rows = page.locator("#usage-table-24h tbody tr")
        cells = [rows.nth(i).locator("td").all_text_contents() for i in range(rows.count())]
        assert sum(int(c[1]) for c in cells) == REQUESTS, cells
        assert sum(int(c[3]) + int(c[4]) for c in cells) == PROMPT + COMPLETION, cells
        page.locator("#usage").screenshot(path=f"{SHOTS}/instance-charts.png")
        fits_phone(page, "instance-charts")

        # An inference key sees its own chat only.
        app = another_page(page.context.browser, page.problems)
        sign_in(app, APP_KEY)
        app.goto(f"{URL}/instances/{NAME}")
        expect(app.locator("#usage-scope")).to_contain_text("Your key")
        check(app, 1, APP_PROMPT, APP_COMPLETION)


if __name__ == "__main__":
    main()
