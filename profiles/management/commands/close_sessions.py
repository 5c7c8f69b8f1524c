from datetime import datetime

from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_datetime

from profiles.sessions import sessions_close_idle


class Command(BaseCommand):
    help = "Close the sessions that have been idle longer than their workspace's timeout."

    def add_arguments(self, parser):
        parser.add_argument(
            "--now", help="pretend it is this ISO-8601 time (for backfills); default: now"
        )

    def handle(self, *args, now: str | None, **options):
        moment: datetime | None = None
        if now:
            moment = parse_datetime(now)
            if moment is None or moment.tzinfo is None:
                raise CommandError(f"--now must be an ISO-8601 time with a zone, not {now!r}")
        closed = sessions_close_idle(now=moment)
        self.stdout.write(f"closed {closed} idle session(s)")
