"""Processing: dedup, clock correction, crashes, poison requests, concurrent workers."""

from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import T0, drain_concurrently, track
from tracking import drain, services
from tracking.models import DedupKey, Event, FailedEvent, InboxRequest

from ..factories import InboxRequestFactory, SourceFactory


@pytest.mark.django_db
class TestDedup:
    def test_repeat_within_window_is_dropped(self, door, clock):
        door.post("track", track(messageId="m1"))
        clock.set(T0 + timedelta(hours=11, minutes=59))
        response = door.post("track", track(messageId="m1", event="Again"))

        assert response.status_code == 200
        assert list(Event.objects.values_list("name", flat=True)) == ["Played"]

    def test_repeat_after_window_is_a_new_event(self, door, clock):
        door.post("track", track(messageId="m1"))
        clock.set(T0 + timedelta(hours=12, seconds=1))
        door.post("track", track(messageId="m1", event="Again"))

        assert sorted(Event.objects.values_list("name", flat=True)) == ["Again", "Played"]
        # The window starts again from the second one.
        clock.set(T0 + timedelta(hours=13))
        door.post("track", track(messageId="m1", event="Third"))
        assert Event.objects.count() == 2

    def test_window_is_per_source(self, door, clock):
        door.source.dedup_window = timedelta(minutes=5)
        door.source.save()
        door.post("track", track(messageId="m1"))
        clock.set(T0 + timedelta(minutes=6))
        door.post("track", track(messageId="m1"))

        assert Event.objects.count() == 2

    def test_repeats_inside_one_batch_keep_the_first(self, door):
        batch = [track(messageId="m", event="First"), track(messageId="m", event="Second")]
        door.post("batch", {"batch": batch})

        assert list(Event.objects.values_list("name", flat=True)) == ["First"]

    def test_dedup_is_per_workspace(self, door):
        other = SourceFactory()
        door.post("track", track(messageId="shared"))
        door.post("track", track(messageId="shared"), key=other.write_key)
        same_workspace = SourceFactory(workspace=door.source.workspace)
        door.post("track", track(messageId="shared"), key=same_workspace.write_key)

        assert Event.objects.count() == 2

    def test_purge_forgets_expired_keys_only(self, door, clock):
        door.post("track", track(messageId="old"))
        clock.set(T0 + timedelta(hours=6))
        door.post("track", track(messageId="new"))

        assert services.dedup_keys_purge(now=T0 + timedelta(hours=13)) == 1
        assert list(DedupKey.objects.values_list("message_id", flat=True)) == ["new"]


@pytest.mark.django_db
class TestClock:
    def test_skew_is_corrected_from_sent_at(self, door, clock):
        # The device clock runs 2 hours behind: it says it sent at 10:00:05.
        door.post(
            "track",
            track(timestamp="2026-03-01T10:00:00Z", sentAt="2026-03-01T10:00:05Z"),
        )

        event = Event.objects.get()
        assert event.timestamp == T0 - timedelta(seconds=5)
        assert event.original_timestamp == datetime(2026, 3, 1, 10, tzinfo=UTC)
        assert event.sent_at == datetime(2026, 3, 1, 10, 0, 5, tzinfo=UTC)
        assert event.received_at == T0
        assert not event.timestamp_clamped

    def test_batch_sent_at_applies_to_its_messages(self, door, clock):
        door.post(
            "batch",
            {"batch": [track(timestamp="2026-03-01T13:00:00Z")], "sentAt": "2026-03-01T13:00:10Z"},
        )
        assert Event.objects.get().timestamp == T0 - timedelta(seconds=10)

    def test_no_timestamp_means_received_at(self, door, clock):
        door.post("track", track())
        assert Event.objects.get().timestamp == T0

    def test_no_sent_at_keeps_the_timestamp(self, door, clock):
        door.post("track", track(timestamp="2025-12-24T18:00:00+02:00"))
        assert Event.objects.get().timestamp == datetime(2025, 12, 24, 16, tzinfo=UTC)

    def test_far_future_is_clamped_and_flagged(self, door, clock):
        door.post("track", track(timestamp="2026-03-05T00:00:00Z"))

        event = Event.objects.get()
        assert event.timestamp == T0
        assert event.timestamp_clamped


