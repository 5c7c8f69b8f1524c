"""The one home of database-specific SQL: COPY, array binding, upserts, ``SET LOCAL``.

Footprint runs on PostgreSQL in production and on SQLite as the embedded default. What only
PostgreSQL can do fast (COPY, arrays bound as one parameter, ``unnest`` joins, settings per
transaction) lives here behind functions that do the plain thing on SQLite, so the apps ask
``on_postgres()`` as rarely as possible.
"""

from __future__ import annotations

import hashlib
import threading
from contextlib import contextmanager
from dataclasses import dataclass

import orjson
import psycopg
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.models import JSONField


def on_postgres() -> bool:
    return connection.vendor == "postgresql"


@contextmanager
def work_mem(size: str):
    """More memory for sorts and hashes of the statements inside (PostgreSQL; else nothing)."""
    if not on_postgres():
        yield
        return
    with setting_local("work_mem", size):
        yield


@contextmanager
def setting_local(name: str, value: str):
    """A PostgreSQL setting for the statements inside the block only.

    ``SET LOCAL`` lasts until the end of the whole transaction, and releasing a savepoint keeps
    it, so when the block runs inside a longer transaction the old value is put back by hand
    (a failed block is rolled back to its savepoint, which undoes the setting anyway).
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT current_setting(%s)", [name])
        previous = cursor.fetchone()[0]
        cursor.execute("SELECT set_config(%s, %s, true)", [name, value])
        yield
        cursor.execute("SELECT set_config(%s, %s, true)", [name, previous])


def pg_array(values) -> str:
    """A PostgreSQL array literal of ``values`` as text, to bind as one ``%s::<type>[]``.

    Binding a Python list makes psycopg quote every element in Python, which for thousands of
    elements costs more than the query; one string binds at once. Every element is quoted, so
    any text is safe (NUL never reaches here: the doors refuse it).
    """
    return (
        "{"
        + ",".join(
            "NULL"
            if value is None
            else '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
            for value in values
        )
        + "}"
    )


def row_values(obj, attnames: list[str], json_attnames: frozenset[str] | set[str]) -> list:
    """The values of ``obj``'s attributes, as bound or copied to PostgreSQL: JSON columns as
    JSON text (psycopg has no adapter for a bare dict or list), everything else as it is."""
    values = []
    for name in attnames:
        value = getattr(obj, name)
        if value is not None and name in json_attnames:
            value = orjson.dumps(value).decode()
        values.append(value)
    return values


# Below this many rows one plain statement beats a COPY's extra round trips.
COPY_FROM_ROWS = 50


def rows_update(objects: list, fields: list[str]) -> None:
    """Write ``fields`` of many model instances (all of one model) back to the database.

    Django's ``bulk_update`` builds one ``CASE WHEN`` per field and row, which is costly to
    compile and to bind for thousands of rows. On PostgreSQL the values go into a temporary
    table with one ``COPY`` and the rows change with one ``UPDATE … FROM``. The temporary
    table lives as long as the connection and is emptied at every commit.
    """
    if not objects:
        return
    model = type(objects[0])
    if not on_postgres():
        model.objects.bulk_update(objects, fields, batch_size=500)
        return
    meta = model._meta
    columns = [meta.get_field(name) for name in fields]
    attnames = [f.attname for f in columns]
    json_fields = {f.attname for f in columns if isinstance(f, JSONField)}
    quote = connection.ops.quote_name
    table = meta.db_table
    assignments = ", ".join(f"{quote(f.column)} = s.{quote(f.column)}" for f in columns)
    if len(objects) < COPY_FROM_ROWS:
        # One UPDATE … FROM (VALUES …): bulk_update's CASE expressions cost milliseconds of
        # Python per row to build, more than the statement takes to run.
        casts = ", ".join(f"%s::{f.db_type(connection)}" for f in columns)
        plain = ", ".join(["%s"] * len(columns))
        rows = ", ".join(
            f"(%s::bigint, {casts if index == 0 else plain})" for index in range(len(objects))
        )
        params: list = []
        for obj in objects:
            params += [obj.pk, *row_values(obj, attnames, json_fields)]
        names = ", ".join(quote(f.column) for f in columns)
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} t SET {assignments} FROM (VALUES {rows}) AS s(id, {names}) "  # noqa: S608
                "WHERE t.id = s.id",
                params,
            )
        return
    if not connection.in_atomic_block:
        # The scratch table empties at every commit: its statements must share one transaction
        # (and so, behind PgBouncer, one server connection).
        with transaction.atomic():
            rows_update(objects, fields)
        return
    scratch = f"_rows_{table}_" + hashlib.sha256(",".join(fields).encode()).hexdigest()[:8]
    definitions = ", ".join(f"{quote(f.column)} {f.db_type(connection)}" for f in columns)
    names = ", ".join(quote(f.column) for f in columns)
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {scratch} (id bigint, {definitions}) "
            "ON COMMIT DELETE ROWS"
        )
        cursor.execute(f"TRUNCATE {scratch}")
        rows_copy(
            scratch,
            f"id, {names}",
            ([obj.pk, *row_values(obj, attnames, json_fields)] for obj in objects),
            cursor=cursor,
        )
        cursor.execute(
            f"UPDATE {table} t SET {assignments} FROM {scratch} s WHERE t.id = s.id"  # noqa: S608
        )


# Advisory locks are taken on one of this many slots per purpose: a batch naming thousands of
# things holds at most this many locks (PostgreSQL's lock table is shared by all
# transactions), at the price of an unrelated name sometimes sharing a slot.
LOCK_SLOTS = 4096


def locks_take(purpose: int, names: list[str]) -> None:
    """Take a transaction-level advisory lock for each name (PostgreSQL; SQLite runs one writer
    at a time), all in one statement and in one global order, so that transactions naming the
    same things queue in that order instead of deadlocking. ``purpose`` keeps different uses'
    locks apart. Released at commit or rollback, so they suit PgBouncer's transaction mode."""
    if not names or not on_postgres():
        return
    slots = sorted(
        {
            int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big")
            % LOCK_SLOTS
            for name in names
        }
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_advisory_xact_lock(%s, k)) FROM unnest(%s::int[]) AS k",
            [purpose, pg_array(slots)],
        )


