import json

from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError

from tracking import services
from tracking.models import Source, Workspace


class Command(BaseCommand):
    help = "Create a source (and its workspace if needed) and print its keys as JSON."

    def add_arguments(self, parser):
        parser.add_argument("name", help="the source's name, e.g. 'Web shop'")
        parser.add_argument("--workspace", default="Default", help="workspace name (created)")
        parser.add_argument("--kind", default=Source.Kind.WEB, choices=Source.Kind.values)

    def handle(self, *args, name: str, workspace: str, kind: str, **options):
        if not name.strip():
            raise CommandError("the source name must not be blank")
        space = Workspace.objects.filter(name=workspace).first()
        if space is None:
            space = services.workspace_create(name=workspace)
        try:
            source = services.source_create(workspace=space, name=name, kind=kind)
        except IntegrityError:
            raise CommandError(
                f"workspace {workspace!r} already has a source named {name!r}"
            ) from None
        self.stdout.write(
            json.dumps(
                {
                    "workspace": space.name,
                    "client_key": space.client_key,
                    "portal_id": space.portal_id,
                    "source": source.name,
                    "prop_id": source.prop_id,
                    "write_key": source.write_key,
                }
            )
        )
