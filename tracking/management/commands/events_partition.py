from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from config.lib import partitions
from tracking import event_partitions


class Command(BaseCommand):
    help = (
        "Move an installation's events out of the default partition into their monthly "
        "partitions (PostgreSQL), then make the months ahead. Each month moves in one "
        "transaction; stop it at any time and run it again to go on where it stopped."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run", action="store_true", help="list the months and their events, move nothing"
        )

    def handle(self, *args, dry_run: bool, **options):
        if not event_partitions.events_partitioned():
            raise CommandError(
                "the events table is not partitioned: partitions need PostgreSQL (SQLite keeps "
                "one plain table) and `manage.py migrate`"
            )
        table, column = event_partitions.TABLE, event_partitions.COLUMN
        months = event_partitions.months_to_move()
        counts = {month: partitions.default_count(table, column, month) for month in months}
        total = sum(counts.values())
        if dry_run:
            for month, count in counts.items():
                self.stdout.write(f"{month:%Y-%m}: {count} events would move")
            self.stdout.write(f"{total} events in {len(months)} months would move")
            return
        moved = 0
        with tqdm(total=total, unit="event", desc="events", file=self.stderr) as bar:
            for month in months:
                bar.set_postfix_str(f"{month:%Y-%m}")
                count = event_partitions.month_move(month)
                moved += count
                bar.update(count)
        made = event_partitions.months_ahead()
        self.stdout.write(
            f"moved {moved} events into {len(months)} monthly partitions; "
            f"{len(made)} months ahead made"
        )
        left = partitions.default_count_all(table)
        if left:
            self.stdout.write(
                f"{left} events stay in the default partition: their time lies outside the "
                "months that get partitions"
            )
