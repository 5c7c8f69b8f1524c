"""A marketer watching a source's live debugger in a real browser (Debian's headless Chromium)."""

import base64
import http.client
import json
import os
import shutil
import urllib.parse

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


def send(live_server, source, route, payload):
    """What an SDK does: POST to the /v1 door over HTTP with the write key."""
    key = base64.b64encode(f"{source.write_key}:".encode()).decode()
    address = urllib.parse.urlsplit(live_server.url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
    try:
        connection.request(
            "POST",
            f"/v1/{route}",
            body=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Basic {key}"},
        )
        assert connection.getresponse().status == 200
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_debugger_shows_a_request_sent_after_the_page_opened(live_server, source):
    from django.contrib.auth.models import Group
    from playwright.sync_api import expect, sync_playwright

    marketer = UserFactory(is_staff=True, workspaces=[source.workspace])
    marketer.groups.add(Group.objects.get(name="Marketers"))

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page()
            page.goto(f"{live_server.url}/admin/")
            page.fill("#id_username", marketer.username)
            page.fill("#id_password", "pw")
            page.click("input[type=submit]")
            page.goto(f"{live_server.url}/admin/tracking/source/")
            expect(page.locator("#result_list")).to_contain_text("nothing yet")
            page.locator("#result_list tbody th a").first.click()

            state = page.locator("#fp-debugger-state")
            expect(state).to_contain_text("No requests yet")
            expect(page.locator("#fp-debugger-empty")).to_contain_text("/v1/track")
            page.evaluate("window.fpSamePage = true")

            send(
                live_server,
                source,
                "batch",
                {
                    "batch": [
                        {"type": "track", "userId": "u1", "event": "Signed Up"},
                        {"type": "track", "userId": "u1"},
                    ]
                },
            )
            rows = page.locator("#fp-debugger-table tr.fp-request")
            expect(rows).to_have_count(1, timeout=10_000)
            row = rows.first
            expect(row.locator("td").nth(1)).to_have_text("Segment spec (/v1)")
            expect(row.locator("td").nth(2)).to_have_text("2")
            expect(row.locator("td").nth(3)).to_have_text("1")
            expect(row.locator("td").nth(4)).to_contain_text("event")
            expect(state).to_contain_text("Last request received")
            assert page.evaluate("window.fpSamePage") is True  # no reload happened

            row.get_by_text("Show").click()
            expect(page.locator("#fp-debugger-payload-body")).to_contain_text('"Signed Up"')
        finally:
            browser.close()