@pytest.mark.django_db
class TestFailures:
    def test_crash_mid_batch_rolls_back_and_rerun_stores_once(self, door, monkeypatch):
        monkeypatch.setattr(services, "inbox_drain", lambda **kwargs: services.DrainStats())
        door.post("batch", {"batch": [track(messageId=str(i)) for i in range(5)]})
        door.post("track", track(messageId="2"))
        monkeypatch.undo()

        def die(*args, **kwargs):
            raise KeyboardInterrupt  # the worker goes away after storing, before marking done

        monkeypatch.setattr(InboxRequest.objects, "filter", die)
        with pytest.raises(KeyboardInterrupt):
            services.inbox_process_batch(claim_size=10)
        monkeypatch.undo()
        assert Event.objects.count() == 0
        assert not DedupKey.objects.exists()
        assert InboxRequest.objects.filter(status="pending").count() == 2

        stats = services.inbox_drain()
        assert (stats.stored, stats.duplicates) == (5, 1)
        assert Event.objects.count() == 5
        assert services.inbox_drain().requests == 0

    def test_poison_request_does_not_block_the_others(self, door, monkeypatch):
        monkeypatch.setattr(services, "inbox_drain", lambda **kwargs: services.DrainStats())
        door.post("track", track(messageId="good-1"))
        door.post("track", track(messageId="poison"))
        door.post("track", track(messageId="good-2"))
        monkeypatch.undo()

        real_store = services.events_store

        def store(*, messages, **kwargs):
            if any(m.message_id == "poison" for m in messages):
                raise RuntimeError("cannot store this one")
            return real_store(messages=messages, **kwargs)

        monkeypatch.setattr(drain, "events_store", store)
        stats = services.inbox_drain()

        assert sorted(Event.objects.values_list("message_id", flat=True)) == ["good-1", "good-2"]
        assert stats.failed_requests == 1
        poisoned = InboxRequest.objects.get(status="failed")
        assert "cannot store this one" in poisoned.error
        assert InboxRequest.objects.filter(status="done").count() == 2

    def test_sweep_requeues_rows_left_behind(self, door, monkeypatch, clock):
        from tracking import tasks

        monkeypatch.setattr(tasks, "inbox_drain_enqueue", lambda: None)
        door.post("track", track())
        assert InboxRequest.objects.get().status == "pending"

        assert tasks.inbox_sweep() is False  # too young to be called lost
        clock.set(T0 + timedelta(minutes=1))
        assert tasks.inbox_sweep() is True
        assert Event.objects.count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_workers_store_every_event_exactly_once(source):
    """Two workers drain one inbox at once on PostgreSQL, with overlapping messageIds."""
    rows = [
        InboxRequestFactory.build(
            source=source,
            batch=[
                track(event="E", userId=f"u{i % 40}", messageId=f"m{(r * 10 + i) % 700}")
                for i in range(25)
            ],
        )
        for r in range(200)
    ]
    InboxRequest.objects.bulk_create(rows)
    expected_ids = {f"m{(r * 10 + i) % 700}" for r in range(200) for i in range(25)}
    results = drain_concurrently(claim_size=3)
    assert sum(r.requests for r in results) == 200
    stored = list(Event.objects.values_list("message_id", flat=True))
    assert len(stored) == len(set(stored)) == len(expected_ids)
    assert set(stored) == expected_ids
    assert not FailedEvent.objects.exists()
    assert not InboxRequest.objects.exclude(status="done").exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_one_drain_with_threads_stores_every_event_exactly_once(source, monkeypatch):
    """One worker's drain on several threads, over overlapping visitors and messageIds."""
    import threading

    names = set()
    loop = drain._drain_loop

    def noted(*args):
        names.add(threading.current_thread().name)
        return loop(*args)

    monkeypatch.setattr(drain, "_drain_loop", noted)
    rows = [
        InboxRequestFactory.build(
            source=source,
            batch=[
                {
                    "type": "track",
                    "event": "E",
                    "anonymousId": f"v{(r + i) % 60}",
                    "messageId": f"m{(r * 7 + i) % 900}",
                }
                for i in range(40)
            ],
        )
        for r in range(150)
    ]
    InboxRequest.objects.bulk_create(rows)
    expected_ids = {f"m{(r * 7 + i) % 900}" for r in range(150) for i in range(40)}

    stats = services.inbox_drain(claim_size=4, threads=3)

    assert len(names) == 3 and all(name.startswith("drain") for name in names)
    assert stats.requests == 150
    stored = list(Event.objects.values_list("message_id", flat=True))
    assert len(stored) == len(set(stored)) == len(expected_ids)
    assert not InboxRequest.objects.exclude(status="done").exists()
    # Every visitor is one guest, whichever thread met them first.
    owners = Event.objects.values("anonymous_id").distinct().count()
    assert owners == 60
    assert Event.objects.values("guest_id").distinct().count() == 60


