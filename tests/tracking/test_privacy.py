"""Privacy: IP anonymisation per workspace, retention with the purge command and its task."""

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from profiles.models import Session
from tests.conftest import Door
from tracking import tasks
from tracking.messages import ip_anonymize
from tracking.models import DedupKey, Event, FailedEvent, InboxRequest

from ..factories import InboxRequestFactory, SourceFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("address", "stored"),
    [
        ("203.0.113.77", "203.0.113.0"),
        ("10.1.2.255", "10.1.2.0"),
        ("2001:db8:abcd:12:1:2:3:4", "2001:db8:abcd::"),
        ("2001:db8:abcd:ffff:ffff:ffff:ffff:ffff", "2001:db8:abcd::"),
        ("::ffff:198.51.100.9", "198.51.100.0"),
        (" 192.0.2.1 ", "192.0.2.0"),
        ("not an address", None),
        ("", None),
        (None, None),
    ],
)
def test_ip_anonymize(address, stored):
    assert ip_anonymize(address) == stored


def post_with_ips(door):
    door.post("track", {"userId": "u", "event": "Peer"}, REMOTE_ADDR="198.51.100.23")
    door.post(
        "track",
        {"userId": "u", "event": "V4", "context": {"ip": "203.0.113.77"}},
        REMOTE_ADDR="198.51.100.23",
    )
    door.post(
        "batch",
        {"batch": [{"type": "track", "userId": "u", "event": "V6"}]},
        REMOTE_ADDR="2001:db8:abcd:12:1:2:3:4",
    )


def stored_ips():
    return {
        name: (ip, context.get("ip"))
        for name, ip, context in Event.objects.values_list("name", "ip", "context")
    }


def test_anonymize_ip_zeroes_the_host_part_before_storage(door):
    door.source.workspace.anonymize_ip = True
    door.source.workspace.save()

    post_with_ips(door)

    assert stored_ips() == {
        "Peer": ("198.51.100.0", "198.51.100.0"),
        "V4": ("203.0.113.0", "203.0.113.0"),
        "V6": ("2001:db8:abcd::", "2001:db8:abcd::"),
    }
    assert set(InboxRequest.objects.values_list("ip", flat=True)) == {
        "198.51.100.0",
        "2001:db8:abcd::",
    }


def test_doors_that_store_at_once_anonymize_their_inbox_row_too(source, client):
    source.workspace.anonymize_ip = True
    source.workspace.save()

    answer = client.get(
        "/collect",
        {
            "portal_id": source.workspace.portal_id,
            "prop_id": source.prop_id,
            "ea": "view",
            "ec": "page",
            "uid": "u-1",
            "resp_type": "json",
        },
        REMOTE_ADDR="203.0.113.77",
    )

    assert answer.status_code == 200, answer.content
    assert list(InboxRequest.objects.values_list("ip", flat=True)) == ["203.0.113.0"]
    assert list(Event.objects.values_list("ip", flat=True)) == ["203.0.113.0"]


def test_addresses_are_kept_whole_by_default(door):
    post_with_ips(door)

    assert stored_ips() == {
        "Peer": ("198.51.100.23", "198.51.100.23"),
        "V4": ("203.0.113.77", "203.0.113.77"),
        "V6": ("2001:db8:abcd:12:1:2:3:4", "2001:db8:abcd:12:1:2:3:4"),
    }


# --- Retention --------------------------------------------------------------------------------

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock(monkeypatch):
    class Clock:
        now = NOW

    fake = Clock()
    monkeypatch.setattr(timezone, "now", lambda: fake.now)
    return fake


def fill(door, clock, *, days_ago: int, tag: str):
    clock.now = NOW - timedelta(days=days_ago)
    door.post("track", {"userId": f"{tag}-user", "event": f"{tag} event"})
    door.post("page", {"anonymousId": f"{tag}-anon", "name": f"{tag} page"})
    door.post("batch", {"batch": [{"type": "track", "userId": f"{tag}-user"}]})  # a failure
    clock.now = NOW


