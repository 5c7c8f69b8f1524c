"""``manage.py import_events``: NDJSON backfill through the /v1 door's parser and the pipeline."""

import gzip
import io
import sys
from datetime import UTC, datetime, timedelta
from io import StringIO

import orjson
import pytest
from django.core.management import CommandError, call_command

from profiles.models import Guest, Identity, Session
from tests.conftest import T0, Door
from tracking import services
from tracking.models import DedupKey, Event, EventRollup, FailedEvent, FailedEventRollup

from ..factories import SourceFactory

pytestmark = pytest.mark.django_db

# Events of a year before the test's clock (T0): nothing here is recent.
DAY = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def exported(at: datetime, **fields) -> dict:
    """A message as Segment's export writes it: corrected timestamp, sentAt, receivedAt."""
    return {
        "type": "track",
        "event": "Order Completed",
        "anonymousId": "anon-1",
        "messageId": f"m-{at.timestamp():.0f}-{fields.get('event', '')}",
        "originalTimestamp": iso(at - timedelta(seconds=30)),
        "sentAt": iso(at + timedelta(seconds=5)),
        "timestamp": iso(at),
        "receivedAt": iso(at + timedelta(seconds=6)),
        "properties": {"revenue": 20, "currency": "EUR"},
        **fields,
    }


def ndjson(messages) -> bytes:
    return b"".join((m if isinstance(m, bytes) else orjson.dumps(m)) + b"\n" for m in messages)


