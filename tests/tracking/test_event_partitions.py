"""Events partitioned by month on PostgreSQL: the schema, the pruned last-7-days query, moving
an installation's events into their months, and retention dropping whole months."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from config.lib import partitions
from config.lib.partitions import month_add, month_start
from tests.conftest import ON_POSTGRES, track
from tracking import event_partitions
from tracking.models import Event
from tracking.services import retention_purge

pytestmark = pytest.mark.django_db
postgres = pytest.mark.postgres

TABLE = "tracking_event"


def names() -> set[str]:
    return {p.name for p in partitions.partitions(TABLE)}


def month(offset: int) -> datetime:
    return month_add(month_start(timezone.now()), offset)


def send(door, *stamps: datetime, prefix: str = "m") -> None:
    batch = [
        track(messageId=f"{prefix}-{i}", timestamp=stamp.isoformat())
        for i, stamp in enumerate(stamps)
    ]
    assert door.post("batch", {"batch": batch}).status_code == 200


def where(event_id: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tableoid::regclass::text FROM tracking_event WHERE id = %s", [event_id]
        )
        return cursor.fetchone()[0]


def touched(sql: str) -> tuple[list[str], str]:
    """The partitions a query's plan reads, and the plan."""
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (COSTS OFF) {sql}")
        plan = "\n".join(row[0] for row in cursor.fetchall())
    words = set(plan.replace("(", " ").replace(")", " ").split())
    return sorted(names() & words), plan


@postgres
def test_the_table_is_partitioned_by_month_with_a_default_and_months_ahead():
    assert event_partitions.events_partitioned()
    expected = {partitions.partition_name(TABLE, month(k)) for k in range(0, 4)}
    assert expected <= names()
    assert partitions.default_name(TABLE) in names()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT array_agg(a.attname ORDER BY k.pos) FROM pg_index x "
            "CROSS JOIN unnest(x.indkey) WITH ORDINALITY k(attnum, pos) "
            "JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum "
            "WHERE x.indrelid = %s::regclass AND x.indisprimary",
            [TABLE],
        )
        assert cursor.fetchone()[0] == ["id", "workspace_id", "timestamp"]


@postgres
def test_events_land_in_their_month_and_outliers_in_the_default(door):
    now = timezone.now()
    send(door, now - timedelta(minutes=5), datetime(1999, 5, 1, tzinfo=UTC))
    recent, old = Event.objects.order_by("timestamp").reverse()
    assert where(recent.pk) == partitions.partition_name(TABLE, month_start(recent.timestamp))
    assert where(old.pk) == partitions.default_name(TABLE)
    # Found by id alone, as the admin and the API do.
    assert Event.objects.get(pk=old.pk).timestamp.year == 1999


@postgres
def test_the_admin_last_7_days_list_reads_only_the_months_it_spans(admin_client, door, capsys):
    now = timezone.now()
    send(door, now - timedelta(days=2), now - timedelta(days=40), now - timedelta(days=400))
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get("/admin/tracking/event/?within=7d")
    assert response.status_code == 200
    # The admin's own EXPLAIN (its estimated count) is looked at as the query it explains.
    listed = [
        q["sql"].split(") ", 1)[1] if q["sql"].startswith("EXPLAIN") else q["sql"]
        for q in queries.captured_queries
        if 'FROM "tracking_event"' in q["sql"] and '"timestamp" >=' in q["sql"]
    ]
    assert listed, "the list queried no events by time"
    needed = {
        partitions.partition_name(TABLE, month_start(now - timedelta(days=7))),
        partitions.partition_name(TABLE, month_start(now)),
        partitions.partition_name(TABLE, month_start(now + timedelta(hours=1))),
    }
    for sql in listed:
        read, plan = touched(sql)
        with capsys.disabled():
            print(f"\n{sql}\n{plan}")
        assert set(read) <= needed, plan
        assert partitions.default_name(TABLE) not in read, plan
    assert b"2 days ago" in response.content or response.content.count(b"<tr") >= 2