def arrays(rows) -> list[str]:
    """``rows`` as one array literal per column, to bind as ``unnest(%s::type[], …)``."""
    return [pg_array(column) for column in zip(*rows, strict=True)]


def rows_copy(table: str, columns: str, rows, *, cursor=None) -> None:
    """``COPY table (columns) FROM STDIN`` of ``rows`` (PostgreSQL only): many rows in one go,
    without quoting each value into SQL text."""
    if cursor is None:
        with connection.cursor() as own:
            rows_copy(table, columns, rows, cursor=own)
        return
    with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def row_insert(table: str, values: dict) -> int:
    """Insert one row in the caller's transaction (autocommit: committed on return) and return
    its id (PostgreSQL only).

    The values are bound on the server, ``bytes`` in binary: Django binds on the client, which
    writes a large ``bytea`` into the SQL text as hex escapes (twice its size) and builds the
    statement through the ORM on every call. JSON columns take JSON text. Errors are Django's
    (a lost database is its ``OperationalError``), and when queries are logged or execute
    wrappers installed the cursor is wrapped as Django wraps its own, so they see the statement.
    """
    columns = tuple(values)
    statement = _row_inserts.get((table, columns))
    if statement is None:
        quote = connection.ops.quote_name
        names = ", ".join(quote(name) for name in columns)
        placeholders = ", ".join(["%s"] * len(columns))
        sql = f"INSERT INTO {quote(table)} ({names}) VALUES ({placeholders})"  # noqa: S608
        statement = _row_inserts[(table, columns)] = sql + " RETURNING id"
    return _server_bound_row(statement, list(values.values()))[0]


def _server_bound_row(sql: str, params: list) -> tuple | None:
    """The first row of ``sql`` run on a psycopg cursor that binds on the server (PostgreSQL)."""
    db = connections[DEFAULT_DB_ALIAS]  # once: each use of the ``connection`` proxy looks it up
    with db.wrap_database_errors:
        db.ensure_connection()
    raw = psycopg.Cursor(db.connection)  # binds on the server, unlike Django's
    if db.queries_logged or db.execute_wrappers:
        wrap = db.make_debug_cursor if db.queries_logged else db.make_cursor
        with wrap(raw) as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()
    # What Django's cursor wrapper would do around it, without its layers of calls.
    db.validate_no_broken_transaction()
    with raw, db.wrap_database_errors:
        raw.execute(sql, params)
        return raw.fetchone()


