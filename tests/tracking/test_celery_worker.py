"""The production topology end to end: the door publishes to Redis, a real Celery worker drains.

The rest of the suite runs tasks eagerly in-process. Here the test process plays the web tier
(publishing to Redis for real, sharing its cache with the worker for the coalescing key) and a
``celery worker`` subprocess on the test database does the processing.
"""

import ast
import logging
import os
import re
import subprocess
import sys
import time
from contextlib import contextmanager
from urllib.parse import quote

import pytest
import redis
from django.conf import settings as django_settings
from django.db import connection

from config.celery import app as celery_app
from tests.conftest import REDIS_URL, track
from tracking import tasks
from tracking.models import Event, InboxRequest

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.services,
    pytest.mark.django_db(transaction=True),
]

# Nothing listens on port 1: publishing there fails at once with "connection refused".
DEAD_BROKER_URL = "redis://127.0.0.1:1/0"
WAIT_SECONDS = 30


def worker_database_url() -> str:
    """The test database, as the worker subprocess must reach it."""
    db = connection.settings_dict
    password = f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else ""
    user = quote(db["USER"] or "postgres", safe="")
    return f"postgres://{user}{password}@127.0.0.1:{db['PORT'] or 5432}/{quote(db['NAME'])}"


@contextmanager
def celery_publishing_to(broker_url: str):
    """Make this process's Celery app publish to ``broker_url`` instead of running eagerly.

    Set on ``app.conf`` itself, whose own changes win over what it reads from Django settings;
    the app's connection pools, built once for the first broker used, are dropped as well.
    """
    conf = celery_app.conf
    overrides = {"task_always_eager": False, "broker_url": broker_url}
    conf.broker_url  # noqa: B018 - loads the configuration, so that conf.changes is the real one
    before = {key: conf.changes[key] for key in overrides if key in conf.changes}
    conf.update(overrides)
    _celery_pools_reset()
    try:
        yield
    finally:
        for key in overrides:
            conf.changes.pop(key, None)
        conf.update(before)
        _celery_pools_reset()


def _celery_pools_reset() -> None:
    # As Celery does after a fork (Celery._after_fork): the app looks its pools up again on next
    # use. Not closed: kombu keeps one pool per broker URL and hands it out again for that URL.
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


class Worker:
    def __init__(self, process: subprocess.Popen, log_path):
        self.process = process
        self.log_path = log_path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, condition, what: str) -> None:
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            if condition():
                return
            if self.process.poll() is not None:
                pytest.fail(f"the worker exited while waiting for {what}:\n{self.output()}")
            time.sleep(0.1)
        pytest.fail(f"no {what} after {WAIT_SECONDS} s; worker output:\n{self.output()}")

    def received(self, task_name: str) -> bool:
        return f"Task {task_name}[" in self.output()

    def results(self, task_name: str) -> list:
        """What each successful run of ``task_name`` returned, from the worker's log."""
        pattern = rf"Task {re.escape(task_name)}\[[0-9a-f-]+\] succeeded in [\d.]+s: (.*)$"
        return [ast.literal_eval(found) for found in re.findall(pattern, self.output(), re.M)]

    def drained(self) -> dict:
        runs = self.results("tracking.tasks.inbox_drain")
        return {key: sum(run[key] for run in runs) for key in ("requests", "stored")}


@pytest.fixture
def redis_db():
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def web(settings, redis_db):
    """This process as the web tier: it publishes to Redis and shares the worker's cache."""
    # tracking.tasks.inbox_drain_enqueue reads it to decide whether a failed publish raises.
    settings.CELERY_TASK_ALWAYS_EAGER = False
    # The coalescing key must be one key for the door and the worker, as CACHE_URL makes it.
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
    with celery_publishing_to(REDIS_URL):
        yield


@pytest.fixture
def worker(transactional_db, redis_db, tmp_path):
    """A ``celery worker`` on the ingest and default queues, against the test database."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DATABASE_URL": worker_database_url(),
        "CELERY_BROKER_URL": REDIS_URL,
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "CACHE_URL": REDIS_URL,
        "DEBUG": "0",
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
        # The sweep re-queues any pending row, however young, so a test need not wait 30 s.
        "FOOTPRINT_INBOX_SWEEP_AGE_SECONDS": "0",
    }
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "-Q",
                "ingest,default",
                "-P",
                "solo",
                "-c",
                "1",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-l",
                "info",
                "-n",
                f"footprint-test-{os.getpid()}@%h",
            ],
            cwd=django_settings.BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    worker = Worker(process, log_path)
    try:
        worker.wait_for(lambda: " ready." in worker.output(), "worker ready")
        yield worker
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        # Shown only when the test fails.
        print(f"--- celery worker output ---\n{worker.output()}")


def test_batches_go_through_redis_to_a_worker_and_each_event_is_stored_once(door, web, worker):
    # m0 repeats inside the first request, m4 across the two.
    first = [track(messageId=f"m{i}") for i in range(5)] + [track(messageId="m0")]
    second = [track(messageId="m4"), track(messageId="m5")]

    for batch in (first, second):
        response = door.post("batch", {"batch": batch})
        assert response.status_code == 200, response.content

    # However the two enqueues coalesced, the worker's drains claim each request once.
    worker.wait_for(lambda: worker.drained()["requests"] == 2, "drain of both requests")
    assert worker.drained() == {"requests": 2, "stored": 6}
    stored = sorted(Event.objects.values_list("message_id", flat=True))
    assert stored == ["m0", "m1", "m2", "m3", "m4", "m5"]
    assert list(InboxRequest.objects.values_list("status", flat=True)) == ["done", "done"]


def test_a_dead_broker_leaves_the_request_pending_for_the_sweep(door, web, worker, caplog):
    with (
        celery_publishing_to(DEAD_BROKER_URL),
        caplog.at_level(logging.WARNING, logger="tracking.tasks"),
    ):
        started = time.monotonic()
        response = door.post("batch", {"batch": [track(messageId="m1"), track(messageId="m2")]})
        answered_in = time.monotonic() - started

    assert response.status_code == 200, response.content
    assert response.json() == {"success": True}
    assert answered_in < 5, "the door waited on the dead broker"
    assert "could not queue inbox processing; the sweep will" in caplog.text
    # Had anything reached the broker, the idle worker would have taken it within this second.
    time.sleep(1)
    assert not worker.received("tracking.tasks.inbox_drain")
    assert InboxRequest.objects.get().status == InboxRequest.Status.PENDING
    assert not Event.objects.exists()

    # What beat sends every 30 s, once the broker is back.
    tasks.inbox_sweep.delay()

    worker.wait_for(lambda: worker.drained()["requests"] == 1, "drain queued by the sweep")
    assert worker.results("tracking.tasks.inbox_sweep") == [True]
    assert worker.drained() == {"requests": 1, "stored": 2}
    assert InboxRequest.objects.get().status == InboxRequest.Status.DONE
    assert sorted(Event.objects.values_list("message_id", flat=True)) == ["m1", "m2"]
