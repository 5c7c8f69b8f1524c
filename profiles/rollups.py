"""Daily guest counts kept by the pipeline (new, returning and identified guests per day),
and rebuilding them, with tracking's rollups, from the stored events."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from config.lib.db import counts_upsert, on_postgres, rows_insert_new, rows_insert_new_then
from tracking.messages import Message

from .models import Guest, GuestDay, GuestRollup

EPOCH = date(1970, 1, 1)


def guests_count(*, messages: list[Message], guests: list[Guest]) -> None:
    """Count each guest of the batch once per day (UTC) it was active on.

    The guest-days the batch adds (``INSERT … ON CONFLICT DO NOTHING RETURNING``) are the
    guests' first activity of those days: each counts as new when the guest was first seen
    that day and as returning otherwise, and as identified when the guest is a customer.
    """
    by_pk = {guest.pk: guest for guest in guests}
    # Days as whole days since the epoch while collecting, cheaper than dates.
    seen = {(m.guest_id, int(m.timestamp.timestamp() // 86400), m.workspace_id) for m in messages}
    if not seen:
        return
    days = {(guest, EPOCH + timedelta(days=day), ws) for guest, day, ws in seen}
    if on_postgres():
        _guests_count_pg(days)
        return
    added = rows_insert_new(
        GuestDay._meta.db_table,
        ["guest_id", "day", "workspace_id"],
        ["bigint", "date", "bigint"],
        sorted(days),
        conflict="guest_id, day",
        returning="guest_id, day, workspace_id",
    )
    counts: dict[tuple[int, date], list[int]] = {}
    for guest_id, day, workspace_id in added:
        if isinstance(day, str):  # SQLite returns the text it stored
            day = date.fromisoformat(day)
        guest = by_pk.get(guest_id)
        entry = counts.setdefault((workspace_id, day), [0, 0, 0])
        first_day = guest.first_seen.astimezone(UTC).date() if guest else None
        entry[0 if first_day is None or first_day >= day else 1] += 1
        if guest is not None and guest.guest_type == Guest.Type.CUSTOMER:
            entry[2] += 1
    table = GuestRollup._meta.db_table
    counts_upsert(
        table,
        ["workspace_id", "day", "new_guests", "returning_guests", "identified_guests"],
        ["bigint", "date", "bigint", "bigint", "bigint"],
        [(*key, *entry) for key, entry in sorted(counts.items())],
        conflict="workspace_id, day",
        assign=(
            f"new_guests = {table}.new_guests + excluded.new_guests, "
            f"returning_guests = {table}.returning_guests + excluded.returning_guests, "
            f"identified_guests = {table}.identified_guests + excluded.identified_guests"
        ),
    )


def _guests_count_pg(days) -> None:
    """The same in one statement: the new guest-days, joined to their guests, counted."""
    table = GuestRollup._meta.db_table
    rows_insert_new_then(
        GuestDay._meta.db_table,
        ["guest_id", "day", "workspace_id"],
        ["bigint", "date", "bigint"],
        sorted(days),
        conflict="guest_id, day",
        returning="guest_id, day, workspace_id",
        then=(
            f"INSERT INTO {table} "  # noqa: S608
            "(workspace_id, day, new_guests, returning_guests, identified_guests) "
            "SELECT a.workspace_id, a.day, "
            "count(*) FILTER (WHERE (g.first_seen AT TIME ZONE 'UTC')::date >= a.day), "
            "count(*) FILTER (WHERE (g.first_seen AT TIME ZONE 'UTC')::date < a.day), "
            "count(*) FILTER (WHERE g.guest_type = 'customer') "
            f"FROM added a JOIN {Guest._meta.db_table} g ON g.id = a.guest_id "
            "GROUP BY a.workspace_id, a.day ORDER BY a.workspace_id, a.day "
            "ON CONFLICT (workspace_id, day) DO UPDATE SET "
            f"new_guests = {table}.new_guests + excluded.new_guests, "
            f"returning_guests = {table}.returning_guests + excluded.returning_guests, "
            f"identified_guests = {table}.identified_guests + excluded.identified_guests"
        ),
    )


def guest_days_purge(*, now: datetime | None = None) -> int:
    """Forget guest-days older than ``GuestRollup.DAYS_KEPT`` (the daily counts stay)."""
    cutoff = (now or timezone.now()).date() - timedelta(days=GuestRollup.DAYS_KEPT)
    deleted, _ = GuestDay.objects.filter(day__lt=cutoff).delete()
    return deleted


def guest_rollups_rebuild(*, workspace_ids: list[int]) -> None:
    """Recount the guest-days and daily guest counts of the workspaces from their events."""
    from tracking.models import Event

    events = Event._meta.db_table
    guests = Guest._meta.db_table
    days = GuestDay._meta.db_table
    rollups = GuestRollup._meta.db_table
    day = "(e.timestamp AT TIME ZONE 'UTC')::date" if on_postgres() else "date(e.timestamp)"
    first = "(g.first_seen AT TIME ZONE 'UTC')::date" if on_postgres() else "date(g.first_seen)"
    marks = ", ".join(["%s"] * len(workspace_ids))
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {days} WHERE workspace_id IN ({marks})", workspace_ids)  # noqa: S608
        cursor.execute(f"DELETE FROM {rollups} WHERE workspace_id IN ({marks})", workspace_ids)  # noqa: S608
        cursor.execute(
            f"INSERT INTO {days} (guest_id, day, workspace_id) "  # noqa: S608
            f"SELECT DISTINCT e.guest_id, {day}, e.workspace_id FROM {events} e "
            f"WHERE e.workspace_id IN ({marks})",
            workspace_ids,
        )
        cursor.execute(
            f"INSERT INTO {rollups} "  # noqa: S608
            "(workspace_id, day, new_guests, returning_guests, identified_guests) "
            f"SELECT d.workspace_id, d.day, "
            f"sum(CASE WHEN {first} >= d.day THEN 1 ELSE 0 END), "
            f"sum(CASE WHEN {first} >= d.day THEN 0 ELSE 1 END), "
            f"sum(CASE WHEN g.guest_type = 'customer' THEN 1 ELSE 0 END) "
            f"FROM {days} d JOIN {guests} g ON g.id = d.guest_id "
            f"WHERE d.workspace_id IN ({marks}) GROUP BY d.workspace_id, d.day",
            workspace_ids,
        )
