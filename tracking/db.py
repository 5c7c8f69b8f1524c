"""Small PostgreSQL helpers shared by the apps."""

from __future__ import annotations

from contextlib import contextmanager

from django.db import connection, transaction


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
