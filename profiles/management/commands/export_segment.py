import sys

from django.core.management.base import BaseCommand, CommandError

from profiles.exports import export_csv, export_ndjson, traits_param
from profiles.models import Segment


class Command(BaseCommand):
    help = "Write a segment's current members as CSV or NDJSON, streamed (constant memory)."

    def add_arguments(self, parser):
        parser.add_argument("slug", help="the segment's slug")
        parser.add_argument("--format", choices=["csv", "ndjson"], default="csv")
        parser.add_argument("-o", "--output", help="file to write (default: standard output)")
        parser.add_argument("--traits", help="trait columns to add, e.g. plan,country")
        parser.add_argument("--workspace", help="workspace name, when the slug is ambiguous")

    def handle(self, *args, slug, format, output, traits, workspace, **options):
        found = Segment.objects.filter(slug=slug)
        if workspace:
            found = found.filter(workspace__name=workspace)
        found = list(found[:2])
        if not found:
            raise CommandError(f"no segment with slug {slug!r}")
        if len(found) > 1:
            raise CommandError(f"several workspaces have a segment {slug!r}; give --workspace")
        names = traits_param(traits)
        if format == "csv":
            chunks = (line.encode("utf-8") for line in export_csv(found[0], traits=names))
        else:
            chunks = export_ndjson(found[0], traits=names)
        try:
            target = open(output, "wb") if output else sys.stdout.buffer  # noqa: SIM115
        except OSError as error:
            raise CommandError(f"cannot write {output}: {error.strerror}") from None
        members = found[0].memberships.filter(exited_at__isnull=True).count()
        try:
            for chunk in chunks:
                target.write(chunk)
        finally:
            if output:
                target.close()
        if output:
            self.stderr.write(f"wrote {members} member(s) to {output}")