@pytest.fixture
def history(door, clock):
    """Old and recent data in a workspace keeping 30 days, and old data in one keeping all."""
    door.source.workspace.retention_days = 30
    door.source.workspace.save()
    fill(door, clock, days_ago=45, tag="old")
    fill(door, clock, days_ago=2, tag="new")

    forever = SourceFactory()
    door_forever = Door(door.client, door.capture, forever)
    fill(door_forever, clock, days_ago=400, tag="ancient")
    # A pending row is never purged, however old: it has not been processed yet.
    InboxRequestFactory(source=door.source, received_at=NOW - timedelta(days=90))
    return door.source.workspace


def names():
    return set(Event.objects.values_list("name", flat=True))


def test_purge_dry_run_counts_and_deletes_nothing(history):
    before = (Event.objects.count(), Session.objects.count(), FailedEvent.objects.count())
    out = StringIO()

    call_command("purge", "--dry-run", stdout=out)

    assert out.getvalue().splitlines()[:4] == [
        "would purge 2 events",
        "would purge 2 sessions",
        "would purge 1 failed events",
        "would purge 3 inbox requests",
    ]
    assert (Event.objects.count(), Session.objects.count(), FailedEvent.objects.count()) == before


def test_purge_deletes_what_the_window_passed_in_chunks(history):
    out = StringIO()

    call_command("purge", "--chunk-size", "1", stdout=out)

    assert "purged 2 events" in out.getvalue()
    assert names() == {"new event", "new page", "ancient event", "ancient page"}
    # The old guests' sessions held only old events; the recent ones and the kept
    # workspace's stay.
    assert Session.objects.filter(workspace=history).count() == 2
    assert Session.objects.exclude(workspace=history).count() == 2
    assert FailedEvent.objects.filter(workspace=history).count() == 1
    assert FailedEvent.objects.exclude(workspace=history).count() == 1
    assert InboxRequest.objects.filter(
        source__workspace=history, status=InboxRequest.Status.PENDING
    ).exists()
    assert (
        not InboxRequest.objects.filter(
            source__workspace=history, received_at__lt=NOW - timedelta(days=30)
        )
        .exclude(status=InboxRequest.Status.PENDING)
        .exists()
    )

    again = StringIO()
    call_command("purge", stdout=again)
    assert "purged 0 events" in again.getvalue()


def test_a_session_still_holding_a_recent_event_is_kept(door, clock):
    door.source.workspace.retention_days = 30
    door.source.workspace.save()
    door.source.workspace.session_timeout = timedelta(days=365)
    door.source.workspace.save()
    fill(door, clock, days_ago=45, tag="old")
    clock.now = NOW - timedelta(days=1)
    door.post("track", {"userId": "old-user", "event": "recent", "context": {"sessionId": "s"}})
    door.post(
        "track",
        {
            "userId": "old-user",
            "event": "old too",
            "context": {"sessionId": "s"},
            "timestamp": (NOW - timedelta(days=50)).isoformat(),
        },
    )
    clock.now = NOW

    call_command("purge", stdout=StringIO())

    assert "recent" in names() and "old too" not in names()
    assert Session.objects.filter(client_session_id="s").exists()


def test_purge_task_runs_daily_and_shares_the_service(history):
    schedule = settings.CELERY_BEAT_SCHEDULE["retention-purge"]
    assert schedule["task"] == "tracking.tasks.retention_purge"

    counts = tasks.retention_purge.delay().get()

    assert counts == {"events": 2, "sessions": 2, "failed_events": 1, "inbox_requests": 3}
    assert "old event" not in names()


def test_purge_also_forgets_expired_dedup_keys(door, clock):
    clock.now = NOW - timedelta(days=2)
    door.post("track", {"userId": "u", "event": "E", "messageId": "m1"})
    clock.now = NOW
    assert DedupKey.objects.count() == 1

    out = StringIO()
    call_command("purge", stdout=out)

    assert "purged 1 dedup keys" in out.getvalue()
    assert not DedupKey.objects.exists()
    assert Event.objects.count() == 1  # no retention set: events stay


def test_purge_refuses_a_bad_chunk_size():
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="chunk-size"):
        call_command("purge", "--chunk-size", "0")