@pytest.mark.django_db
def test_a_large_batch_stores_every_field_as_a_small_one_does(door):
    """Large batches take the bulk path (COPY on PostgreSQL); every column must survive it."""
    batch = []
    for n in range(120):
        visitor = f"anon-{n % 12}"
        message = {
            "type": "track",
            "messageId": f"m-{n}",
            "anonymousId": visitor,
            "event": "Product Viewed",
            "timestamp": (T0 + timedelta(seconds=n)).isoformat(),
            "properties": {"n": n, "nested": {"list": [1, "two", None]}, "text": "tab\there ü"},
            "context": {"ip": "203.0.113.9", "page": {"path": f"/p/{n}"}},
        }
        if n // 12 == 3:  # every visitor identifies once
            message |= {"type": "identify", "userId": f"user-{n % 12}", "traits": {"plan": "pro"}}
            message.pop("event")
        if n == 7:
            message["properties"] |= {"revenue": 12.5, "currency": "EUR"}
        batch.append(message)
    door.post("batch", {"batch": batch})
    door.post("track", track(messageId="small", properties={"n": -1}))

    events = {e.message_id: e for e in Event.objects.select_related("guest", "session")}
    assert len(events) == 121
    seventh = events["m-7"]
    assert seventh.properties == batch[7]["properties"]
    assert seventh.context["page"] == {"path": "/p/7"}
    assert str(seventh.revenue) == "12.5000" and seventh.currency == "EUR"
    assert seventh.ip == "203.0.113.9"
    assert seventh.timestamp == T0 + timedelta(seconds=7)
    assert events["m-36"].type == "identify" and events["m-36"].traits == {"plan": "pro"}
    # One guest per visitor, every event of a visitor in that guest's one session.
    for n in range(12):
        mine = [e for e in events.values() if e.anonymous_id == f"anon-{n}"]
        assert len({e.guest_id for e in mine}) == 1
        assert len({e.session_id for e in mine}) == 1
        assert mine[0].session.event_count == len(mine) == 10
        assert mine[0].guest.traits.get("plan") == "pro"
    assert Event.objects.order_by("pk").values_list("message_id", flat=True)[0] == "m-0"


@pytest.mark.django_db
def test_ids_with_quotes_backslashes_and_braces_resolve_and_dedup(door):
    odd = ['a"b', "back\\slash", "{brace},comma", "NULL", " spaced ", "ünï €"]
    batch = [
        {"type": "track", "event": "E", "messageId": value, "anonymousId": value} for value in odd
    ]
    door.post("batch", {"batch": batch * 2})
    door.post("batch", {"batch": batch})

    assert sorted(Event.objects.values_list("message_id", flat=True)) == sorted(odd)
    for value in odd:
        event = Event.objects.get(message_id=value)
        assert event.anonymous_id == value
        assert event.guest.identities.get(kind="anonymous_id").value == value
    door.post("track", {"event": "Again", "messageId": "fresh", "anonymousId": 'a"b'})
    assert (
        Event.objects.get(message_id="fresh").guest_id
        == Event.objects.get(message_id='a"b').guest_id
    )


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_keys_of_a_batch_that_rolled_back_stay_with_its_requests(source, monkeypatch):
    """A worker's drain commits its dedup keys ahead of the batch. When the batch then rolls
    back (a deadlock), its requests keep their keys: a copy of a message in another request
    is the duplicate, whichever request comes first in the next batch, and each id is stored
    once."""
    from django.db import OperationalError

    from config.lib.db import connection_apart_close

    earlier = InboxRequestFactory(source=source, batch=[track(messageId="a", event="Earlier")])
    later = InboxRequestFactory(
        source=source, batch=[track(messageId="a", event="Later"), track(messageId="b")]
    )
    InboxRequest.objects.filter(pk=earlier.pk).update(status="done")  # out of the first claim

    real_store = drain.events_store

    def deadlock(**kwargs):
        real_store(**kwargs)
        raise OperationalError("deadlock detected")

    monkeypatch.setattr(drain, "events_store", deadlock)
    try:
        assert services.inbox_process_batch(claim_size=10).retry_later == 1
    finally:
        connection_apart_close()  # this thread's second connection, which claimed the keys
    monkeypatch.undo()
    assert not Event.objects.exists()
    assert set(DedupKey.objects.values_list("message_id", "inbox_id")) == {
        ("a", later.pk),
        ("b", later.pk),
    }

    InboxRequest.objects.filter(pk=earlier.pk).update(status="pending")
    stats = services.inbox_drain(claim_size=10)

    assert (stats.stored, stats.duplicates) == (2, 1)
    assert sorted(Event.objects.values_list("message_id", "name")) == [
        ("a", "Later"),
        ("b", "Played"),
    ]
    assert not InboxRequest.objects.exclude(status="done").exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_request_that_fails_for_good_gives_its_keys_back(source, monkeypatch):
    """Its messages were never stored: a repeat of one later is a new event."""
    InboxRequestFactory(source=source, batch=[track(messageId="poison"), track(messageId="p2")])
    real_store = drain.events_store

    def store(*, messages, **kwargs):
        stored = real_store(messages=messages, **kwargs)
        if any(m.message_id == "poison" for m in messages):
            raise RuntimeError("cannot store this one")
        return stored

    monkeypatch.setattr(drain, "events_store", store)
    assert services.inbox_drain(claim_size=10).failed_requests == 1
    monkeypatch.undo()
    assert not DedupKey.objects.exists()

    InboxRequestFactory(source=source, batch=[track(messageId="poison")])
    assert services.inbox_drain(claim_size=10).stored == 1
    assert list(Event.objects.values_list("message_id", flat=True)) == ["poison"]
