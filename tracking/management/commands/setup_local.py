import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from tracking import services
from tracking.models import Source, Workspace

DEMO_WORKSPACE = "Demo"
DEMO_SOURCE = "Demo website"
ADMIN_USERNAME = "admin"


class Command(BaseCommand):
    help = (
        "Make sure a demo workspace, a demo source and a local admin user exist (idempotent) "
        "and print how to use them."
    )

    def add_arguments(self, parser):
        parser.add_argument("--port", default="8000")

    def handle(self, *args, port: str, **options):
        workspace = Workspace.objects.filter(name=DEMO_WORKSPACE).first()
        if workspace is None:
            workspace = services.workspace_create(name=DEMO_WORKSPACE)
        source = Source.objects.filter(workspace=workspace, name=DEMO_SOURCE).first()
        if source is None:
            source = services.source_create(workspace=workspace, name=DEMO_SOURCE)

        password_file = Path(settings.BASE_DIR) / ".local" / "admin-password"
        user_model = get_user_model()
        user = user_model.objects.filter(username=ADMIN_USERNAME).first()
        if user is None or not password_file.exists():
            password = secrets.token_urlsafe(12)
            if user is None:
                user = user_model.objects.create_superuser(ADMIN_USERNAME, "", password)
            else:
                user.set_password(password)
                user.save(update_fields=["password"])
            password_file.parent.mkdir(exist_ok=True)
            password_file.write_text(password)
            password_file.chmod(0o600)
        password = password_file.read_text().strip()
        workspace.members.add(user)

        base = f"http://127.0.0.1:{port}"
        self.stdout.write(
            f"""
Footprint is starting on {base}

  Admin       {base}/admin/   (user: {ADMIN_USERNAME}  password: {password})
  API docs    {base}/api/docs/
  Workspace   {workspace.name}  (portal_id {workspace.portal_id}, client_key {workspace.client_key})
  Source      {source.name}  (prop_id {source.prop_id})
  Write key   {source.write_key}

Send a first event:

  curl -u '{source.write_key}:' {base}/v1/track \\
    -H 'Content-Type: application/json' \\
    -d '{{"userId": "user-1", "event": "Signed Up", "properties": {{"plan": "pro"}}}}'

Then open {base}/admin/tracking/event/ to see it.

Fill the demo workspace with guests, sessions, orders and merges (in another terminal):

  .venv/bin/python manage.py seed_demo
"""
        )
