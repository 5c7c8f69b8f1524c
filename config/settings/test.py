"""Settings for the test suite: SQLite unless DATABASE_URL is set, tasks always eager."""

from .base import *  # noqa: F403
from .base import DATABASES, FOOTPRINT

CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_BROKER_URL = "memory://"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DATABASES["default"]["CONN_MAX_AGE"] = 0
# Tests change sources between requests; the cache has its own tests.
FOOTPRINT = {**FOOTPRINT, "SOURCE_CACHE_SECONDS": 0.0, "EMBEDDED_BEAT": False}
