import os

from django.core.wsgi import get_wsgi_application

from config.lib.collector import collector_tune
from config.lib.handlers import DoorsApplication

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")

application = DoorsApplication(get_wsgi_application())
# gunicorn loads this module in each worker after the fork: what is loaded now is for life.
collector_tune()
