"""The home dashboard and the events list as a member of the Marketers group: in Chromium (the
dashboard's numbers against what the read API says for the same data, filtering events by
name) and through Django's client (workspaces, navigation, empty states, isolation)."""

from __future__ import annotations

import os
import shutil
from datetime import datetime, timedelta
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone
from rest_framework.test import APIClient

from tests.conftest import Door, track
from tests.factories import SourceFactory, TokenFactory, UserFactory

CHROMIUM = os.environ.get("FOOTPRINT_CHROMIUM") or shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    not CHROMIUM and os.environ.get("FOOTPRINT_REQUIRE_SERVICES") != "1",
    reason="needs Chromium: apt-get install chromium (or set FOOTPRINT_CHROMIUM)",
)


def marketer_of(*workspaces):
    user = UserFactory(is_staff=True, workspaces=list(workspaces))
    user.groups.add(Group.objects.get(name="Marketers"))
    return user


def api_of(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {TokenFactory(user=user).key}")
    return client


def api_all(client, path: str) -> list[dict]:
    """Every item of a read API list, following its pages."""
    items, url = [], path
    while url:
        body = client.get(url).json()
        items += body["results"]
        url = body.get("next")
    return items


def send_traffic(door):
    """Three guests (two identified), orders, page views, an identify, and refused messages."""
    door.post(
        "batch",
        {
            "batch": [
                track(userId="ada", event="Order Completed", properties={"total": 30}),
                track(userId="ada", event="Order Completed", properties={"total": 12}),
                track(userId="grace", event="Product Viewed", properties={"sku": "SKU-1"}),
                {"type": "page", "anonymousId": "anon-1", "name": "Home"},
                {"type": "page", "anonymousId": "anon-1", "name": "Shoes"},
                {"type": "identify", "userId": "grace", "traits": {"plan": "pro"}},
                {"type": "track", "userId": "ada"},  # refused: no event name
                {"type": "nonsense", "userId": "ada"},  # refused: unknown type
            ]
        },
    )


def login(page, base: str, user) -> None:
    page.goto(f"{base}/admin/login/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", "pw")
    page.click("input[type=submit]")
    page.wait_for_load_state("networkidle")


@pytest.mark.browser
@needs_chromium
@pytest.mark.django_db(transaction=True)
def test_dashboard_numbers_equal_the_read_api(live_server, door):
    from playwright.sync_api import sync_playwright

    send_traffic(door)
    marketer = marketer_of(door.source.workspace)
    api = api_of(marketer)
    since = quote((timezone.now() - timedelta(days=7)).isoformat())
    events = api_all(api, f"/api/events/?since={since}&pageSize=500")
    guests = api_all(api, "/api/guests/?pageSize=500")
    by_type: dict[str, int] = {}
    for event in events:
        by_type[event["type"]] = by_type.get(event["type"], 0) + 1
    identified = sum(1 for guest in guests if guest["guestType"] == "customer")

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = chromium.new_page(viewport={"width": 1440, "height": 900})
            login(page, live_server.url, marketer)
            page.goto(f"{live_server.url}/admin/")

            def stat(name: str) -> str:
                return page.locator(f"[data-stat={name}] .fp-stat-value").inner_text().strip()

            assert stat("events_7d") == str(len(events)) == "6"
            assert stat("new_7d") == str(len(guests)) == "3"
            assert stat("identified_share") == f"{round(100 * identified / len(guests))} %"
            # 2 refused of 8 messages.
            assert stat("failed_rate") == "25.00 %"
            # The chart draws the same events, split by type.
            page.goto(f"{live_server.url}/admin/?period=7d&split=type")
            chart = page.evaluate("JSON.parse(document.getElementById('fp-traffic').textContent)")
            drawn = {d["label"]: sum(d["data"]) for d in chart["data"]["datasets"]}
            assert drawn == {"Track": by_type["track"], "Page view": 2, "Identify": 1}
            assert page.locator("canvas[data-chart=fp-traffic]").evaluate(
                "canvas => canvas.width > 0"
            )
            assert page.evaluate("document.documentElement.scrollWidth") <= 1440
        finally:
            chromium.close()


@pytest.mark.browser
@needs_chromium
@pytest.mark.django_db(transaction=True)
def test_marketer_filters_events_by_name(live_server, door):
    from playwright.sync_api import expect, sync_playwright

    send_traffic(door)
    marketer = marketer_of(door.source.workspace)
    orders = api_all(api_of(marketer), "/api/events/?event=Order%20Completed")
    assert len(orders) == 2

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            context = chromium.new_context(
                viewport={"width": 1440, "height": 900}, timezone_id="Asia/Tokyo"
            )
            page = context.new_page()
            login(page, live_server.url, marketer)
            page.goto(f"{live_server.url}/admin/tracking/event/")
            picker = page.locator("select[aria-label='event name']")
            # The choices are the catalogue's names, nothing typed by hand.
            options = picker.locator("option").all_inner_texts()
            assert options == ["All", "Home", "Order Completed", "Product Viewed", "Shoes"]
            picker.select_option(label="Order Completed")
            page.wait_for_url("**name=Order+Completed**")
            rows = page.locator("#result_list tbody tr")
            expect(rows).to_have_count(len(orders))
            for text in rows.all_inner_texts():
                assert "did Order Completed" in text
            # Times have seconds and are in the browser's zone (Tokyo is UTC+9).
            first = rows.first.locator("td, th").first.inner_text()
            stored = datetime.fromisoformat(orders[0]["timestamp"].replace("Z", "+00:00"))
            stored = stored.astimezone(ZoneInfo("Asia/Tokyo"))
            assert stored.strftime("%H:%M:%S") in first
            assert page.evaluate("document.documentElement.scrollWidth") <= 1440
            # The detail reads as a summary first, the JSON below.
            rows.first.locator("a").first.click()
            summary = page.locator(".fp-summary")
            expect(summary).to_contain_text("did Order Completed")
            expect(summary).to_contain_text("Asia/Tokyo")
            expect(page.locator(".fp-props")).to_contain_text("total")
        finally:
            chromium.close()


# --- through Django's client ------------------------------------------------------------------


@pytest.mark.django_db
def test_a_marketer_sees_only_their_workspaces(client, django_capture_on_commit_callbacks):
    mine, theirs = SourceFactory(), SourceFactory()
    Door(client, django_capture_on_commit_callbacks, mine).post("track", track(event="Mine Bought"))
    other = Door(client, django_capture_on_commit_callbacks, theirs)
    for _ in range(3):
        other.post("track", track(event="Secret Launch"))
    marketer = marketer_of(mine.workspace)
    client.force_login(marketer)

    home = client.get("/admin/").content.decode()
    assert mine.workspace.name in home and theirs.workspace.name not in home
    assert 'data-stat="events_7d"' in home
    # Asking for another workspace shows one's own, and says so.
    asked = client.get(f"/admin/?workspace={theirs.workspace.pk}").content.decode()
    assert f"No workspace &#x27;{theirs.workspace.pk}&#x27; among yours." in asked
    assert theirs.workspace.name not in asked
    listing = client.get("/admin/tracking/event/").content.decode()
    assert "Mine Bought" in listing and "Secret Launch" not in listing
    # A name of another workspace, asked for by hand, is not a choice: the filter is ignored.
    filtered = client.get("/admin/tracking/event/?name=Secret+Launch").context["cl"]
    assert [event.name for event in filtered.result_list] == ["Mine Bought"]


@pytest.mark.django_db
def test_a_marketer_with_two_workspaces_picks_one(client, django_capture_on_commit_callbacks):
    first, second = SourceFactory(), SourceFactory()
    Door(client, django_capture_on_commit_callbacks, second).post("track", track())
    client.force_login(marketer_of(first.workspace, second.workspace))
    page = client.get(f"/admin/?workspace={second.workspace.pk}")
    assert page.context["workspace"] == second.workspace
    assert page.context["totals"]["events_7d"] == 1
    assert 'id="fp-workspace"' in page.content.decode()
    assert client.get(f"/admin/?workspace={first.workspace.pk}").context["totals"]["events_7d"] == 0


@pytest.mark.django_db
def test_empty_states_say_how_the_first_record_arrives(client):
    client.force_login(marketer_of(SourceFactory().workspace))
    home = client.get("/admin/").content.decode()
    assert "copy a source&#x27;s snippet" in home or "copy a source's snippet" in home
    assert "No experience is live" in home
    assert "No segments yet" in home
    for path, words in [
        ("/admin/tracking/event/", "No events yet. Events arrive a few seconds after"),
        ("/admin/profiles/guest/", "No guests yet. A guest is made by the first event"),
        ("/admin/profiles/session/", "No sessions yet. A session starts"),
    ]:
        assert words in client.get(path).content.decode(), path
    assert "Nothing matches" in client.get("/admin/tracking/event/?q=nobody").content.decode()


@pytest.mark.django_db
def test_navigation_is_grouped_for_marketers(client, admin_client):
    client.force_login(marketer_of(SourceFactory().workspace))
    apps = client.get("/admin/").context["available_apps"]
    sections = [app["name"] for app in apps]
    # Sources too: a source's page holds its install snippets and live debugger.
    assert sections == ["Audience", "Activity", "Experiences", "Sources and pipeline"]
    assert [model["object_name"] for model in apps[-1]["models"]] == ["Source"]
    everything = [app["name"] for app in admin_client.get("/admin/").context["available_apps"]]
    assert everything == [
        "Audience",
        "Activity",
        "Experiences",
        "Sources and pipeline",
        "Settings",
        "Records",
    ]


@pytest.mark.django_db
def test_events_are_found_by_a_guest_identifier(client, door):
    door.post("identify", {"userId": "ada", "anonymousId": "anon-7", "traits": {"email": "a@x.io"}})
    door.post("track", {"anonymousId": "anon-7", "event": "Played"})
    door.post("track", {"userId": "someone-else", "event": "Played"})
    client.force_login(marketer_of(door.source.workspace))
    for term in ("ada", "anon-7", "a@x.io"):
        page = client.get("/admin/tracking/event/", {"q": term})
        assert len(page.context["cl"].result_list) == 2, term


@pytest.mark.django_db
def test_events_are_found_by_message_id_in_the_users_workspaces(
    client, admin_client, door, django_capture_on_commit_callbacks
):
    other = Door(client, django_capture_on_commit_callbacks, SourceFactory())
    door.post("track", {"userId": "ada", "event": "Played", "messageId": "m-1"})
    door.post("track", {"userId": "grace", "event": "Played", "messageId": "m-2"})
    other.post("track", {"userId": "linus", "event": "Played", "messageId": "m-1"})
    # A term that is both a messageId and an identifier finds both.
    door.post("track", {"userId": "m-2", "event": "Played", "messageId": "m-3"})

    def found(who, term):
        rows = who.get("/admin/tracking/event/", {"q": term}).context["cl"].result_list
        return sorted(event.message_id for event in rows)

    client.force_login(marketer_of(door.source.workspace))
    assert found(client, "m-1") == ["m-1"]
    assert found(client, "m-2") == ["m-2", "m-3"]
    assert found(client, "ada") == ["m-1"]
    assert found(client, "nobody") == []
    # An operator sees every workspace's.
    assert found(admin_client, "m-1") == ["m-1", "m-1"]
    assert found(admin_client, "m-2") == ["m-2", "m-3"]
    assert found(admin_client, "linus") == ["m-1"]


@pytest.mark.django_db
def test_tracking_events_filter_by_experience_and_variant(client, door):
    from tests.factories import ExperienceFactory

    experience = ExperienceFactory(workspace=door.source.workspace, friendly_id="hero")
    for variant in ("personal", "control", "personal"):
        door.post(
            "track",
            {"userId": "u", "event": "Shown", "properties": {"variant": variant}},
        )
    from tracking.models import Event

    Event.objects.filter(name="Shown").update(type="TRACKING", name="hero")
    from experiences.models import Variant

    Variant.objects.create(experience=experience, name="personal", weight=50)
    Variant.objects.create(experience=experience, name="control", weight=50, is_control=True)
    client.force_login(marketer_of(door.source.workspace))
    page = client.get("/admin/tracking/event/", {"experience": "hero", "variant": "personal"})
    assert len(page.context["cl"].result_list) == 2
    assert "was shown experience hero (variant personal)" in page.content.decode()
    assert (
        len(client.get("/admin/tracking/event/", {"experience": "hero"}).context["cl"].result_list)
        == 3
    )


@pytest.mark.django_db
def test_live_experiences_name_the_leader_the_experience_page_names(client, source):
    from experiences.models import Metric
    from experiences.results import experience_summary
    from experiences.tasks import experiences_results_refresh
    from tests.experiences.test_results import exposed_guests
    from tests.factories import ExperienceFactory, VariantFactory

    experience = ExperienceFactory(
        workspace=source.workspace, friendly_id="hero", name="Hero", status="live"
    )
    Metric.objects.create(experience=experience, event="Order Completed", window_days=7)
    start = timezone.now() - timedelta(days=20)
    control = VariantFactory(experience=experience, name="A", is_control=True)
    variant = VariantFactory(experience=experience, name="B")
    exposed_guests(experience, control, source, count=400, converted=40, start=start)
    exposed_guests(experience, variant, source, count=400, converted=120, start=start)
    summary = experience_summary(experience)
    assert summary["leader"] == "B" and summary["significant"] is True

    client.force_login(marketer_of(source.workspace))
    experiences_results_refresh()  # what beat runs every few minutes
    row = client.get("/admin/").context["experiences"][0]

    assert row["leader"] == "B"
    assert row["significant"] is True
    assert row["exposed"] == 800
    assert row["uplift_text"] == "+200.0 % vs control"
    assert row["note"] == ""


@pytest.mark.django_db
def test_the_dashboard_reads_results_only_from_what_beat_kept(client, source):
    """Results read every exposure and metric event (seconds on millions): the home page never
    computes them. Until beat's task has run it says so; then it shows what the task kept, and
    a changed definition is not judged by results of the old one."""
    from django.conf import settings
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from experiences.models import Metric
    from experiences.tasks import experiences_results_refresh
    from tests.experiences.test_results import exposed_guests
    from tests.factories import ExperienceFactory, VariantFactory

    schedule = settings.CELERY_BEAT_SCHEDULE["experiences-results-refresh"]
    assert schedule["task"] == experiences_results_refresh.name
    experience = ExperienceFactory(
        workspace=source.workspace, friendly_id="hero", name="Hero", status="live"
    )
    ExperienceFactory(workspace=source.workspace, friendly_id="old", status="completed")
    metric = Metric.objects.create(experience=experience, event="Order Completed", window_days=7)
    start = timezone.now() - timedelta(days=20)
    control = VariantFactory(experience=experience, name="A", is_control=True)
    variant = VariantFactory(experience=experience, name="B")
    exposed_guests(experience, control, source, count=400, converted=40, start=start)
    exposed_guests(experience, variant, source, count=400, converted=120, start=start)
    client.force_login(marketer_of(source.workspace))

    with CaptureQueriesContext(connection) as captured:
        page = client.get("/admin/")
    assert not [q for q in captured if '"tracking_event"' in q["sql"]]
    row = page.context["experiences"][0]
    assert (row["leader"], row["exposed"], row["note"]) == (None, None, "computing…")
    assert "Computing…" in page.content.decode()

    assert experiences_results_refresh() == 1  # the live one only
    with CaptureQueriesContext(connection) as captured:
        page = client.get("/admin/")
    assert not [q for q in captured if '"tracking_event"' in q["sql"]]
    row = page.context["experiences"][0]
    assert (row["leader"], row["significant"], row["exposed"]) == ("B", True, 800)
    assert row["computed_at"] is not None
    assert "Results as of" in page.content.decode()

    metric.event = "Signed Up"
    metric.save()
    assert client.get("/admin/").context["experiences"][0]["note"] == "computing…"
    experiences_results_refresh()
    row = client.get("/admin/").context["experiences"][0]
    assert (row["leader"], row["exposed"], row["note"]) == (None, 800, "no data on the goal yet")
