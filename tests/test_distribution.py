"""Ready for Citus: the schema, read from PostgreSQL's catalog, matches the declared layout
(``config/distribution.py``): every key of a distributed table includes workspace_id, or is a
listed exception with its reason."""

import pytest
from django.db import connection

from config import distribution

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

APP_TABLES = r"^(tracking|profiles|experiences)_"


def catalog() -> tuple[dict[str, set[str]], dict[str, list[tuple[str, ...]]], dict]:
    """The app tables' columns, the columns of each primary key and unique index, and the
    foreign keys between app tables."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.relname, a.attname
            FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
            WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relname ~ %s
            """,
            [APP_TABLES],
        )
        columns: dict[str, set[str]] = {}
        for table, column in cursor.fetchall():
            columns.setdefault(table, set()).add(column)
        cursor.execute(
            """
            SELECT c.relname,
                   array(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY k(attnum, pos)
                         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
                         ORDER BY k.pos)
            FROM pg_index x
            JOIN pg_class c ON c.oid = x.indrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
            WHERE x.indisunique AND NOT c.relispartition AND c.relname ~ %s
            """,
            [APP_TABLES],
        )
        keys: dict[str, list[tuple[str, ...]]] = {}
        for table, key in cursor.fetchall():
            keys.setdefault(table, []).append(tuple(key))
        cursor.execute(
            """
            SELECT DISTINCT conrelid::regclass::text, confrelid::regclass::text
            FROM pg_constraint WHERE contype = 'f' AND conrelid::regclass::text ~ %s
            """,
            [APP_TABLES],
        )
        references = cursor.fetchall()
    return columns, keys, references


def violations() -> set[tuple[str, tuple[str, ...] | None]]:
    columns, keys, _ = catalog()
    found = set()
    for table in distribution.DISTRIBUTED:
        if "workspace_id" not in columns.get(table, ()):
            found.add((table, None))
            continue
        for key in keys.get(table, []):
            if "workspace_id" not in key:
                found.add((table, key))
    return found


def test_every_app_table_is_declared_once():
    columns, _, _ = catalog()
    declared = [*distribution.DISTRIBUTED, *distribution.REFERENCE, *distribution.LOCAL]
    assert len(declared) == len(set(declared)), "a table is declared twice"
    assert set(columns) - set(declared) == set(), "declare it in config/distribution.py"
    assert set(declared) - set(columns) == set(), "declared but not in the schema"


def test_every_key_of_a_distributed_table_includes_workspace_id_or_is_a_listed_exception():
    found = violations()
    unlisted = found - set(distribution.EXCEPTIONS)
    assert unlisted == set(), (
        "keys without workspace_id on distributed tables: include it, or list the key in "
        "config/distribution.py EXCEPTIONS with the reason"
    )
    stale = set(distribution.EXCEPTIONS) - found
    assert stale == set(), "no longer true: remove from EXCEPTIONS"


def test_workspace_tables_reach_reference_and_local_tables_only_by_their_keys():
    """A distributed table may point to a reference table (a source, a workspace) or to another
    distributed one; a reference table must never point to a distributed one, nor a distributed
    one to a local queue."""
    _, _, references = catalog()
    for table, target in references:
        if table in distribution.REFERENCE:
            assert target in distribution.REFERENCE, (table, target)
        if table in distribution.DISTRIBUTED:
            assert target not in distribution.LOCAL, (table, target)


def test_the_check_catches_a_key_without_workspace_id():
    """The check itself: a unique index on a distributed table's own column is found."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE UNIQUE INDEX probe_unique_name ON profiles_segment (name)")
    assert ("profiles_segment", ("name",)) in violations()
