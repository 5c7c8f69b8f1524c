"""The pipeline's rollups and catalogue, through the doors: counts per hour, guests per day,
failures by reason, event names and keys with examples, and rebuilding them from events."""

from datetime import UTC, date, datetime

import pytest
from django.core.management import call_command

from profiles.models import GuestRollup
from tests.conftest import Door, track
from tracking.models import (
    CatalogueEvent,
    CatalogueKey,
    Event,
    EventRollup,
    FailedEventRollup,
)
from tracking.selectors import catalogue_event_names, catalogue_keys

from ..factories import SourceFactory

pytestmark = pytest.mark.django_db

MORNING = "2026-03-01T09:15:00Z"
NOON = "2026-03-01T12:40:00Z"
NEXT_DAY = "2026-03-02T08:00:00Z"


def rollup_rows(workspace_id):
    return sorted(
        EventRollup.objects.filter(workspace_id=workspace_id).values_list(
            "hour", "type", "name", "n"
        )
    )


def catalogue_state(workspace_id):
    return (
        sorted(
            CatalogueEvent.objects.filter(workspace_id=workspace_id).values_list(
                "name", "count", "first_seen", "last_seen"
            )
        ),
        sorted(
            CatalogueKey.objects.filter(workspace_id=workspace_id).values_list(
                "kind", "event_name", "key", "count", "first_seen", "last_seen"
            )
        ),
    )


def send_some(door):
    door.post(
        "batch",
        {
            "batch": [
                track(event="Order Completed", timestamp=MORNING, properties={"total": 30}),
                track(event="Order Completed", timestamp=NOON, properties={"total": 45.5}),
                track(
                    event="Order Completed",
                    userId="user-2",
                    timestamp=NOON,
                    properties={"total": 30, "coupon": "SPRING"},
                ),
                {"type": "page", "userId": "user-1", "name": "Home", "timestamp": NOON},
                {
                    "type": "identify",
                    "userId": "user-1",
                    "timestamp": NOON,
                    "traits": {"email": "ada@example.com", "plan": "pro", "age": 36},
                },
            ]
        },
    )


def test_events_are_counted_per_hour_type_and_name(door):
    send_some(door)
    ws = door.source.workspace_id
    nine, twelve = datetime(2026, 3, 1, 9, tzinfo=UTC), datetime(2026, 3, 1, 12, tzinfo=UTC)
    assert rollup_rows(ws) == [
        (nine, "track", "Order Completed", 1),
        (twelve, "identify", "", 1),
        (twelve, "page", "Home", 1),
        (twelve, "track", "Order Completed", 2),
    ]
    # A second request adds to the same rows.
    door.post("track", track(event="Order Completed", timestamp=NOON))
    assert (twelve, "track", "Order Completed", 3) in rollup_rows(ws)
    assert sum(n for *_, n in rollup_rows(ws)) == Event.objects.filter(workspace_id=ws).count()


def test_duplicates_are_not_counted(door):
    door.post("track", track(messageId="same", timestamp=NOON))
    door.post("track", track(messageId="same", timestamp=NOON))
    assert [n for *_, n in rollup_rows(door.source.workspace_id)] == [1]


def test_catalogue_names_keys_and_examples(door):
    send_some(door)
    door.post("track", track(event="Order Completed", timestamp=NEXT_DAY, properties={"total": 30}))
    ws = door.source.workspace_id
    assert catalogue_event_names(workspace_ids=[ws]) == ["Home", "Order Completed"]
    order = CatalogueEvent.objects.get(workspace_id=ws, name="Order Completed")
    assert order.count == 4
    assert order.first_seen == datetime(2026, 3, 1, 9, 15, tzinfo=UTC)
    assert order.last_seen == datetime(2026, 3, 2, 8, tzinfo=UTC)

    props = {k.key: k for k in catalogue_keys(workspace_ids=[ws], kind="property")}
    assert set(props) == {"total", "coupon"}
    assert props["total"].count == 4
    assert props["total"].examples == ["30", "45.5"]  # distinct, in the order first seen
    assert props["coupon"].examples == ["SPRING"]
    traits = {k.key: k for k in catalogue_keys(workspace_ids=[ws], kind="trait")}
    assert set(traits) == {"email", "plan", "age"}
    assert traits["email"].examples == []  # personal values are never examples
    assert traits["plan"].examples == ["pro"] and traits["plan"].event_name == ""
    assert catalogue_keys(workspace_ids=[ws], kind="property", event_name="Home") == []


