"""Celery beat's schedule, run inside the web process on the embedded default.

Without a broker (``make run``: SQLite, eager tasks) there is no ``celery beat`` to close idle
sessions, sweep the inbox, forget dedup keys, run segment schedules or apply retention. The
development server then runs the same ``CELERY_BEAT_SCHEDULE`` on one daemon thread, so the
embedded default behaves like production with no extra command.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from dataclasses import dataclass
from datetime import datetime

from celery import current_app
from celery.schedules import BaseSchedule, maybe_schedule
from django.conf import settings
from django.db import close_old_connections

logger = logging.getLogger(__name__)

# The longest the thread sleeps between checks, so a stop or a due job is never far off.
LONGEST_NAP_SECONDS = 30.0


@dataclass
class Job:
    name: str
    task: str
    schedule: BaseSchedule
    last_run_at: datetime


class EmbeddedBeat:
    """Runs the tasks of a beat schedule in this process when they fall due."""

    def __init__(self, schedule: dict | None = None) -> None:
        app = current_app
        entries = settings.CELERY_BEAT_SCHEDULE if schedule is None else schedule
        self.app = app
        self.jobs = []
        for name, entry in entries.items():
            every = maybe_schedule(entry["schedule"], app=app)
            # Like beat: a job first runs one period after start (crontabs at their time).
            self.jobs.append(Job(name, entry["task"], every, every.now()))
        self.stopped = threading.Event()

    def tick(self) -> float:
        """Run every job that is due; the seconds until the next one is."""
        nap = LONGEST_NAP_SECONDS
        for job in self.jobs:
            due, next_in = job.schedule.is_due(job.last_run_at)
            if due:
                job.last_run_at = job.schedule.now()
                self._run(job)
                due, next_in = job.schedule.is_due(job.last_run_at)
            nap = min(nap, max(next_in, 0.5))
        return nap

    def _run(self, job: Job) -> None:
        try:
            result = self.app.tasks[job.task].apply(throw=True)
            logger.debug("periodic job %s: %s", job.name, result.result)
        except Exception:
            logger.exception("periodic job %s failed; it runs again on its schedule", job.name)

    def run(self) -> None:
        while not self.stopped.is_set():
            nap = self.tick()
            # The thread's own connection, dropped when unusable or past CONN_MAX_AGE.
            close_old_connections()
            self.stopped.wait(nap)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="footprint-periodic", daemon=True)
        thread.start()
        logger.info(
            "Periodic jobs run in this process (no CELERY_BROKER_URL): %s",
            ", ".join(job.name for job in self.jobs),
        )
        return thread


def serving_development_server(argv: list[str] | None = None) -> bool:
    """True in the process of ``manage.py runserver`` that serves requests (under the
    autoreloader, the child it restarts; with ``--noreload``, the only one)."""
    argv = sys.argv if argv is None else argv
    if argv[1:2] != ["runserver"]:
        return False
    return os.environ.get("RUN_MAIN") == "true" or "--noreload" in argv


def embedded_beat_start_if_wanted() -> threading.Thread | None:
    if not settings.FOOTPRINT.get("EMBEDDED_BEAT") or not serving_development_server():
        return None
    return EmbeddedBeat().start()