@postgres
def test_an_installations_events_move_into_their_months_resumably(door, monkeypatch):
    """Events the default partition holds (an installation from before partitions) move into
    their months; an interrupted run goes on where it stopped, and nothing is lost."""
    # Months without partitions: their events go to the default partition.
    first, second = month(-14), month(-13)
    send(door, first + timedelta(days=3), first + timedelta(days=9), second + timedelta(hours=5))
    send(door, datetime(1980, 1, 1, tzinfo=UTC), prefix="outlier")
    ids = set(Event.objects.values_list("pk", flat=True))
    default = partitions.default_name(TABLE)
    assert {where(pk) for pk in ids} == {default}

    real_move = event_partitions.month_move
    calls = []

    def interrupted(start):
        if calls:
            raise KeyboardInterrupt
        calls.append(start)
        return real_move(start)

    monkeypatch.setattr(event_partitions, "month_move", interrupted)
    with pytest.raises(KeyboardInterrupt):
        call_command("events_partition")
    assert partitions.partition_name(TABLE, first) in names()
    assert partitions.partition_name(TABLE, second) not in names()
    monkeypatch.setattr(event_partitions, "month_move", real_move)

    call_command("events_partition")
    assert partitions.partition_name(TABLE, second) in names()
    assert set(Event.objects.values_list("pk", flat=True)) == ids
    placed = {Event.objects.get(pk=pk).message_id: where(pk) for pk in ids}
    assert placed == {
        "m-0": partitions.partition_name(TABLE, first),
        "m-1": partitions.partition_name(TABLE, first),
        "m-2": partitions.partition_name(TABLE, second),
        "outlier-0": default,
    }
    # Run again: nothing left to move.
    assert event_partitions.months_to_move() == []


@postgres
def test_the_dry_run_lists_the_months(door, capsys):
    send(door, month(-20) + timedelta(days=1))
    call_command("events_partition", "--dry-run")
    out = capsys.readouterr().out
    assert f"{month(-20):%Y-%m}: 1 events would move" in out
    assert partitions.partition_name(TABLE, month(-20)) not in names()


@postgres
def test_retention_drops_months_every_workspace_has_passed(door, source):
    workspace = source.workspace
    workspace.retention_days = 60
    workspace.save()
    now = timezone.now()
    for offset in (-6, -5):
        event_partitions.month_move(month(offset))
    send(
        door, month(-6) + timedelta(days=2), month(-5) + timedelta(days=2), now - timedelta(days=1)
    )
    kept = Event.objects.get(timestamp__gte=now - timedelta(days=2)).pk

    counts = retention_purge(now=now)

    assert counts["events"] == 2
    assert partitions.partition_name(TABLE, month(-6)) not in names()
    assert partitions.partition_name(TABLE, month(-5)) not in names()
    assert list(Event.objects.values_list("pk", flat=True)) == [kept]


@postgres
def test_a_workspace_that_keeps_everything_keeps_the_months(door, source):
    from tests.factories import SourceFactory

    workspace = source.workspace
    workspace.retention_days = 60
    workspace.save()
    keeper = SourceFactory()  # its workspace keeps events forever
    event_partitions.month_move(month(-6))
    send(door, month(-6) + timedelta(days=2))
    from tests.conftest import Door

    Door(door.client, door.capture, keeper).post(
        "batch",
        {"batch": [track(messageId="k-1", timestamp=(month(-6) + timedelta(days=3)).isoformat())]},
    )

    counts = retention_purge(now=timezone.now())

    assert partitions.partition_name(TABLE, month(-6)) in names()
    assert counts["events"] == 1  # the chunked delete, for the workspace with a window
    assert list(Event.objects.values_list("message_id", flat=True)) == ["k-1"]


@pytest.mark.skipif(ON_POSTGRES, reason="the embedded default only")
def test_sqlite_keeps_one_plain_table():
    assert not event_partitions.events_partitioned()
    assert event_partitions.months_ahead() == []
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="not partitioned"):
        call_command("events_partition")
