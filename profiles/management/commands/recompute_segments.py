from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from profiles.models import Segment
from profiles.segments import dirty_guests_recompute, segment_recompute, segments_in_order


class Command(BaseCommand):
    help = (
        "Recompute segments now: every active segment in full (default, or with --full), one "
        "with --segment, or only the guests queued by new events with --incremental."
    )

    def add_arguments(self, parser):
        parser.add_argument("--segment", help="the segment's slug")
        parser.add_argument("--workspace", help="workspace name, when the slug is ambiguous")
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--full", action="store_true", help="full recompute (the default)")
        mode.add_argument(
            "--incremental", action="store_true", help="only guests whose events changed"
        )
        parser.add_argument("--quiet", action="store_true", help="no progress bar")

    def handle(self, *args, segment, workspace, full, incremental, quiet, **options):
        if incremental:
            if segment:
                raise CommandError("--incremental runs every segment; leave out --segment")
            self.stdout.write(f"checked {dirty_guests_recompute()} queued guest(s)")
            return
        segments = self._segments(segment, workspace)
        for item in tqdm(segments, unit="segment", disable=quiet):
            run = segment_recompute(item)
            self.stdout.write(
                f"{item.slug}: {run.entered} entered, {run.exited} left"
                + (" (stale, a newer run had applied)" if run.stale else "")
            )

    def _segments(self, slug: str | None, workspace: str | None) -> list[Segment]:
        if slug is None:
            spaces = Segment.objects.filter(is_active=True)
            if workspace:
                spaces = spaces.filter(workspace__name=workspace)
            ids = sorted(set(spaces.values_list("workspace_id", flat=True)))
            return [s for workspace_id in ids for s in segments_in_order(workspace_id)]
        found = Segment.objects.filter(slug=slug)
        if workspace:
            found = found.filter(workspace__name=workspace)
        found = list(found[:2])
        if not found:
            raise CommandError(f"no segment with slug {slug!r}")
        if len(found) > 1:
            raise CommandError(f"several workspaces have a segment {slug!r}; give --workspace")
        return found
