import base64
import gzip
import os
import socket
from datetime import UTC, datetime

import hypothesis
import orjson
import pytest
from django.conf import settings
from django.core.cache import cache

from experiences.flows import flow_definitions_forget
from tests.factories import SourceFactory, TokenFactory, UserFactory

# CI replays the same generated inputs on every run (HYPOTHESIS_PROFILE=ci), so that a red
# build always means a change broke something; local runs keep drawing new inputs, and what
# they find is a bug to fix and pin with a named case.
hypothesis.settings.register_profile("ci", derandomize=True, print_blob=True)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

ON_POSTGRES = settings.DATABASES["default"]["ENGINE"].endswith("postgresql")
REQUIRE_SERVICES = os.environ.get("FOOTPRINT_REQUIRE_SERVICES") == "1"
REDIS_URL = os.environ.get("FOOTPRINT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def redis_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


def pytest_collection_modifyitems(config, items):
    skip_pg = pytest.mark.skip(reason="needs PostgreSQL: run with DATABASE_URL=postgres://…")
    skip_redis = pytest.mark.skip(reason="needs Redis on 127.0.0.1:6379")
    redis_ok = None
    for item in items:
        if "postgres" in item.keywords and not ON_POSTGRES:
            item.add_marker(skip_pg)
        if "services" in item.keywords and not REQUIRE_SERVICES:
            if redis_ok is None:
                redis_ok = redis_reachable()
            if not redis_ok:
                item.add_marker(skip_redis)


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()
    flow_definitions_forget()
    yield
    cache.clear()
    flow_definitions_forget()


T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock(monkeypatch):
    """The server's clock, set by the test (starts at ``T0``)."""
    from django.utils import timezone

    class Clock:
        now = T0

        def set(self, value):
            self.now = value

    fake = Clock()
    monkeypatch.setattr(timezone, "now", lambda: fake.now)
    return fake


@pytest.fixture
def source(db):
    return SourceFactory()


def basic_auth(write_key: str) -> str:
    return "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()


def track(**fields) -> dict:
    """A track message as an SDK sends it (user-1, "Played"); ``fields`` add or replace keys."""
    return {"type": "track", "userId": "user-1", "event": "Played", **fields}


class Door:
    """Sends requests to the /v1 door the way an SDK does and runs what they queue.

    The ``door`` fixture is one for the ``source`` fixture; ``Door(client, capture, source)``
    sends for any other source.
    """

    def __init__(self, client, capture, source):
        self.client = client
        self.capture = capture
        self.source = source

    def post(self, route, payload, *, key=None, gzip_body=False, content_type=None, **headers):
        key = self.source.write_key if key is None else key
        body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        if gzip_body:
            body = gzip.compress(body)
            headers["HTTP_CONTENT_ENCODING"] = "gzip"
        if key:
            headers.setdefault("HTTP_AUTHORIZATION", basic_auth(key))
        with self.capture(execute=True):
            return self.client.generic(
                "POST",
                f"/v1/{route}",
                body,
                content_type=content_type or "application/json",
                **headers,
            )


@pytest.fixture
def door(client, django_capture_on_commit_callbacks, source):
    return Door(client, django_capture_on_commit_callbacks, source)


@pytest.fixture
def api(source):
    """A REST client logged in with a token as a member of the source's workspace."""
    from rest_framework.test import APIClient

    user = UserFactory(workspaces=[source.workspace])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {TokenFactory(user=user).key}")
    client.user = user
    return client


def drain_concurrently(*, workers: int = 2, claim_size: int) -> list:
    """Run ``inbox_drain`` in several threads started at the same moment; their stats."""
    import threading

    from django.db import connection

    from tracking import services

    barrier = threading.Barrier(workers)
    results = []

    def worker():
        barrier.wait()
        try:
            results.append(services.inbox_drain(claim_size=claim_size))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r.requests > 0 for r in results), "every worker should have claimed rows"
    return results
