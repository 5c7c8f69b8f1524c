"""Small PostgreSQL helpers shared by the apps."""

from __future__ import annotations

import hashlib
from contextlib import contextmanager

import orjson
from django.db import connection, transaction
from django.db.models import JSONField


@contextmanager
def setting_local(name: str, value: str):
    """A PostgreSQL setting for the statements inside the block only.

    ``SET LOCAL`` lasts until the end of the whole transaction, and releasing a savepoint keeps
    it, so when the block runs inside a longer transaction the old value is put back by hand
    (a failed block is rolled back to its savepoint, which undoes the setting anyway).
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting(%s)", [name])
        previous = cursor.fetchone()[0]
    with transaction.atomic(), connection.cursor() as cursor:
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
    if connection.vendor != "postgresql":
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
    scratch = f"_rows_{table}_" + hashlib.sha256(",".join(fields).encode()).hexdigest()[:8]
    definitions = ", ".join(f"{quote(f.column)} {f.db_type(connection)}" for f in columns)
    names = ", ".join(quote(f.column) for f in columns)
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {scratch} (id bigint, {definitions}) "
            "ON COMMIT DELETE ROWS"
        )
        cursor.execute(f"TRUNCATE {scratch}")
        with cursor.copy(f"COPY {scratch} (id, {names}) FROM STDIN") as copy:
            for obj in objects:
                copy.write_row([obj.pk, *row_values(obj, attnames, json_fields)])
        cursor.execute(
            f"UPDATE {table} t SET {assignments} FROM {scratch} s WHERE t.id = s.id"  # noqa: S608
        )
