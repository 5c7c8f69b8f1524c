import os

from celery import Celery
from celery.signals import worker_process_init, worker_ready

from config.lib.collector import collector_tune

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("footprint")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_ready.connect
@worker_process_init.connect
def _collector_tune(**_kwargs) -> None:
    """Once the worker (solo, or each prefork child) has loaded, freeze what it loaded."""
    collector_tune()
