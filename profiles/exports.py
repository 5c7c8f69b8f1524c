"""Segment exports as CSV or NDJSON, streamed row by row with constant memory.

Rows are read in chunks of ``CHUNK`` memberships, each chunk one query starting after the last
membership of the one before (keyset paging), so an export of any size holds only a chunk at a
time, and no cursor outlives a query: it works the same behind PgBouncer in transaction mode.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator

import orjson
from django.db.models import OuterRef, QuerySet, Subquery

from config.lib.db import copy_out, on_postgres

from .models import Guest, Identity, Segment, SegmentMembership

COLUMNS = ["guest_ref", "guest_type", "email", "user_id", "first_seen", "last_seen", "entered_at"]
CHUNK = 2000
# A spreadsheet runs a cell that starts like a formula; such values get a leading apostrophe.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


ROW_FIELDS = (
    "guest__ref",
    "guest__guest_type",
    "guest__email",
    "user_id",
    "guest__first_seen",
    "guest__last_seen",
    "entered_at",
    "guest__traits",
    "pk",
)


def export_rows(segment: Segment) -> QuerySet:
    user_id = Identity.objects.filter(guest=OuterRef("guest_id"), kind=Identity.Kind.USER_ID)
    return (
        SegmentMembership.objects.filter(segment=segment, exited_at__isnull=True)
        .annotate(user_id=Subquery(user_id.order_by("pk").values("value")[:1]))
        .order_by("pk")
        .values_list(*ROW_FIELDS[:-1])
    )


def _chunks(segment: Segment) -> Iterator[tuple]:
    after = 0
    while True:
        chunk = list(export_rows(segment).filter(pk__gt=after).values_list(*ROW_FIELDS)[:CHUNK])
        yield from chunk
        if len(chunk) < CHUNK:
            return
        after = chunk[-1][-1]


def _records(segment: Segment, traits: list[str]) -> Iterator[list]:
    for *fields, guest_traits, _ in _chunks(segment):
        ref, guest_type, email, user_id, first_seen, last_seen, entered_at = fields
        yield [
            str(ref),
            guest_type,
            email,
            user_id or "",
            first_seen.isoformat(),
            last_seen.isoformat(),
            entered_at.isoformat(),
            *[(guest_traits or {}).get(name) for name in traits],
        ]


class _Line:
    def write(self, value: str) -> str:
        return value


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        value = orjson.dumps(value).decode()
    text = str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def export_csv(segment: Segment, *, traits: list[str]) -> Iterator[str]:
    """UTF-8 CSV (with a byte-order mark so spreadsheets detect the encoding), header first.

    On PostgreSQL the database writes the rows itself (``COPY … TO STDOUT``), streamed in
    chunks; elsewhere they are written here from a server-side cursor.
    """
    writer = csv.writer(_Line())
    yield "\ufeff" + writer.writerow([*COLUMNS, *[f"trait:{name}" for name in traits]])
    if on_postgres():
        yield from _postgres_csv(segment, traits)
        return
    for record in _records(segment, traits):
        yield writer.writerow([_cell(value) for value in record])


# A cell starting like a formula gets a leading apostrophe, as _cell() does.
FORMULA_GUARD = (
    "CASE WHEN left({x}, 1) IN ('=', '+', '-', '@', chr(9), chr(13)) "
    "THEN chr(39) || {x} ELSE {x} END"
)
ISO_UTC = "to_char({c} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')"


def _postgres_csv(segment: Segment, traits: list[str]) -> Iterator[str]:
    from psycopg import sql

    def guarded(expression: sql.Composable) -> sql.Composable:
        return sql.SQL(FORMULA_GUARD).format(x=expression)

    def stamp(column: str) -> sql.Composable:
        return sql.SQL(ISO_UTC).format(c=sql.SQL(column))

    user_id = sql.SQL(
        "(SELECT i.value FROM {identity} i WHERE i.guest_id = g.id AND i.kind = 'user_id' "
        "ORDER BY i.id LIMIT 1)"
    ).format(identity=sql.Identifier(Identity._meta.db_table))
    columns = [
        sql.SQL("g.ref::text"),
        sql.SQL("g.guest_type"),
        guarded(sql.SQL("g.email")),
        guarded(user_id),
        stamp("g.first_seen"),
        stamp("g.last_seen"),
        stamp("m.entered_at"),
        *[guarded(sql.SQL("(g.traits ->> {k})").format(k=sql.Literal(name))) for name in traits],
    ]
    query = sql.SQL(
        "COPY (SELECT {columns} FROM {membership} m JOIN {guest} g ON g.id = m.guest_id "
        "WHERE m.segment_id = {segment} AND m.exited_at IS NULL ORDER BY m.id) "
        "TO STDOUT WITH (FORMAT csv)"
    ).format(
        columns=sql.SQL(", ").join(columns),
        membership=sql.Identifier(SegmentMembership._meta.db_table),
        guest=sql.Identifier(Guest._meta.db_table),
        segment=sql.Literal(segment.pk),
    )
    yield from copy_out(query)


def export_ndjson(segment: Segment, *, traits: list[str]) -> Iterator[bytes]:
    """One JSON object per line."""
    names = [*COLUMNS, *[f"trait:{name}" for name in traits]]
    for record in _records(segment, traits):
        yield orjson.dumps(dict(zip(names, record, strict=True))) + b"\n"


def traits_param(value: str | None) -> list[str]:
    """``plan,country`` → ``["plan", "country"]`` (blank names dropped, at most 50)."""
    if not value:
        return []
    return [name.strip() for name in value.split(",") if name.strip()][:50]
