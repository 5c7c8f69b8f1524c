"""The lean peer of the benchmark: what the same machine does with an accept door stripped bare.

A WSGI app that reads the request body, INSERTs it into one table with psycopg (autocommit, so
it is committed before the answer, as Footprint's inbox row is) and answers
``{"success":true}``. No auth, no checks, no framework. bench/ingest.py runs it under the same
gunicorn settings as Footprint and drives it with the same load generator in the same run.

    LEAN_PEER_DATABASE_URL=postgres://... gunicorn lean_peer:application  # from bench/
"""

from __future__ import annotations

import os
import threading

import psycopg

TABLE = "lean_peer_inbox"
DATABASE_URL = os.environ.get("LEAN_PEER_DATABASE_URL", "")
ANSWER = b'{"success":true}'
HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(ANSWER)))]

_local = threading.local()


def table_create(conn: psycopg.Connection) -> None:
    conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
    conn.execute(
        f"CREATE TABLE {TABLE} (id bigserial PRIMARY KEY, body bytea NOT NULL, "
        "received_at timestamptz NOT NULL DEFAULT now())"
    )


def _connection() -> psycopg.Connection:
    conn = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = _local.conn = psycopg.connect(DATABASE_URL, autocommit=True)
    return conn


def application(environ, start_response):
    if environ["REQUEST_METHOD"] == "POST":
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        _connection().execute(
            f"INSERT INTO {TABLE} (body) VALUES (%s)",  # noqa: S608 - our own name
            (body,),
        )
    start_response("200 OK", HEADERS)
    return [ANSWER]
