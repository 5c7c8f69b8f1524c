from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from tracking import services
from tracking.models import DedupKey


class Command(BaseCommand):
    help = (
        "Purge what the workspaces' retention windows have passed (events, emptied sessions, "
        "failed events, processed inbox requests) and dedup keys past their window."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run", action="store_true", help="count what would go, delete nothing"
        )
        parser.add_argument(
            "--chunk-size",
            type=int,
            default=services.RETENTION_CHUNK,
            help="rows deleted per transaction",
        )

    def handle(self, *args, dry_run: bool, chunk_size: int, **options):
        if chunk_size < 1:
            raise CommandError("--chunk-size must be at least 1")
        counts = services.retention_purge(dry_run=dry_run, chunk_size=chunk_size)
        if dry_run:
            expired = DedupKey.objects.filter(expires_at__lte=timezone.now())
            counts["dedup_keys"] = expired.count()
        else:
            counts["dedup_keys"] = services.dedup_keys_purge()
        verb = "would purge" if dry_run else "purged"
        for kind, count in counts.items():
            self.stdout.write(f"{verb} {count} {kind.replace('_', ' ')}")
