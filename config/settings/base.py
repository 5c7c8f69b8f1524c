"""Settings shared by every environment, read from the environment with django-environ.

With nothing set, Footprint runs on the embedded default: a SQLite file and eager Celery
(tasks run in-process). Setting ``DATABASE_URL`` to PostgreSQL and ``CELERY_BROKER_URL`` to
Redis or RabbitMQ gives the production topology.
"""

from datetime import timedelta
from pathlib import Path

import environ
from celery.schedules import crontab

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

INSECURE_SECRET_KEY = "footprint-insecure-local-secret-key-change-me"  # noqa: S105
SECRET_KEY = env.str("SECRET_KEY", default=INSECURE_SECRET_KEY)
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "config.apps.FootprintAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "tracking",
    "profiles",
    "experiences",
]

MIDDLEWARE = [
    # The front doors go on through LEAN_MIDDLEWARE instead of the rest of this list.
    "config.lib.handlers.LeanViewsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "tracking.middleware.NulCharacterMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "config.lib.timezones.BrowserTimeZoneMiddleware",
    "tracking.middleware.DatabaseUnavailableMiddleware",
]

# The front doors' views (config.lib.handlers.lean): MIDDLEWARE without what they never use
# (static files, sessions, CSRF, logins, messages), in the same order.
LEAN_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "tracking.middleware.NulCharacterMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "tracking.middleware.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
# Off by default: a check is one more round trip on every request. A connection that died
# (PostgreSQL restarted) fails one request with 503, is dropped at the end of it, and the next
# request reconnects.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("CONN_HEALTH_CHECKS", default=False)
# Behind PgBouncer in transaction mode each transaction may run on another server connection,
# so nothing may outlive one: psycopg prepares no statements on the server, and Django opens no
# server-side cursor (Footprint's own code never keeps one: exports page by key). SET is only
# ever SET LOCAL (config.lib.db.setting_local); no advisory lock, LISTEN or temporary table is
# used across transactions.
# Otherwise a statement bound on the server (config.lib.db: the doors' inbox row, the
# callFlows read) is prepared once it has run this many times on a connection, and later runs
# skip parsing and planning: for callFlows' statement that was most of PostgreSQL's time.
# Django turns preparing off unless told (Django's own cursors bind on the client and never
# prepare).
PREPARE_THRESHOLD = 5
DATABASE_POOLED = env.bool("DATABASE_POOLED", default=False)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    if DATABASE_POOLED:
        DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = (
        None if DATABASE_POOLED else PREPARE_THRESHOLD
    )
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded default: WAL lets the dev server read while a task writes.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# Times with seconds, 24-hour clock (config/formats/en/formats.py).
FORMAT_MODULE_PATH = ["config.formats"]

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# Footprint's own admin styles and the vendored libraries of vendor/manifest.json.
STATICFILES_DIRS = [BASE_DIR / "config" / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Reverse proxies in front of Footprint whose X-Forwarded-For may be believed, as a count of
# hops (0: use the TCP peer address). See tracking.doors.common.client_ip.
TRUSTED_PROXY_HOPS = env.int("TRUSTED_PROXY_HOPS", default=0)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # The stock parsers, refusing U+0000 with a 400 that names the field.
    "DEFAULT_PARSER_CLASSES": [
        "config.lib.api.JSONParser",
        "config.lib.api.FormParser",
        "config.lib.api.MultiPartParser",
    ],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.CursorPagination",
    "PAGE_SIZE": 50,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Footprint API",
    "DESCRIPTION": "Ingestion doors and the read and management API of Footprint.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Fields of the same name with different choices get their own enum names.
    "ENUM_NAME_OVERRIDES": {
        "ExperienceKindEnum": "experiences.models.Experience.Kind",
        "MetricKindEnum": "experiences.models.Metric.Kind",
        "ExperienceStatusEnum": "experiences.models.Experience.Status",
    },
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "tracking.openapi.doors_describe",
    ],
}

# --- Celery -----------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="")
# No broker configured: run tasks in-process (the embedded default).
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not CELERY_BROKER_URL)
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "tracking.tasks.inbox_drain": {"queue": "ingest"},
    "tracking.tasks.inbox_sweep": {"queue": "ingest"},
    "profiles.tasks.segment_recompute": {"queue": "segments"},
    "profiles.tasks.segments_incremental": {"queue": "segments"},
    "profiles.tasks.*": {"queue": "default"},
    "experiences.tasks.*": {"queue": "default"},
}
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A request never waits long on a broker that is down: its data is already in the inbox.
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_BEAT_SCHEDULE = {
    "inbox-sweep": {"task": "tracking.tasks.inbox_sweep", "schedule": timedelta(seconds=30)},
    "dedup-keys-purge": {"task": "tracking.tasks.dedup_keys_purge", "schedule": crontab(minute=7)},
    "event-partitions-ahead": {
        "task": "tracking.tasks.event_partitions_ahead",
        "schedule": crontab(hour=2, minute=47),
    },
    "retention-purge": {
        "task": "tracking.tasks.retention_purge",
        "schedule": crontab(hour=3, minute=17),
    },
    "segments-schedule": {
        "task": "profiles.tasks.segments_schedule",
        "schedule": timedelta(minutes=1),
    },
    "segments-dirty-sweep": {
        "task": "profiles.tasks.segments_incremental",
        "schedule": timedelta(minutes=1),
    },
    "guest-days-purge": {
        "task": "profiles.tasks.guest_days_purge",
        "schedule": crontab(hour=3, minute=37),
    },
    "sessions-close-idle": {
        "task": "profiles.tasks.sessions_close_idle",
        "schedule": timedelta(minutes=1),
    },
    # The live experiences' results, kept in the cache for the dashboard and the experience
    # pages (experiences.results_cache.REFRESH_EVERY).
    "experiences-results-refresh": {
        "task": "experiences.tasks.experiences_results_refresh",
        "schedule": timedelta(minutes=5),
    },
}

