from django.core.management.base import BaseCommand, CommandError

from tracking import services


class Command(BaseCommand):
    help = "Process every pending inbox request now, in this process, and say what was done."

    def add_arguments(self, parser):
        parser.add_argument("--claim-size", type=int, default=None, help="rows per transaction")

    def handle(self, *args, claim_size: int | None, **options):
        if claim_size is not None and claim_size < 1:
            raise CommandError("--claim-size must be at least 1")
        stats = services.inbox_drain(claim_size=claim_size)
        self.stdout.write(
            f"processed {stats.requests} request(s): stored {stats.stored} event(s), "
            f"dropped {stats.duplicates} duplicate(s) and {stats.suppressed} of erased guests, "
            f"rejected {stats.rejected} message(s), {stats.failed_requests} request(s) failed"
        )
        if stats.retry_later:
            self.stdout.write(
                f"{stats.retry_later} request(s) hit a database error and stay pending"
            )
        for error in stats.errors:
            self.stderr.write(error)
        if stats.failed_requests:
            raise CommandError(f"{stats.failed_requests} inbox request(s) failed; see the admin")
