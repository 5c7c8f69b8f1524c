"""Sessions through the /v1 door: timeouts, late events, client ids, closing."""

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command

from profiles.models import Session
from profiles.sessions import session_force_close, sessions_close_idle
from tracking.models import Event

pytestmark = pytest.mark.django_db

START = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def at(minutes: float) -> str:
    return (START + timedelta(minutes=minutes)).isoformat()


def page(door, minutes, *, anon="a1", url=None, **extra):
    message = {"anonymousId": anon, "name": f"P{minutes}", "timestamp": at(minutes), **extra}
    if url:
        message["properties"] = {"url": url}
    assert door.post("page", message).status_code == 200


def spans() -> list[tuple[float, float, int]]:
    """(start, end, events) of every session, in minutes from START."""
    return [
        (
            (s.started_at - START).total_seconds() / 60,
            (s.ended_at - START).total_seconds() / 60,
            s.event_count,
        )
        for s in Session.objects.order_by("started_at")
    ]


def test_events_within_the_timeout_share_a_session(door):
    for minute in (0, 10, 25, 50):
        page(door, minute)

    assert spans() == [(0, 50, 4)]
    session = Session.objects.get()
    assert session.status == Session.Status.OPEN
    assert session.duration == timedelta(minutes=50)
    assert set(Event.objects.values_list("session", flat=True)) == {session.pk}


def test_a_45_minute_gap_opens_a_new_session(door):
    page(door, 0)
    page(door, 10)
    page(door, 55)

    assert spans() == [(0, 10, 2), (55, 55, 1)]


def test_a_late_event_fills_the_right_old_session(door):
    page(door, 0)
    page(door, 10)
    page(door, 100)
    page(door, 110)

    page(door, 5)  # arrives last, belongs to the first visit

    assert spans() == [(0, 10, 3), (100, 110, 2)]
    late = Event.objects.get(name="P5")
    assert late.session.started_at == START


def test_a_late_event_that_bridges_two_sessions_joins_them(door):
    page(door, 0)
    page(door, 50)
    assert len(spans()) == 2

    page(door, 25)

    assert spans() == [(0, 50, 3)]
    assert Event.objects.values("session").distinct().count() == 1


def test_the_workspace_timeout_applies(door):
    door.source.workspace.session_timeout = timedelta(minutes=5)
    door.source.workspace.save()
    page(door, 0)
    page(door, 4)
    page(door, 10)

    assert spans() == [(0, 4, 2), (10, 10, 1)]


def test_channels_have_their_own_sessions(door):
    page(door, 0, context={"channel": "web"})
    page(door, 1, context={"channel": "mobile_web"})

    assert sorted(Session.objects.values_list("channel", flat=True)) == ["MOBILE_WEB", "WEB"]


def test_client_session_id_wins(door):
    page(door, 0, context={"sessionId": "s-1"})
    page(door, 90, context={"sessionId": "s-1"})
    page(door, 91, context={"sessionId": "s-2"})

    assert [(s.client_session_id, s.event_count) for s in Session.objects.order_by("pk")] == [
        ("s-1", 2),
        ("s-2", 1),
    ]


def test_counts_and_pages(door):
    page(door, 0, url="https://shop.example/")
    door.post("track", {"anonymousId": "a1", "event": "Added", "timestamp": at(1)})
    page(door, 2, url="https://shop.example/cart")
    page(door, -1, url="https://shop.example/landing")

    session = Session.objects.get()
    assert (session.event_count, session.page_view_count) == (4, 3)
    assert session.first_page == "https://shop.example/landing"
    assert session.last_page == "https://shop.example/cart"


def test_merging_guests_joins_their_overlapping_sessions(door):
    page(door, 0, anon="phone-browser")
    door.post("track", {"userId": "u1", "event": "E", "timestamp": at(3)})
    assert Session.objects.count() == 2

    door.post("identify", {"userId": "u1", "anonymousId": "phone-browser", "timestamp": at(5)})

    session = Session.objects.get()
    assert session.event_count == 3


def test_idle_sessions_close(door):
    page(door, 0)
    page(door, 10)

    assert sessions_close_idle(now=START + timedelta(minutes=39)) == 0
    assert sessions_close_idle(now=START + timedelta(minutes=41)) == 1

    session = Session.objects.get()
    assert session.status == Session.Status.CLOSED
    assert session.duration == timedelta(minutes=10)


def test_close_sessions_command(door):
    page(door, 0)
    out = StringIO()

    call_command("close_sessions", "--now", at(60), stdout=out)

    assert out.getvalue().strip() == "closed 1 idle session(s)"
    assert Session.objects.get().status == Session.Status.CLOSED


def test_close_sessions_command_rejects_a_bad_time():
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="--now must be an ISO-8601 time"):
        call_command("close_sessions", "--now", "tomorrow")


def test_a_forced_close_seals_the_session(door):
    page(door, 0)
    session_force_close(Session.objects.get())

    page(door, 5)

    first, second = Session.objects.order_by("started_at")
    assert (first.status, first.force_closed, first.event_count) == ("CLOSED", True, 1)
    assert (second.status, second.event_count) == ("OPEN", 1)


def test_a_merge_that_joins_sessions_keeps_the_batchs_events_in_the_joined_session(door):
    """The merged guest's visit touches the start of a long visit of the survivor's, and the
    event that merges them lands at the end of that long visit: one session holds all."""
    for minute in (10, 20):
        page(door, minute, anon="phone")
    for minute in range(30, 90, 10):
        door.post("track", {"userId": "u1", "event": "E", "timestamp": at(minute)})
    assert len(spans()) == 2

    door.post("identify", {"userId": "u1", "anonymousId": "phone", "timestamp": at(90)})

    assert spans() == [(10, 90, 9)]
    assert set(Event.objects.values_list("session", flat=True)) == {Session.objects.get().pk}