def test_examples_stop_at_five(door):
    for value in ["a", "b", "a", "c", "d", "e", "f", "g"]:
        door.post("track", track(event="Search", properties={"q": value}))
    key = CatalogueKey.objects.get(key="q")
    assert key.examples == ["a", "b", "c", "d", "e"]
    assert key.count == 8


def test_catalogue_is_per_workspace(client, django_capture_on_commit_callbacks, door):
    other = Door(client, django_capture_on_commit_callbacks, SourceFactory())
    door.post("track", track(event="Mine"))
    other.post("track", track(event="Theirs", properties={"secret": "x"}))
    assert catalogue_event_names(workspace_ids=[door.source.workspace_id]) == ["Mine"]
    assert catalogue_keys(workspace_ids=[door.source.workspace_id], kind="property") == []
    with pytest.raises(ValueError, match="kind must be one of"):
        catalogue_keys(workspace_ids=[door.source.workspace_id], kind="traits")


def test_guests_per_day_new_returning_identified(door):
    send_some(door)  # user-1 and user-2 on day one, both new and identified (userId)
    door.post("track", track(timestamp=NEXT_DAY))  # user-1 returns
    door.post("track", track(timestamp=NEXT_DAY))  # counted once a day
    door.post("track", track(userId="", anonymousId="anon-9", timestamp=NEXT_DAY))
    rows = {
        r.day: (r.new_guests, r.returning_guests, r.identified_guests)
        for r in GuestRollup.objects.filter(workspace_id=door.source.workspace_id)
    }
    assert rows == {date(2026, 3, 1): (2, 0, 2), date(2026, 3, 2): (1, 1, 1)}


def test_failed_messages_are_counted_by_reason(door):
    door.post("batch", {"batch": [track(), {"type": "track", "userId": "u"}, {"type": "nope"}]})
    rows = FailedEventRollup.objects.filter(workspace_id=door.source.workspace_id)
    assert sum(r.n for r in rows) == 2
    assert len({r.code for r in rows}) >= 1


def test_rebuild_gives_what_the_pipeline_kept(door):
    send_some(door)
    door.post("track", track(event="Order Completed", timestamp=NEXT_DAY, properties={"total": 7}))
    door.post("batch", {"batch": [{"type": "track", "userId": "u"}]})
    ws = door.source.workspace_id
    kept = (
        rollup_rows(ws),
        catalogue_state(ws),
        sorted(
            GuestRollup.objects.filter(workspace_id=ws).values_list(
                "day", "new_guests", "returning_guests"
            )
        ),
        sorted(FailedEventRollup.objects.values_list("hour", "code", "n")),
    )
    examples = dict(CatalogueKey.objects.values_list("key", "examples"))
    EventRollup.objects.all().delete()
    CatalogueEvent.objects.all().delete()
    CatalogueKey.objects.all().delete()
    GuestRollup.objects.all().delete()
    FailedEventRollup.objects.all().delete()

    call_command("rollups_rebuild")

    rebuilt = (
        rollup_rows(ws),
        catalogue_state(ws),
        sorted(
            GuestRollup.objects.filter(workspace_id=ws).values_list(
                "day", "new_guests", "returning_guests"
            )
        ),
        sorted(FailedEventRollup.objects.values_list("hour", "code", "n")),
    )
    assert rebuilt == kept
    rebuilt_examples = dict(CatalogueKey.objects.values_list("key", "examples"))
    assert {k: sorted(v) for k, v in rebuilt_examples.items()} == {
        k: sorted(v) for k, v in examples.items()
    }


def test_rebuild_names_an_unknown_workspace():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no workspace named Nowhere"):
        call_command("rollups_rebuild", workspace=["Nowhere"])


def test_old_guest_days_are_forgotten_but_counts_stay(door, clock):
    from profiles.models import GuestDay
    from profiles.tasks import guest_days_purge

    door.post("track", track(timestamp="2025-01-01T10:00:00Z"))
    door.post("track", track(timestamp=MORNING))
    assert GuestDay.objects.count() == 2
    assert guest_days_purge() == 1
    assert list(GuestDay.objects.values_list("day", flat=True)) == [date(2026, 3, 1)]
    assert GuestRollup.objects.count() == 2
