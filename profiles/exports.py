"""Segment exports as CSV or NDJSON, streamed row by row with constant memory.

Rows come from one query read through a server-side cursor (``QuerySet.iterator``), so an
export of any size holds only a chunk of rows at a time.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator

import orjson
from django.db.models import OuterRef, QuerySet, Subquery

from .models import Identity, Segment, SegmentMembership

COLUMNS = ["guest_ref", "guest_type", "email", "user_id", "first_seen", "last_seen", "entered_at"]
CHUNK = 2000
# A spreadsheet runs a cell that starts like a formula; such values get a leading apostrophe.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def export_rows(segment: Segment) -> QuerySet:
    user_id = Identity.objects.filter(guest=OuterRef("guest_id"), kind=Identity.Kind.USER_ID)
    return (
        SegmentMembership.objects.filter(segment=segment, exited_at__isnull=True)
        .annotate(user_id=Subquery(user_id.order_by("pk").values("value")[:1]))
        .order_by("pk")
        .values_list(
            "guest__ref",
            "guest__guest_type",
            "guest__email",
            "user_id",
            "guest__first_seen",
            "guest__last_seen",
            "entered_at",
            "guest__traits",
        )
    )


def _records(segment: Segment, traits: list[str]) -> Iterator[list]:
    for *fields, guest_traits in export_rows(segment).iterator(chunk_size=CHUNK):
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
    """UTF-8 CSV (with a byte-order mark so spreadsheets detect the encoding), header first."""
    writer = csv.writer(_Line())
    yield "\ufeff" + writer.writerow([*COLUMNS, *[f"trait:{name}" for name in traits]])
    for record in _records(segment, traits):
        yield writer.writerow([_cell(value) for value in record])


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
