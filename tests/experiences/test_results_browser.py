"""The results-first experience page in a real browser (Debian's Chromium, via Playwright):
the verdict banner reads right for a clear winner, for no difference yet and for a
sample-ratio mismatch, and the charts are drawn."""

import os
import shutil
from datetime import timedelta

import pytest
from django.utils import timezone

from experiences.models import Metric
from tests.experiences.test_results import exposed_guests
from tests.factories import ExperienceFactory, UserFactory, VariantFactory

CHROMIUM = os.environ.get("FOOTPRINT_CHROMIUM") or shutil.which("chromium")
SCREENSHOTS = os.environ.get("FOOTPRINT_SCREENSHOTS")  # a folder: save full-page PNGs there

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM and os.environ.get("FOOTPRINT_REQUIRE_SERVICES") != "1",
        reason="needs Chromium: apt-get install chromium (or set FOOTPRINT_CHROMIUM)",
    ),
]

CASES = {
    # friendly id: (control exposed, converted; personal exposed, converted), banner words
    "clear_winner": ((1000, 40, 1000, 120), "personal beats control on Order Completed: +200 %"),
    "no_difference": ((1000, 100, 1000, 104), "No difference yet on Order Completed."),
    "skewed": ((1100, 100, 900, 90), "Sample-ratio mismatch: do not trust these numbers yet."),
}


def experiment(source, friendly_id, counts):
    experience = ExperienceFactory(
        workspace=source.workspace,
        friendly_id=friendly_id,
        name=friendly_id.replace("_", " ").capitalize(),
        status="live",
        live_since=timezone.now() - timedelta(days=20, hours=1),
    )
    Metric.objects.create(experience=experience, event="Order Completed", window_days=7)
    Metric.objects.create(
        experience=experience,
        role="guardrail",
        kind="count",
        event="Order Completed",
        guardrail_direction="must_not_drop",
        guardrail_threshold=2,
    )
    control = VariantFactory(experience=experience, name="control", is_control=True)
    personal = VariantFactory(experience=experience, name="personal")
    start = timezone.now() - timedelta(days=20)
    n_c, c_c, n_p, c_p = counts
    exposed_guests(
        experience, control, source, count=n_c, converted=c_c, start=start, spread_days=10
    )
    exposed_guests(
        experience, personal, source, count=n_p, converted=c_p, start=start, spread_days=10
    )
    return experience


@pytest.mark.django_db(transaction=True)
def test_the_verdict_banner_in_plain_words(live_server, source):
    from playwright.sync_api import expect, sync_playwright

    experiences = {fid: experiment(source, fid, counts) for fid, (counts, _) in CASES.items()}
    admin = UserFactory(is_staff=True, is_superuser=True)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(f"{live_server.url}/admin/")
            page.fill("#id_username", admin.username)
            page.fill("#id_password", "pw")
            page.click("input[type=submit]")
            for friendly_id, (_, words) in CASES.items():
                page.goto(
                    f"{live_server.url}/admin/experiences/experience/"
                    f"{experiences[friendly_id].pk}/change/"
                )
                banner = page.locator("#fp-verdict")
                expect(banner).to_contain_text(words)
                expect(page.locator("#fp-method")).to_contain_text("Sequential testing is on")
                # Chart.js drew every chart (a canvas it sized), none is left blank.
                page.wait_for_function(
                    "() => [...document.querySelectorAll('canvas[data-chart]')]"
                    ".every(c => c._fpChart)"
                )
                if SCREENSHOTS:
                    page.screenshot(path=f"{SCREENSHOTS}/{friendly_id}.png", full_page=True)
                assert page.evaluate("document.documentElement.scrollWidth") <= 1440
            winner = page.locator("#fp-verdict").all_inner_texts()
            assert winner
            page.goto(f"{live_server.url}/admin/experiences/experience/")
            rows = page.locator("#result_list tbody tr")
            expect(rows).to_have_count(3)
            expect(page.locator("#result_list")).to_contain_text("significant")
            if SCREENSHOTS:
                page.screenshot(path=f"{SCREENSHOTS}/list.png", full_page=True)
        finally:
            browser.close()
