"""The embedded default runs production's periodic jobs in its own process."""

import os
import queue
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from config.lib.periodic import EmbeddedBeat, serving_development_server
from profiles.models import Session

pytestmark = pytest.mark.django_db


def test_the_embedded_beat_runs_every_production_job_and_closes_idle_sessions(door):
    door.post(
        "page",
        {"anonymousId": "a-1", "name": "Home", "timestamp": timezone.now() - timedelta(hours=3)},
    )
    assert Session.objects.get().status == Session.Status.OPEN
    beat = EmbeddedBeat()
    assert {job.name for job in beat.jobs} == set(settings.CELERY_BEAT_SCHEDULE)

    nap = beat.tick()  # just started: nothing is due yet
    assert Session.objects.get().status == Session.Status.OPEN
    assert 0 < nap <= 30

    ran = []
    for job in beat.jobs:
        job.last_run_at -= timedelta(days=2)
    original = beat._run
    beat._run = lambda job: (ran.append(job.name), original(job))
    beat.tick()

    assert sorted(ran) == sorted(settings.CELERY_BEAT_SCHEDULE)
    assert Session.objects.get().status == Session.Status.CLOSED
    ran.clear()
    beat.tick()
    assert ran == []


def test_only_the_serving_runserver_process_starts_it(monkeypatch):
    monkeypatch.delenv("RUN_MAIN", raising=False)
    assert serving_development_server(["manage.py", "runserver", "--noreload"])
    assert not serving_development_server(["manage.py", "runserver"])  # the reloader's parent
    assert not serving_development_server(["manage.py", "migrate"])
    monkeypatch.setenv("RUN_MAIN", "true")
    assert serving_development_server(["manage.py", "runserver"])


def start_runserver(tmp_path, **env) -> str:
    """Start ``make run``'s server, wait until it logs that it serves, and return its log."""
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", "127.0.0.1:0"],
        cwd=settings.BASE_DIR,
        env={
            "PATH": os.environ.get("PATH", ""),
            "DJANGO_SETTINGS_MODULE": "config.settings.local",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
            "PYTHONUNBUFFERED": "1",
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(
        target=lambda: [lines.put(line) for line in process.stdout], daemon=True
    ).start()
    seen = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                seen.append(lines.get(timeout=0.5))
            except queue.Empty:
                if process.poll() is not None:
                    break
                continue
            if "Quit the server with" in seen[-1]:
                break
        return "".join(seen)
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.skipif((settings.BASE_DIR / ".env").exists(), reason="a .env file sets more")
def test_make_run_runs_the_periodic_jobs_and_a_broker_leaves_them_to_beat(tmp_path):
    log = start_runserver(tmp_path)
    assert "Periodic jobs run in this process" in log, log
    assert "sessions-close-idle" in log

    log = start_runserver(tmp_path, CELERY_BROKER_URL="redis://127.0.0.1:6379/15")
    assert "Quit the server with" in log, log
    assert "Periodic jobs run in this process" not in log
