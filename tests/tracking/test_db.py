"""Per-block PostgreSQL settings that do not leak into the rest of a transaction."""

import pytest
from django.db import DatabaseError, connection

from config.lib.db import setting_local

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def current(name):
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting(%s)", [name])
        return cursor.fetchone()[0]


def test_a_local_setting_does_not_outlive_its_block_inside_a_transaction():
    before = current("statement_timeout")
    with setting_local("statement_timeout", "150ms"):
        assert current("statement_timeout") == "150ms"
    assert current("statement_timeout") == before

    with (
        pytest.raises(DatabaseError),
        setting_local("statement_timeout", "10ms"),
        connection.cursor() as cursor,
    ):
        cursor.execute("SELECT pg_sleep(0.2)")
    assert current("statement_timeout") == before
