"""The doors' lean request path: fewer middleware, the inbox row bound on the server, one
drain wake per interval. What the doors answer is tested by their own tests; these check the
path itself."""

import threading
import time

import orjson
import pytest
from django.test import Client

from tests.conftest import track
from tracking import tasks
from tracking.models import InboxRequest

pytestmark = pytest.mark.django_db


def test_a_door_is_served_without_session_login_or_messages(door):
    answer = door.post("track", track())

    assert answer.status_code == 200
    request = answer.wsgi_request
    assert not hasattr(request, "session")
    assert not hasattr(request, "user")
    assert not hasattr(request, "_messages")
    # What the rest of the list adds still comes with the answer.
    assert answer["X-Frame-Options"] == "DENY"
    assert answer["X-Content-Type-Options"] == "nosniff"


def test_other_pages_keep_every_middleware(client):
    answer = client.get("/admin/login/")

    assert answer.status_code == 200
    assert hasattr(answer.wsgi_request, "session")
    assert hasattr(answer.wsgi_request, "user")


def test_a_door_still_checks_the_host():
    answer = Client(HTTP_HOST="evil.example.com").post(
        "/v1/track", b"{}", content_type="application/json"
    )

    assert answer.status_code == 400
    assert InboxRequest.objects.count() == 0


def test_the_inbox_row_holds_the_body_as_sent(door, monkeypatch):
    monkeypatch.setattr(tasks, "inbox_drain_wake", lambda: None)  # left pending, body kept
    # Quotes, backslashes, non-ASCII and more than a page of it: bound, not quoted into SQL.
    body = orjson.dumps(track(properties={"blob": "ab" * 5000, "text": "é\\\"'\t%s$1"}))

    assert door.post("track", body).status_code == 200

    row = InboxRequest.objects.get()
    assert bytes(row.body) == body
    assert row.meta == {"route": "track"}
    assert row.source_id == door.source.pk
    assert row.status == InboxRequest.Status.PENDING


def test_deleting_a_source_deletes_its_requests(door, monkeypatch):
    # The inbox row's source has no constraint in the database; Django cascades the delete.
    monkeypatch.setattr(tasks, "inbox_drain_wake", lambda: None)
    assert door.post("track", track()).status_code == 200
    assert InboxRequest.objects.filter(source_id=door.source.pk).count() == 1

    door.source.delete()

    assert InboxRequest.objects.count() == 0


class Wakes:
    def __init__(self):
        self.times = []
        self.called = threading.Event()

    def __call__(self):
        self.times.append(time.monotonic())
        self.called.set()


@pytest.fixture
def wakes(settings, monkeypatch):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.FOOTPRINT = {**settings.FOOTPRINT, "DRAIN_WAKE_SECONDS": 0.2}
    monkeypatch.setattr(tasks, "_wake_last", float("-inf"))
    monkeypatch.setattr(tasks, "_wake_pending", False)
    recorded = Wakes()
    monkeypatch.setattr(tasks, "inbox_drain_enqueue", recorded)
    return recorded


def test_a_burst_wakes_the_drain_once_now_and_once_after_the_interval(wakes):
    started = time.monotonic()
    for _ in range(50):
        tasks.inbox_drain_wake()

    assert len(wakes.times) == 1  # the first request of a quiet spell, at once
    wakes.called.clear()
    assert wakes.called.wait(5)  # the other 49: one wake when the interval is over
    assert len(wakes.times) == 2
    assert wakes.times[1] - started >= 0.2
    time.sleep(0.3)
    assert len(wakes.times) == 2  # nothing more was due


def test_a_request_after_a_quiet_interval_wakes_the_drain_at_once(wakes):
    tasks.inbox_drain_wake()
    time.sleep(0.25)
    tasks.inbox_drain_wake()

    assert len(wakes.times) == 2


def test_without_a_broker_every_request_wakes_the_drain(wakes, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    for _ in range(3):
        tasks.inbox_drain_wake()

    assert len(wakes.times) == 3
