from django.core.management.base import BaseCommand, CommandError

from profiles.rollups import guest_rollups_rebuild
from tracking.models import Workspace
from tracking.store import rollups_rebuild


class Command(BaseCommand):
    help = (
        "Recount the dashboard's rollups (events per hour, failures, guests per day) and the "
        "event and trait catalogue from the stored events. Run it once after upgrading an "
        "installation that already has events; the pipeline keeps them from then on."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--workspace",
            action="append",
            default=[],
            help="A workspace name (repeatable); default: every workspace.",
        )

    def handle(self, *args, workspace, **options):
        workspaces = Workspace.objects.all()
        if workspace:
            workspaces = workspaces.filter(name__in=workspace)
            missing = set(workspace) - set(workspaces.values_list("name", flat=True))
            if missing:
                raise CommandError(f"no workspace named {', '.join(sorted(missing))}")
        for item in workspaces:
            rollups_rebuild(workspace_ids=[item.pk])
            guest_rollups_rebuild(workspace_ids=[item.pk])
            self.stdout.write(f"{item.name}: rollups and catalogue rebuilt")