def run(*args) -> str:
    out = StringIO()
    call_command("import_events", *args, "--quiet", stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.fixture
def import_file(tmp_path, source):
    """Writes messages to a file (gzipped with ``compress``) and imports it into ``source``."""

    def write(messages, *, name="export.ndjson", compress=False) -> str:
        path = tmp_path / name
        data = ndjson(messages)
        path.write_bytes(gzip.compress(data) if compress else data)
        return str(path)

    def run_file(path: str, *extra) -> str:
        return run(path, "--source", str(source.prop_id), *extra)

    write.run = run_file
    return write


class TestFiles:
    def test_plain_file_is_stored_with_its_times(self, import_file, source, clock):
        at = DAY
        path = import_file([exported(at), exported(at + timedelta(minutes=5), event="Again")])

        out = import_file.run(path)

        assert "2 line(s)" in out
        assert "stored      2 event(s)" in out
        assert "failed      0 line(s)" in out
        first = Event.objects.get(name="Order Completed")
        assert first.source == source
        assert first.timestamp == at
        assert first.original_timestamp == at - timedelta(seconds=30)
        assert first.sent_at == at + timedelta(seconds=5)
        assert first.received_at == at + timedelta(seconds=6)
        assert not first.timestamp_clamped
        assert first.revenue == 20 and first.currency == "EUR"
        assert first.door == "segment"
        assert first.channel == "WEB"  # the source's kind, as the live door does

    def test_gzip_is_recognised_by_content(self, import_file):
        messages = [exported(DAY + timedelta(minutes=i), event=f"E{i}") for i in range(3)]
        named = import_file(messages, name="export.ndjson.gz", compress=True)
        unnamed = import_file(
            [exported(DAY + timedelta(days=1), event="Other")], name="part-0001", compress=True
        )

        import_file.run(named)
        import_file.run(unnamed)

        assert sorted(Event.objects.values_list("name", flat=True)) == ["E0", "E1", "E2", "Other"]

    def test_several_files_and_standard_input(self, import_file, source, monkeypatch):
        first = import_file([exported(DAY, event="A")], name="a.ndjson")
        second = import_file([exported(DAY + timedelta(hours=1), event="B")], name="b.ndjson")
        stdin = io.TextIOWrapper(io.BufferedReader(io.BytesIO(ndjson([exported(DAY, event="C")]))))
        monkeypatch.setattr(sys, "stdin", stdin)

        out = run(first, second, "-", "--source", source.name)

        assert sorted(Event.objects.values_list("name", flat=True)) == ["A", "B", "C"]
        assert "3 files into" in out and "stored      3 event(s)" in out
        assert "standard input into" in out

    def test_a_large_file_goes_in_batches(self, import_file, source):
        # More than one batch, each large enough for the events COPY on PostgreSQL.
        messages = [
            exported(DAY + timedelta(seconds=i), event="Viewed", messageId=f"big-{i}")
            for i in range(1200)
        ]
        path = import_file(messages, compress=True)

        out = import_file.run(path, "--batch-size", "500")

        assert "stored      1,200 event(s)" in out
        assert Event.objects.filter(source=source).count() == 1200
        stored = Event.objects.get(message_id="big-700")
        assert stored.timestamp == DAY + timedelta(seconds=700)
        assert stored.properties == {"revenue": 20, "currency": "EUR"}


class TestTimes:
    def test_historic_events_are_neither_clamped_nor_made_fresh(self, import_file, clock):
        clock.set(T0)
        two_years = T0 - timedelta(days=730)
        only_timestamp = {"type": "page", "anonymousId": "a", "timestamp": iso(two_years)}
        path = import_file([only_timestamp])

        import_file.run(path)

        event = Event.objects.get()
        assert event.timestamp == two_years
        # Received when it happened, as far as anyone knows: not at the import.
        assert event.received_at == two_years
        assert not event.timestamp_clamped

    def test_original_timestamp_alone_is_corrected_with_its_own_sent_and_received(
        self, import_file
    ):
        line = {
            "type": "track",
            "event": "E",
            "userId": "u",
            "messageId": "skewed",
            "originalTimestamp": iso(DAY),  # the device's clock ran 10 minutes fast
            "sentAt": iso(DAY + timedelta(minutes=1)),
            "receivedAt": iso(DAY - timedelta(minutes=9)),
        }
        import_file.run(import_file([line]))

        event = Event.objects.get()
        assert event.timestamp == DAY - timedelta(minutes=10)
        assert event.original_timestamp == DAY

    def test_a_timestamp_far_past_its_received_at_is_clamped_as_live(self, import_file):
        line = exported(DAY, receivedAt=iso(DAY - timedelta(days=1)))
        import_file.run(import_file([line]))

        event = Event.objects.get()
        assert event.timestamp_clamped
        assert event.timestamp == DAY - timedelta(days=1)

    def test_a_message_without_any_time_fails_rather_than_looking_new(self, import_file):
        line = {"type": "track", "event": "E", "userId": "u", "messageId": "undated"}
        out = import_file.run(import_file([line]))

        assert Event.objects.count() == 0
        failed = FailedEvent.objects.get()
        assert failed.code == "missing_timestamp"
        assert "missing_timestamp x1" in out

    def test_sessions_follow_the_timestamps(self, import_file, clock):
        clock.set(T0)
        visit = [
            {"type": "page", "anonymousId": "v", "name": "/", "timestamp": iso(DAY)},
            {
                "type": "page",
                "anonymousId": "v",
                "name": "/a",
                "timestamp": iso(DAY + timedelta(minutes=20)),
            },
            # The next day: a session of its own.
            {
                "type": "page",
                "anonymousId": "v",
                "name": "/b",
                "timestamp": iso(DAY + timedelta(days=1)),
            },
            # Late in the file but early in time: it joins the first visit.
            {
                "type": "page",
                "anonymousId": "v",
                "name": "/c",
                "timestamp": iso(DAY + timedelta(minutes=40)),
            },
        ]
        import_file.run(import_file(visit), "--batch-size", "2")

        sessions = list(Session.objects.order_by("started_at"))
        assert [(s.started_at, s.ended_at, s.event_count) for s in sessions] == [
            (DAY, DAY + timedelta(minutes=40), 3),
            (DAY + timedelta(days=1), DAY + timedelta(days=1), 1),
        ]
        assert sessions[0].first_page == "/" and sessions[0].last_page == "/c"


class TestBadLines:
    def test_bad_lines_are_failed_events_with_file_line_and_reason(self, import_file, source):
        lines = [
            exported(DAY, event="Good"),
            b"{not json",
            {"type": "track", "userId": "u", "timestamp": iso(DAY)},  # no event name
            b"",
            {"type": "track", "event": "E", "timestamp": iso(DAY)},  # nobody
            b"[1, 2]",
            exported(DAY + timedelta(hours=1), event="Also good", writeKey="secret"),
            {"type": "track", "event": "E", "userId": "u", "timestamp": "yesterday"},
        ]
        path = import_file(lines)

        out = import_file.run(path)

        assert sorted(Event.objects.values_list("name", flat=True)) == ["Also good", "Good"]
        failed = {f.import_line: f for f in FailedEvent.objects.all()}
        assert {n: f.code for n, f in failed.items()} == {
            2: "invalid_json",
            3: "missing_event",
            5: "no_user_anon_id",
            6: "invalid_message",
            8: "invalid_timestamp",
        }
        assert all(f.import_file == path and f.source == source for f in failed.values())
        assert failed[2].payload == "{not json"
        assert failed[3].payload == {"type": "track", "userId": "u", "timestamp": iso(DAY)}
        assert failed[8].field == "timestamp"
        assert "8 line(s)" in out
        assert "blank       1 line(s) ignored" in out
        assert "failed      5 line(s) (5 new failed event(s), 0 recorded by an earlier run)" in out
        assert "invalid_json x1: the line is not valid JSON" in out
        assert "(line 5)" in out
        assert "secret" not in str(Event.objects.get(name="Also good").context)

    def test_an_oversize_line_fails_without_costing_the_others(self, import_file):
        huge = exported(DAY, properties={"blob": "x" * 40_000})
        path = import_file([huge, exported(DAY, event="Small")])

        import_file.run(path)

        assert list(Event.objects.values_list("name", flat=True)) == ["Small"]
        assert FailedEvent.objects.get().code == "message_too_large"


class TestRunningTwice:
    def lines(self):
        return [
            exported(DAY, event="With id"),
            # No messageId: one is made from the line's content.
            {"type": "track", "event": "No id", "userId": "u", "timestamp": iso(DAY)},
            # The same line again: a second event, with an id of its own.
            {"type": "track", "event": "No id", "userId": "u", "timestamp": iso(DAY)},
            b"broken",
        ]

    def test_the_same_file_twice_stores_nothing_twice(self, import_file):
        path = import_file(self.lines(), compress=True)
        import_file.run(path)
        events = sorted(Event.objects.values_list("message_id", flat=True))
        assert len(events) == 3
        made = [m for m in events if m.startswith("import-")]
        assert len(made) == 2 and made[0] != made[1]

        again = import_file.run(path)

        assert sorted(Event.objects.values_list("message_id", flat=True)) == events
        assert FailedEvent.objects.count() == 1
        assert "stored      0 event(s)" in again
        assert (
            "duplicates  3 skipped (messageId already stored: 3, repeated within a batch: 0)"
            in again
        )
        assert (
            "failed      1 line(s) (0 new failed event(s), 1 recorded by an earlier run)" in again
        )
        # The dashboard's counts too: the events' own hour, each event and bad line once.
        assert sorted(EventRollup.objects.values_list("hour", "name", "n")) == [
            (DAY, "No id", 2),
            (DAY, "With id", 1),
        ]
        assert FailedEventRollup.objects.get().n == 1

    def test_long_after_the_dedup_window_and_its_keys_are_gone(self, import_file, clock):
        path = import_file(self.lines())
        clock.set(T0)
        import_file.run(path)
        assert Event.objects.count() == 3

        clock.set(T0 + timedelta(days=30))
        services.dedup_keys_purge()
        assert not DedupKey.objects.exists()
        import_file.run(path)

        assert Event.objects.count() == 3
        assert FailedEvent.objects.count() == 1

    def test_a_message_that_first_came_live_is_not_imported_again(self, import_file, door, clock):
        clock.set(T0)
        door.post("track", {"userId": "u", "event": "Live", "messageId": "seen-live"})
        clock.set(T0 + timedelta(days=3))
        services.dedup_keys_purge()

        out = import_file.run(import_file([exported(DAY, messageId="seen-live")]))

        assert list(Event.objects.values_list("name", flat=True)) == ["Live"]
        assert "already stored: 1," in out

    def test_dedup_keys_count_their_window_from_the_import(self, import_file, source, clock):
        # Counted from a year-old receivedAt, the key would be expired at once and a second
        # copy stored at the same moment by another thread would win it too.
        clock.set(T0)
        import_file.run(import_file([exported(DAY, messageId="k")]))

        key = DedupKey.objects.get(message_id="k")
        assert key.expires_at == T0 + source.dedup_window
        assert Event.objects.get().received_at == DAY + timedelta(seconds=6)

    def test_repeats_inside_the_file_keep_the_first(self, import_file):
        path = import_file(
            [
                exported(DAY, event="First", messageId="x"),
                exported(DAY, event="Second", messageId="x"),
            ]
        )
        out = import_file.run(path)

        assert list(Event.objects.values_list("name", flat=True)) == ["First"]
        assert "repeated within a batch: 1)" in out


def guests_shape(workspace_id):
    """Each surviving guest's type and identities, and how many guests were merged away."""
    shape = sorted(
        (
            guest.guest_type,
            tuple(sorted(guest.identities.values_list("kind", "value"))),
            guest.events.count(),
        )
        for guest in Guest.objects.filter(workspace_id=workspace_id, merged_into=None)
    )
    merged = Guest.objects.filter(workspace_id=workspace_id).exclude(merged_into=None).count()
    return shape, merged


def test_guests_are_stitched_as_the_live_door_stitches_them(
    import_file, source, client, django_capture_on_commit_callbacks
):
    story = [
        {"type": "page", "anonymousId": "browser-1", "name": "/", "timestamp": iso(DAY)},
        {"type": "page", "anonymousId": "browser-2", "name": "/", "timestamp": iso(DAY)},
        {
            "type": "identify",
            "anonymousId": "browser-1",
            "userId": "ada",
            "traits": {"email": "Ada@Example.com", "firstName": "Ada"},
            "timestamp": iso(DAY + timedelta(minutes=1)),
        },
        {
            "type": "track",
            "anonymousId": "browser-2",
            "userId": "ada",
            "event": "Signed In",
            "timestamp": iso(DAY + timedelta(hours=3)),
        },
        {"type": "alias", "previousId": "old-ada", "userId": "ada", "timestamp": iso(DAY)},
        {"type": "track", "userId": "bob", "event": "E", "timestamp": iso(DAY)},
    ]
    story = [{**m, "messageId": f"s{i}"} for i, m in enumerate(story)]
    # One message a transaction, so that guests made earlier are merged as in live traffic.
    import_file.run(import_file(story), "--batch-size", "1")

    live = SourceFactory()
    door = Door(client, django_capture_on_commit_callbacks, live)
    for message in story:
        assert door.post("batch", {"batch": [message]}).status_code == 200

    imported = guests_shape(source.workspace_id)
    assert imported == guests_shape(live.workspace_id)
    shape, merged = imported
    assert merged == 1  # browser-2's guest, once the track named ada
    ada = Guest.objects.get(workspace=source.workspace, identities__value="ada")
    live_ada = Guest.objects.get(workspace=live.workspace, identities__value="ada")
    profile = ["guest_type", "email", "first_name", "first_seen", "last_seen", "traits"]
    assert [getattr(ada, f) for f in profile] == [getattr(live_ada, f) for f in profile]
    assert ada.first_name == "Ada"
    # Seen when the events happened, not when they were imported.
    assert (ada.first_seen, ada.last_seen) == (DAY, DAY + timedelta(hours=3))
    assert Identity.objects.filter(workspace=source.workspace, kind="email").get().guest == ada


class TestArguments:
    def test_no_source(self, import_file):
        path = import_file([exported(DAY)])
        with pytest.raises(CommandError, match="--source or --write-key"):
            run(path)

    def test_unknown_source(self, import_file, source):
        path = import_file([exported(DAY)])
        with pytest.raises(CommandError, match="no source with prop_id or name 'Nope'"):
            run(path, "--source", "Nope")
        with pytest.raises(CommandError, match="no source with prop_id or name '99999'"):
            run(path, "--source", "99999")
        with pytest.raises(CommandError, match="in workspace 'Elsewhere'"):
            run(path, "--source", source.name, "--workspace", "Elsewhere")
        with pytest.raises(CommandError, match="no active source has that write key"):
            run(path, "--write-key", "wrong")
        assert Event.objects.count() == 0

    def test_by_write_key_and_by_name_in_a_workspace(self, import_file, source):
        SourceFactory(name=source.name)  # the same name in another workspace
        path = import_file([exported(DAY)])
        with pytest.raises(CommandError, match="several workspaces have a source named"):
            run(path, "--source", source.name)

        run(path, "--source", source.name, "--workspace", source.workspace.name)
        run(path, "--write-key", source.write_key)
        run(path, "--source", source.name, "--workspace", str(source.workspace.portal_id))

        assert Event.objects.get().source == source

    def test_inactive_source(self, import_file, source):
        source.is_active = False
        source.save()
        with pytest.raises(CommandError, match="inactive"):
            run(import_file([exported(DAY)]), "--source", str(source.prop_id))

    def test_missing_file_stops_before_anything_is_imported(self, import_file, source):
        path = import_file([exported(DAY)])
        with pytest.raises(CommandError, match="missing.ndjson: no such file"):
            run(path, "missing.ndjson", "--source", str(source.prop_id))
        assert Event.objects.count() == 0

    def test_bad_batch_size(self, import_file, source):
        with pytest.raises(CommandError, match="--batch-size must be at least 1"):
            run(import_file([]), "--source", str(source.prop_id), "--batch-size", "0")

    def test_damaged_gzip_keeps_what_came_before(self, import_file, source, tmp_path):
        messages = [exported(DAY + timedelta(seconds=i), messageId=f"d{i}") for i in range(50)]
        whole = gzip.compress(ndjson(messages))
        path = tmp_path / "damaged.gz"
        path.write_bytes(whole[: len(whole) * 2 // 3])

        with pytest.raises(CommandError, match="cannot read past line"):
            run(str(path), "--source", str(source.prop_id), "--batch-size", "10")
        assert 0 < Event.objects.count() < 50


def test_the_admin_shows_where_a_failed_line_was(import_file, admin_client):
    path = import_file([exported(DAY), b"{oops"])
    import_file.run(path)
    failed = FailedEvent.objects.get()

    page = admin_client.get(f"/admin/tracking/failedevent/{failed.pk}/change/")

    assert page.status_code == 200
    text = page.content.decode()
    assert path in text and "Import line" in text and ">2<" in text.replace(" ", "")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_threads_store_every_line_once(tmp_path):
    """Outside a transaction on PostgreSQL, batches are stored side by side (as in production);
    visitors recur across batches, so the threads meet on the same guests."""
    source = SourceFactory()
    messages = [
        {
            "type": "page" if i % 3 else "identify",
            "anonymousId": f"visitor-{i % 40}",
            **({"userId": f"user-{i % 40}"} if i % 3 == 0 else {}),
            "name": "/",
            "messageId": f"t{i}",
            "timestamp": iso(DAY + timedelta(seconds=i)),
        }
        for i in range(1500)
    ]
    path = tmp_path / "threads.ndjson"
    path.write_bytes(ndjson(messages))
    args = [str(path), "--source", str(source.prop_id), "--batch-size", "100", "--threads", "3"]

    first = run(*args)
    again = run(*args)

    assert "stored      1,500 event(s)" in first
    assert "stored      0 event(s)" in again
    assert Event.objects.filter(source=source).count() == 1500
    assert Guest.objects.filter(workspace=source.workspace, merged_into=None).count() == 40
    # A visitor comes back every 40 seconds: one session, whatever thread stored its events.
    assert Session.objects.filter(workspace=source.workspace).count() == 40


def test_a_fixed_and_replayed_line_keeps_its_times_and_its_id(import_file):
    line = {
        "type": "track",
        "userId": "u",
        "timestamp": iso(DAY),
        "sentAt": iso(DAY + timedelta(seconds=2)),
        "receivedAt": iso(DAY + timedelta(seconds=3)),
    }  # no event name, no messageId
    path = import_file([line])
    import_file.run(path)
    failed = FailedEvent.objects.get()
    assert failed.code == "missing_event"

    services.failed_event_replay_edited(failed=failed, payload={**line, "event": "Fixed"})
    call_command("process_inbox", stdout=StringIO())

    event = Event.objects.get()
    # As imported: not corrected against the time of the replay.
    assert (event.timestamp, event.received_at) == (DAY, DAY + timedelta(seconds=3))
    assert event.message_id == failed.import_key
    # The file again: the line still fails, and is not recorded twice.
    import_file.run(path)
    assert FailedEvent.objects.count() == 1 and Event.objects.count() == 1


def test_new_keys_never_start_with_a_dash(monkeypatch):
    # A key starting with "-" reads as an option on a command line: --write-key -x… fails.
    from tracking import models

    drawn = iter(["-starts-with-a-dash", "_fine-key"])
    monkeypatch.setattr(models.secrets, "token_urlsafe", lambda size: next(drawn))

    assert models.write_key_new() == "_fine-key"