_row_inserts: dict[tuple, str] = {}


def row_select(sql: str, params: list) -> tuple | None:
    """The first row ``sql`` selects, bound on the server on PostgreSQL as ``row_insert``
    binds: a read on a hot path pays no ORM statement building and no client-side quoting,
    and psycopg prepares it once it repeats on a connection (not when pooled). On SQLite,
    Django's cursor; pass datetimes through ``connection.ops.adapt_datetimefield_value``.
    JSON columns come back as text. It may be a data-modifying ``WITH``: outside a transaction
    it is committed on return."""
    if not on_postgres():
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()
    return _server_bound_row(sql, params)


def ids_reserve(table: str, count: int) -> list[int]:
    """``count`` ids from the table's id sequence, in one query (PostgreSQL only)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
            [table, count],
        )
        return [row[0] for row in cursor.fetchall()]


def copy_out(query):
    """The text a ``COPY (…) TO STDOUT`` query writes, streamed in chunks (PostgreSQL only).

    ``query`` is a psycopg ``sql.Composable``; the chunks are decoded as UTF-8, never split
    inside a character.
    """
    import codecs

    connection.ensure_connection()
    decoder = codecs.getincrementaldecoder("utf-8")()
    with connection.connection.cursor() as cursor, cursor.copy(query) as copy:
        for chunk in copy:
            yield decoder.decode(bytes(chunk))
    rest = decoder.decode(b"", final=True)
    if rest:
        yield rest


def texts_present(table: str, column: str, values, *, where: str, params: list) -> set[str]:
    """Which of the text ``values`` the table holds in ``column``, among its rows that match
    ``where`` (SQL over the table's own columns, with ``params``).

    On PostgreSQL the values are bound as one array (``= ANY``), in one statement, so an index
    on ``column`` answers for thousands of them at once; on SQLite, 500 a statement.
    """
    values = list(values)
    if not values:
        return set()
    found: set[str] = set()
    with connection.cursor() as cursor:
        if on_postgres():
            cursor.execute(
                f"SELECT {column} FROM {table} WHERE {where} AND {column} = ANY(%s::text[])",  # noqa: S608
                [*params, pg_array(values)],
            )
            return {row[0] for row in cursor.fetchall()}
        for start in range(0, len(values), 500):
            chunk = values[start : start + 500]
            marks = ", ".join(["%s"] * len(chunk))
            cursor.execute(
                f"SELECT {column} FROM {table} WHERE {where} AND {column} IN ({marks})",  # noqa: S608
                [*params, *chunk],
            )
            found.update(row[0] for row in cursor.fetchall())
    return found


def within_days(later: str, earlier: str) -> str:
    """SQL saying ``later`` is at most a bound number of days (``%s``) after ``earlier``."""
    if on_postgres():
        return f"{later} <= {earlier} + (%s * interval '1 day')"
    return f"julianday({later}) <= julianday({earlier}) + %s"


def keys_upsert_returning(
    table: str,
    columns: list[str],
    types: list[str],
    rows: list[tuple],
    *,
    conflict: str,
    assign: str,
    where: str,
    returning: str,
    apart: bool = False,
) -> list[tuple]:
    """``INSERT … ON CONFLICT (conflict) DO UPDATE SET assign WHERE where RETURNING returning``
    of ``rows``; what it returns is the rows that went in or were taken over.

    On PostgreSQL the rows are bound as one array per column (``unnest``), in one statement;
    on SQLite as plain VALUES, 500 rows a statement. ``assign`` and ``where`` name the new row
    as ``excluded``. With ``apart`` (PostgreSQL) the statement runs on this thread's second
    connection (``connection_apart``) and is committed on return, whatever transaction the
    thread's own connection has open.
    """
    tail = f"ON CONFLICT ({conflict}) DO UPDATE SET {assign} WHERE {where} RETURNING {returning}"
    if apart and rows:
        unnest = ", ".join(f"%s::{kind}[]" for kind in types)
        conn = connection_apart()
        # Errors as Django's (a lost database or a lock timeout is its OperationalError).
        with connection.wrap_database_errors, conn.transaction(), conn.cursor() as cursor:
            # It only waits on other such statements (short); a wait on a long transaction
            # that in turn waits on this thread's own would never end, so it gives up.
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", [APART_LOCK_TIMEOUT])
            cursor.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608
                f"SELECT * FROM unnest({unnest}) {tail}",
                arrays(rows),
            )
            return list(cursor.fetchall())
    return _insert(table, columns, types, rows, tail, returns=True)


# How long a statement on the second connection waits for a lock before it fails.
APART_LOCK_TIMEOUT = "5s"
_apart = threading.local()


def connection_apart() -> psycopg.Connection:
    """This thread's second connection to the default database (PostgreSQL), in autocommit:
    for a statement that must commit on its own while the thread's own connection holds a
    transaction open. Opened on first use; ``connection_apart_close`` closes it."""
    conn = getattr(_apart, "connection", None)
    if conn is None or conn.closed or conn.broken:
        conn = psycopg.connect(**connection.get_connection_params(), autocommit=True)
        _apart.connection = conn
    return conn


def connection_apart_close() -> None:
    conn = getattr(_apart, "connection", None)
    _apart.connection = None
    if conn is not None and not conn.closed:
        conn.close()


def rows_insert_new(
    table: str,
    columns: list[str],
    types: list[str],
    rows: list[tuple],
    *,
    conflict: str,
    returning: str,
) -> list[tuple]:
    """``INSERT … ON CONFLICT (conflict) DO NOTHING RETURNING returning``: the rows that were
    not there yet."""
    return _insert(
        table,
        columns,
        types,
        rows,
        f"ON CONFLICT ({conflict}) DO NOTHING RETURNING {returning}",
        returns=True,
    )


def counts_upsert(
    table: str,
    columns: list[str],
    types: list[str],
    rows: list[tuple],
    *,
    conflict: str,
    assign: str,
) -> None:
    """``INSERT … ON CONFLICT (conflict) DO UPDATE SET assign`` of ``rows``: counters that add
    up (``n = table.n + excluded.n``), in one statement on PostgreSQL.

    Pass the rows sorted by their conflict key, so that transactions upserting overlapping
    rows wait for each other rather than deadlock.
    """
    _insert(
        table,
        columns,
        types,
        rows,
        f"ON CONFLICT ({conflict}) DO UPDATE SET {assign}",
        returns=False,
    )


@dataclass
class Upsert:
    """One ``counts_upsert``, for ``counts_upsert_all``."""

    table: str
    columns: list[str]
    types: list[str]
    rows: list[tuple]
    conflict: str
    assign: str


def counts_upsert_all(upserts: list[Upsert]) -> None:
    """Several ``counts_upsert`` at once: one statement on PostgreSQL (each a data-modifying
    ``WITH``), so a one-message request pays one round trip for all its counters."""
    upserts = [u for u in upserts if u.rows]
    if not upserts:
        return
    if not on_postgres() or len(upserts) == 1:
        for u in upserts:
            counts_upsert(u.table, u.columns, u.types, u.rows, conflict=u.conflict, assign=u.assign)
        return
    parts, params = [], []
    for u in upserts:
        unnest = ", ".join(f"%s::{kind}[]" for kind in u.types)
        parts.append(
            f"INSERT INTO {u.table} ({', '.join(u.columns)}) SELECT * FROM unnest({unnest}) "  # noqa: S608
            f"ON CONFLICT ({u.conflict}) DO UPDATE SET {u.assign}"
        )
        params += arrays(u.rows)
    ctes = ", ".join(f"u{index} AS ({part})" for index, part in enumerate(parts[:-1]))
    with connection.cursor() as cursor:
        cursor.execute(f"WITH {ctes} {parts[-1]}", params)


def rows_insert_new_then(
    table: str,
    columns: list[str],
    types: list[str],
    rows: list[tuple],
    *,
    conflict: str,
    returning: str,
    then: str,
) -> None:
    """PostgreSQL only: ``WITH added AS (INSERT … ON CONFLICT DO NOTHING RETURNING …) then``,
    where the statement ``then`` reads the rows that went in as ``added``: one round trip."""
    unnest = ", ".join(f"%s::{kind}[]" for kind in types)
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH added AS (INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608
            f"SELECT * FROM unnest({unnest}) ON CONFLICT ({conflict}) DO NOTHING "
            f"RETURNING {returning}) {then}",
            arrays(rows),
        )


def _insert(
    table: str,
    columns: list[str],
    types: list[str],
    rows: list[tuple],
    tail: str,
    *,
    returns: bool,
) -> list[tuple]:
    if not rows:
        return []
    names = ", ".join(columns)
    out: list[tuple] = []
    with connection.cursor() as cursor:
        if on_postgres():
            unnest = ", ".join(f"%s::{kind}[]" for kind in types)
            cursor.execute(
                f"INSERT INTO {table} ({names}) SELECT * FROM unnest({unnest}) {tail}",  # noqa: S608
                arrays(rows),
            )
            return list(cursor.fetchall()) if returns else []
        adapt = connection.ops.adapt_datetimefield_value
        plain = [
            tuple(
                adapt(v)
                if kind == "timestamptz"
                else (v.isoformat() if kind == "date" and v is not None else v)
                for v, kind in zip(row, types, strict=True)
            )
            for row in rows
        ]
        one = "(" + ", ".join(["%s"] * len(columns)) + ")"
        # SQLite allows 32,766 parameters a statement.
        step = max(1, min(500, 30000 // len(columns)))
        for start in range(0, len(plain), step):
            chunk = plain[start : start + step]
            cursor.execute(
                f"INSERT INTO {table} ({names}) VALUES {', '.join([one] * len(chunk))} {tail}",  # noqa: S608
                [value for row in chunk for value in row],
            )
            if returns:
                out.extend(cursor.fetchall())
    return out


def sql_least(a: str, b: str) -> str:
    return f"LEAST({a}, {b})" if on_postgres() else f"min({a}, {b})"


def sql_greatest(a: str, b: str) -> str:
    return f"GREATEST({a}, {b})" if on_postgres() else f"max({a}, {b})"


def sql_json_list_merge(existing: str, new: str, *, limit: int) -> str:
    """SQL for the JSON list ``existing`` followed by the items of ``new`` it lacks, cut to
    ``limit`` items (kept as they are once full)."""
    if on_postgres():
        return (
            f"CASE WHEN jsonb_array_length({existing}) >= {limit} THEN {existing} ELSE "  # noqa: S608
            f"(SELECT coalesce(jsonb_agg(v ORDER BY o), '[]'::jsonb) FROM (SELECT v, min(o) AS o "
            f"FROM jsonb_array_elements({existing} || {new}) WITH ORDINALITY AS e(v, o) "
            f"GROUP BY v ORDER BY min(o) LIMIT {limit}) AS s) END"
        )
    return (
        f"CASE WHEN json_array_length({existing}) >= {limit} THEN {existing} ELSE "  # noqa: S608
        f"(SELECT json_group_array(v) FROM (SELECT value AS v, min(o) AS o FROM ("
        f"SELECT value, key AS o FROM json_each({existing}) UNION ALL "
        f"SELECT value, 1000000 + key FROM json_each({new})) GROUP BY value "
        f"ORDER BY min(o) LIMIT {limit})) END"
    )


def within_days_before(earlier: str, later: str) -> str:
    """SQL saying ``earlier`` is at most a bound number of days (``%s``) before ``later``."""
    if on_postgres():
        return f"{earlier} >= {later} - (%s * interval '1 day')"
    return f"julianday({earlier}) >= julianday({later}) - %s"


def day_of(column: str) -> str:
    """SQL for the UTC calendar day of a timestamp column (a date, or ISO text on SQLite)."""
    if on_postgres():
        return f"(({column}) AT TIME ZONE 'UTC')::date"
    return f"date({column})"


def json_text(column: str, *keys: str) -> str:
    """SQL for the text at ``column``'s nested ``keys`` (NULL when absent).

    The keys are the code's own constants (letters, digits, underscores), written into the
    SQL so that the same expression can be grouped by on both databases.
    """
    if not all(key.replace("_", "").isalnum() for key in keys):
        raise ValueError(f"JSON keys must be identifiers: {keys!r}")
    if on_postgres():
        return f"({column} #>> '{{{','.join(keys)}}}')"
    return f"json_extract({column}, '$.{'.'.join(keys)}')"
