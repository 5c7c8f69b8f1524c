"""Monthly range partitions of a PostgreSQL table by a timestamp column (PostgreSQL only).

A partitioned table here has one partition per calendar month (UTC), named
``<table>_pYYYY_MM``, and a default partition ``<table>_default`` that takes every row no month
partition covers: months not created yet, and outliers (a clock in year 1 or 9999).

- ``table_partition`` turns a plain table into a partitioned one without copying a row: the old
  table becomes the default partition, so an installation's existing rows stay where they are
  and are moved into their months later, month by month (``month_ensure``), by a resumable
  command.
- ``month_ensure`` makes one month's partition. Rows of that month already in the default
  partition are moved into it in the same transaction (PostgreSQL refuses to attach a range
  that the default partition holds rows of), under a lock that makes concurrent writers of the
  default partition wait for it.
- ``months_drop`` drops whole months that end before a cutoff.

Only the statements live here; the apps say which table, column and cutoff.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import connection, transaction


@dataclass(frozen=True)
class Partition:
    name: str
    start: datetime | None  # None: the default partition
    end: datetime | None


def month_start(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def month_add(start: datetime, months: int) -> datetime:
    index = start.year * 12 + start.month - 1 + months
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def partition_name(table: str, start: datetime) -> str:
    return f"{table}_p{start.year:04d}_{start.month:02d}"


def default_name(table: str) -> str:
    return f"{table}_default"


def is_partitioned(table: str) -> bool:
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind = 'p' FROM pg_class WHERE oid = to_regclass(%s)", [table])
        row = cursor.fetchone()
    return bool(row and row[0])


def partitions(table: str) -> list[Partition]:
    """The table's partitions, months in order, the default partition last."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT',
                   substring(pg_get_expr(c.relpartbound, c.oid) FROM 'FROM \\(''([^'']+)''\\)'),
                   substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \\(''([^'']+)''\\)')
            FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = to_regclass(%s)
            """,
            [table],
        )
        rows = cursor.fetchall()
    found = []
    for name, is_default, start, end in rows:
        if is_default:
            found.append(Partition(name, None, None))
        else:
            found.append(Partition(name, _bound(start), _bound(end)))
    return sorted(
        found, key=lambda p: (p.start is None, p.start or datetime.min.replace(tzinfo=UTC))
    )


def _bound(text: str) -> datetime:
    # PostgreSQL writes a bound in the session's time zone, e.g. '2026-12-01 00:00:00+00'.
    if text[-3] in "+-" and text[-3:].replace("+", "").replace("-", "").isdigit():
        text += ":00"
    return datetime.fromisoformat(text).astimezone(UTC)


def table_partition(table: str, column: str, primary_key: list[str]) -> None:
    """Make ``table`` partitioned by ``column``, keeping its rows in its default partition.

    The new parent has the same columns, defaults (the id sequence moves to it), indexes (same
    names; the old table's become its partitions' and are not rebuilt), foreign keys, and the
    primary key ``primary_key``, which must hold ``column``. Runs inside a migration's
    transaction.
    """
    default = default_name(table)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index "
            "WHERE indrelid = %s::regclass AND NOT indisprimary",
            [table],
        )
        indexes = cursor.fetchall()
        cursor.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = %s::regclass AND contype IN ('f', 'c')",
            [table],
        )
        constraints = cursor.fetchall()
        cursor.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'p'",
            [table],
        )
        (primary,) = cursor.fetchone()
        cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
        (sequence,) = cursor.fetchone()
        cursor.execute(
            "SELECT attidentity <> '' FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attname = 'id'",
            [table],
        )
        (identity,) = cursor.fetchone()

        cursor.execute(f'ALTER TABLE "{table}" RENAME TO "{default}"')
        cursor.execute(f'ALTER TABLE "{default}" DROP CONSTRAINT "{primary}"')
        for name, _ in indexes:
            cursor.execute(f'ALTER INDEX "{name}" RENAME TO "{(name + "_d")[:63]}"')
        next_id = 1
        if sequence:
            cursor.execute(f"SELECT last_value + 1 FROM {sequence}")  # noqa: S608
            (next_id,) = cursor.fetchone()
            if identity:
                # A partition may not have an identity column: the parent draws the ids.
                cursor.execute(f'ALTER TABLE "{default}" ALTER COLUMN id DROP IDENTITY')
            else:
                cursor.execute(f'ALTER TABLE "{default}" ALTER COLUMN id DROP DEFAULT')
                cursor.execute(f"DROP SEQUENCE {sequence}")
        cursor.execute(
            f'CREATE TABLE "{table}" (LIKE "{default}" INCLUDING DEFAULTS INCLUDING STORAGE) '
            f'PARTITION BY RANGE ("{column}")'
        )
        cursor.execute(f'CREATE SEQUENCE "{table}_id_seq" OWNED BY "{table}".id START {next_id}')
        cursor.execute(
            f"ALTER TABLE \"{table}\" ALTER COLUMN id SET DEFAULT nextval('{table}_id_seq')"
        )
        key = ", ".join(f'"{c}"' for c in primary_key)
        cursor.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT "{primary}" PRIMARY KEY ({key})')
        for _, definition in indexes:
            cursor.execute(definition)
        for name, definition in constraints:
            cursor.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {definition}')
        cursor.execute(f'ALTER TABLE "{table}" ATTACH PARTITION "{default}" DEFAULT')


def month_ensure(table: str, column: str, start: datetime) -> int:
    """Make the partition of the month starting at ``start`` unless it exists; the rows moved
    into it from the default partition."""
    name = partition_name(table, start)
    default = default_name(table)
    end = month_add(start, 1)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [name])
        if cursor.fetchone()[0]:
            return 0
        # Writers into the default partition wait until the month is attached.
        cursor.execute(f'LOCK TABLE "{default}" IN SHARE ROW EXCLUSIVE MODE')
        cursor.execute(
            f'CREATE TABLE "{name}" (LIKE "{table}" INCLUDING DEFAULTS INCLUDING STORAGE)'
        )
        cursor.execute(
            f'WITH moved AS (DELETE FROM "{default}" WHERE "{column}" >= %s AND "{column}" < %s '  # noqa: S608
            f'RETURNING *) INSERT INTO "{name}" SELECT * FROM moved',
            [start, end],
        )
        moved = cursor.rowcount
        # The constraint lets ATTACH skip its own scan of the new partition.
        cursor.execute(
            f'ALTER TABLE "{name}" ADD CONSTRAINT "{name}_range" '
            f'CHECK ("{column}" >= %s AND "{column}" < %s)',
            [start, end],
        )
        cursor.execute(
            f'ALTER TABLE "{table}" ATTACH PARTITION "{name}" FOR VALUES FROM (%s) TO (%s)',
            [start, end],
        )
        cursor.execute(f'ALTER TABLE "{name}" DROP CONSTRAINT "{name}_range"')
    return moved


def default_months(table: str, column: str, *, after: datetime, before: datetime) -> list:
    """The months between ``after`` and ``before`` that rows of the default partition fall in
    (one index probe per month found)."""
    default = default_name(table)
    months = []
    low = after
    with connection.cursor() as cursor:
        while True:
            cursor.execute(
                f'SELECT min("{column}") FROM "{default}" WHERE "{column}" >= %s '  # noqa: S608
                f'AND "{column}" < %s',
                [low, before],
            )
            (first,) = cursor.fetchone()
            if first is None:
                return months
            months.append(month_start(first))
            low = month_add(months[-1], 1)


def default_count(table: str, column: str, start: datetime) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            f'SELECT count(*) FROM "{default_name(table)}" '  # noqa: S608
            f'WHERE "{column}" >= %s AND "{column}" < %s',
            [start, month_add(start, 1)],
        )
        return cursor.fetchone()[0]


def months_drop(table: str, *, before: datetime, dry_run: bool = False) -> tuple[list[str], int]:
    """Drop the month partitions that end on or before ``before``; their names and row count."""
    dropped, rows = [], 0
    for partition in partitions(table):
        if partition.end is None or partition.end > before:
            continue
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f'SELECT count(*) FROM "{partition.name}"')  # noqa: S608
            rows += cursor.fetchone()[0]
            if not dry_run:
                # Foreign-key checks still deferred in this transaction (rows written earlier in
                # it) would forbid the drop: run them now, then defer again as Django does.
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
                cursor.execute(f'ALTER TABLE "{table}" DETACH PARTITION "{partition.name}"')
                cursor.execute(f'DROP TABLE "{partition.name}"')
                cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        dropped.append(partition.name)
    return dropped, rows


def default_count_all(table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT count(*) FROM "{default_name(table)}"')  # noqa: S608
        return cursor.fetchone()[0]
