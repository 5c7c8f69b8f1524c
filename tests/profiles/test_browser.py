"""A marketer in a real browser (Debian's headless Chromium, driven by Playwright)."""

import os
import shutil

import pytest

from tests.factories import UserFactory

CHROMIUM = os.environ.get("FOOTPRINT_CHROMIUM") or shutil.which("chromium")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM and os.environ.get("FOOTPRINT_REQUIRE_SERVICES") != "1",
        reason="needs Chromium: apt-get install chromium (or set FOOTPRINT_CHROMIUM)",
    ),
]


@pytest.mark.django_db(transaction=True)
def test_marketer_searches_a_guest_and_reads_the_timeline(live_server, door):
    from django.contrib.auth.models import Group
    from playwright.sync_api import expect, sync_playwright

    door.post("page", {"anonymousId": "b-1", "name": "Home", "properties": {"url": "/home"}})
    door.post(
        "identify",
        {"userId": "grace", "anonymousId": "b-1", "traits": {"email": "grace@navy.example"}},
    )
    door.post(
        "track",
        {"userId": "grace", "event": "Order Completed", "properties": {"revenue": 42}},
    )
    marketer = UserFactory(is_staff=True, workspaces=[door.source.workspace])
    marketer.groups.add(Group.objects.get(name="Marketers"))

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page()
            page.goto(f"{live_server.url}/admin/")
            page.fill("#id_username", marketer.username)
            page.fill("#id_password", "pw")
            page.click("input[type=submit]")
            page.goto(f"{live_server.url}/admin/profiles/guest/")
            page.fill("#searchbar", "grace@navy")
            page.press("#searchbar", "Enter")
            rows = page.locator("#result_list tbody tr")
            expect(rows).to_have_count(1)
            rows.first.locator("th a").click()

            expect(page).to_have_title("grace@navy.example | Footprint")
            expect(page.locator("#fp-total-events")).to_have_text("3")
            expect(page.locator("#fp-total-sessions")).to_have_text("1")
            expect(page.locator("#fp-total-revenue")).to_have_text("42.00 USD")
            expect(page.locator("#fp-last-channel")).to_have_text("Web")
            timeline = page.locator("#fp-timeline")
            expect(timeline).to_contain_text("Did Order Completed worth 42.00 USD")
            expect(timeline).to_contain_text("Identified as grace; set email to grace@navy.example")
            expect(timeline).to_contain_text("Viewed page Home (/home)")
            expect(page.locator("#fp-timeline tr.fp-event")).to_have_count(3)
            expect(page.locator("#fp-sessions")).to_contain_text("Web")
            expect(page.locator("input[name=_save]")).to_have_count(0)
        finally:
            browser.close()
