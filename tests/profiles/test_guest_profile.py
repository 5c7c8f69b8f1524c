"""The guest page as a profile: totals, traits, identities, and a timeline of sentences, with
events sent through the real doors and the page read as a marketer gets it."""

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from experiences.models import Experience
from profiles import selectors
from profiles.models import Identity
from profiles.timeline import event_sentence
from tests.factories import ExperienceFactory, UserFactory, VariantFactory
from tracking.models import Door, Event
from tracking.tasks import inbox_drain

pytestmark = pytest.mark.django_db


def text(html) -> str:
    """The page's words, tags dropped (what a person reads); table cells apart."""
    html = re.sub(r"</t[dh]>", " ", str(html))
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html)).strip()


@pytest.fixture
def marketer_client(client, source):
    user = UserFactory(is_staff=True, workspaces=[source.workspace])
    user.groups.add(Group.objects.get(name="Marketers"))
    client.force_login(user)
    return client


@pytest.fixture
def grace(door, source):
    door.post(
        "page",
        {
            "anonymousId": "b-1",
            "name": "Pricing",
            "properties": {"title": "Pricing", "url": "https://shop.example/pricing"},
        },
    )
    door.post(
        "identify",
        {"userId": "grace", "anonymousId": "b-1", "traits": {"email": "g@navy.example"}},
    )
    door.post(
        "identify",
        {"userId": "grace", "traits": {"email": "g@navy.example", "plan": "pro"}},
    )
    door.post(
        "track",
        {
            "userId": "grace",
            "event": "Order Completed",
            "properties": {"revenue": 42, "currency": "EUR", "order_id": "o-1"},
        },
    )
    experience = ExperienceFactory(
        workspace=source.workspace,
        friendly_id="hero_banner",
        name="Hero banner",
        status=Experience.Status.LIVE,
    )
    VariantFactory(experience=experience, name="personal", is_control=True, weight=100)
    answer = APIClient().post(
        "/v2/callFlows",
        {
            "clientKey": source.workspace.client_key,
            "friendlyId": "hero_banner",
            "email": "g@navy.example",
        },
        format="json",
    )
    assert answer.status_code == 200, answer.content
    inbox_drain.delay()  # the workers store the exposure
    return Identity.objects.get(value="grace").guest, experience


def test_profile_reads_as_sentences_with_totals(marketer_client, grace):
    guest, experience = grace
    page = marketer_client.get(f"/admin/profiles/guest/{guest.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    words = text(html)

    assert "<title>g@navy.example | " in html  # the guest, not "Change guest"
    assert "Change guest" not in html and "View guest" not in html
    assert 'name="_save"' not in html and 'id="guest_form"' not in html  # nothing to edit
    totals = {
        key: text(re.search(rf'id="fp-total-{key}">(.*?)</span>', html, re.S).group(1))
        for key in ("events", "sessions", "revenue")
    }
    events = Event.objects.filter(guest=guest).count()
    assert events == 5
    assert totals == {"events": "5", "sessions": "1", "revenue": "42.00 EUR"}
    assert "Identified as grace; set email to g@navy.example" in words
    assert "Identified as grace; changed plan to pro" in words  # email did not change
    assert "Did Order Completed worth 42.00 EUR: order_id o-1" in words
    assert "Viewed page Pricing (https://shop.example/pricing)" in words
    assert "Saw personal of Hero banner" in words
    link = f'<a href="/admin/experiences/experience/{experience.pk}/change/"><em>Hero banner</em>'
    assert link in html
    traits = text(re.search(r'id="fp-traits">(.*?)</div>', html, re.S).group(1))
    assert "plan pro" in traits
    identities = text(re.search(r'id="fp-identities">(.*?)</div>', html, re.S).group(1))
    assert "User id" in identities and "grace" in identities
    assert "Anonymous id" in identities and "b-1" in identities
    assert 'data-chart="fp-activity-chart"' in html and 'id="fp-activity-chart"' in html


def test_superuser_keeps_the_fields_behind_a_fold(admin_client, grace):
    guest, _ = grace
    html = admin_client.get(f"/admin/profiles/guest/{guest.pk}/change/").content.decode()
    assert '<details class="fp-card" id="fp-edit"' in html and 'name="_save"' in html


def test_totals_stop_counting_at_the_cap(marketer_client, grace, monkeypatch):
    guest, _ = grace
    monkeypatch.setattr(selectors, "PROFILE_EVENTS_READ", 3)
    html = marketer_client.get(f"/admin/profiles/guest/{guest.pk}/change/").content.decode()
    assert re.search(r'id="fp-total-events">3\+</span>', html)


def test_profile_queries_do_not_grow_with_the_timeline(marketer_client, door, grace):
    guest, _ = grace
    url = f"/admin/profiles/guest/{guest.pk}/change/"
    with CaptureQueriesContext(connection) as few:
        marketer_client.get(url)
    door.post(
        "batch",
        {"batch": [{"type": "track", "userId": "grace", "event": f"E{i}"} for i in range(40)]},
    )
    with CaptureQueriesContext(connection) as many:
        assert marketer_client.get(url).status_code == 200
    assert len(many) == len(few)
    page2 = marketer_client.get(url, {"timeline": 2}).content.decode()
    assert page2.count('class="fp-event ') == 45 - 25


def sentence(**fields) -> str:
    event = Event(
        timestamp=datetime(2026, 1, 1, tzinfo=UTC),
        received_at=datetime(2026, 1, 1, tzinfo=UTC),
        **fields,
    )
    return text(event_sentence(event, {}))


def test_sentences_of_each_door():
    assert (
        sentence(
            door=Door.OPTIMIZELY,
            type="track",
            name="purchase",
            properties={"eventValue": 3, "pageTitle": "Basket", "trackId": "t1"},
        )
        == "Did purchase on Basket: eventValue 3"
    )
    assert (
        sentence(
            door=Door.COLLECT,
            type="track",
            name="click",
            properties={"category": "banner", "label": "spring"},
            revenue=Decimal("5"),
            currency="USD",
        )
        == "Did click worth 5.00 USD in banner: label spring"
    )
    assert (
        sentence(door=Door.STREAM, type="VIEW", name="VIEW", context={"page": {"url": "/home"}})
        == "Viewed /home"
    )
    assert sentence(door=Door.STREAM, type="FORCE_CLOSE", name="FORCE_CLOSE") == "Ended the session"
    assert (
        sentence(
            door=Door.STREAM,
            type="LOYALTY_JOINED",
            name="LOYALTY_JOINED",
            properties={"tier": "gold"},
        )
        == "Sent LOYALTY_JOINED: tier gold"
    )
    assert (
        sentence(
            door=Door.PERSONALIZE, type="TRACKING", name="unknown_flow", properties={"variant": "B"}
        )
        == "Saw B of unknown_flow"
    )
    assert sentence(type="alias", previous_id="a-1", user_id="u-1") == "Linked a-1 to u-1"


def test_sentences_escape_what_was_sent():
    said = event_sentence(Event(type="track", name="<script>x</script>", properties={}), {})
    assert "<script>" not in str(said) and "&lt;script&gt;" in str(said)


def test_session_durations_read_to_the_second(marketer_client, admin_client, grace):
    guest, _ = grace
    session = guest.sessions.first()
    session.duration = timedelta(minutes=7, seconds=15, microseconds=548121)
    session.save(update_fields=["duration"])

    profile = text(marketer_client.get(f"/admin/profiles/guest/{guest.pk}/change/").content)
    sessions = text(admin_client.get("/admin/profiles/session/").content)

    for page in (profile, sessions):
        assert "0:07:15" in page
        assert "548121" not in page
