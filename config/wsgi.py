import os

from django.core.wsgi import get_wsgi_application

from config.lib.collector import collector_tune
from config.lib.handlers import DoorsApplication

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")

application = DoorsApplication(get_wsgi_application())


def _first_request_imports() -> None:
    """Import now what the first requests would import while being answered: Django's Redis
    cache imports the client library when it is first used (a few hundred ms in a request)."""
    from django.core.cache import caches
    from django.core.cache.backends.redis import RedisCache

    if isinstance(caches["default"], RedisCache):
        import redis  # noqa: F401


_first_request_imports()
# gunicorn loads this module in each worker after the fork: what is loaded now is for life.
collector_tune()