CACHES = {
    "default": env.cache_url("CACHE_URL", default="locmemcache://footprint"),
}

# --- Footprint --------------------------------------------------------------------------------
FOOTPRINT = {
    # How far into the future (after clock-skew correction) a timestamp may lie before it is
    # clamped to receivedAt and flagged.
    "MAX_FUTURE_SKEW": timedelta(
        seconds=env.int("FOOTPRINT_MAX_FUTURE_SKEW_SECONDS", default=3600)
    ),
    # Requests per second one source may send to the doors (0: unlimited); a source's own
    # rate_limit overrides it. Counted in the default cache: set CACHE_URL to Redis so that
    # every web instance shares the count.
    "RATE_LIMIT": env.int("FOOTPRINT_RATE_LIMIT", default=5000),
    # Threads of one worker process that drain the inbox side by side (PostgreSQL).
    "DRAIN_THREADS": env.int("FOOTPRINT_DRAIN_THREADS", default=2),
    # Inbox rows claimed per processing transaction.
    "INBOX_CLAIM_SIZE": env.int("FOOTPRINT_INBOX_CLAIM_SIZE", default=50),
    # A web process wakes the drain at most this often (the first request of a quiet spell at
    # once, the rest at the end of the interval): one broker round trip instead of one per
    # request. 0 wakes it for every request.
    "DRAIN_WAKE_SECONDS": env.float("FOOTPRINT_DRAIN_WAKE_SECONDS", default=0.05),
    # Inbox rows older than this and still pending are re-enqueued by the sweep.
    "INBOX_SWEEP_AGE": timedelta(seconds=env.int("FOOTPRINT_INBOX_SWEEP_AGE_SECONDS", default=30)),
    # How long a web process reuses an experience's definition in /v2/callFlows.
    "FLOW_CACHE_SECONDS": env.float("FOOTPRINT_FLOW_CACHE_SECONDS", default=5.0),
    # Without a broker, the development server runs CELERY_BEAT_SCHEDULE itself on a thread
    # (config.lib.periodic), so sessions close and the sweeps run as they do in production.
    "EMBEDDED_BEAT": env.bool("FOOTPRINT_EMBEDDED_BEAT", default=CELERY_TASK_ALWAYS_EAGER),
    # Processing, step by step, in order (tracking.pipeline): each step takes the batch of new
    # messages. The apps above tracking plug in here, so tracking never imports them.
    "PIPELINE": [
        "tracking.pipeline.ips_anonymize",
        "profiles.pipeline.erased_drop",
        "tracking.pipeline.duplicates_drop",
        "profiles.pipeline.guests_resolve",
        "profiles.pipeline.sessions_place",
        # The flow execution of each /v2/callFlows exposure, in the session just placed.
        "experiences.pipeline.flow_executions_store",
        "tracking.pipeline.events_insert",
        "profiles.pipeline.segments_touch",
        "profiles.pipeline.guests_count",
        # Last, so the hot counter rows stay locked only until the commit.
        "tracking.pipeline.rollups_count",
    ],
    # What else follows a guest merge, after identities, events and sessions moved.
    "GUEST_MERGE_FOLLOWERS": ["experiences.services.assignments_follow_merge"],
    # Who makes the guest of a new identity (the Sitecore door's browser/create).
    "GUEST_FOR_IDENTITY": "profiles.identity.guest_get_or_create",
    # The experiences a guest's TRACKING events name, for the guest page's timeline.
    "EXPERIENCES_NAMED": "experiences.selectors.experiences_named",
    # What retention deletes, in order: each names its querysets per workspace and cutoff.
    "RETENTION": [
        "tracking.retention.retention_events",
        "profiles.services.retention_sessions",
        "tracking.retention.retention_requests",
    ],
    # The bearer token a Prometheus scraper sends to GET /metrics; empty: no metrics endpoint.
    "METRICS_TOKEN": env.str("FOOTPRINT_METRICS_TOKEN", default=""),
    # How long a web process reuses the source a write key belongs to.
    "SOURCE_CACHE_SECONDS": env.float("FOOTPRINT_SOURCE_CACHE_SECONDS", default=5.0),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"write_key_redact": {"()": "config.lib.log_filters.WriteKeyRedactFilter"}},
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # Django's own default config gives "django" a console handler of its own; reset to
        # none here, so its records reach the root handler once instead of twice.
        "django": {"handlers": [], "propagate": True},
        # Request paths are logged here, and the settings document's path holds a write key.
        "django.request": {"filters": ["write_key_redact"]},
        "django.server": {"filters": ["write_key_redact"], "propagate": True},
    },
}
