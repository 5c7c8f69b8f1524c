"""Settings as a fresh process sees them: production refuses unsafe config, the default is embedded.

Each case runs ``manage.py`` in a subprocess with an environment built from scratch, because the
settings are read once at import and the test process already runs on ``config.settings.test``.
"""

import json
import os
import secrets
import subprocess
import sys

import pytest
from django.conf import settings

from config.settings.base import INSECURE_SECRET_KEY

GOOD_SECRET_KEY = secrets.token_urlsafe(64)

# base.py reads a .env file in the repository root for whatever the environment leaves unset.
needs_no_dotenv = pytest.mark.skipif(
    (settings.BASE_DIR / ".env").exists(),
    reason="a .env file in the repository root fills in the settings this test leaves unset",
)


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    """Run manage.py with only PATH, HOME and ``env`` in the environment."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env={"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", ""), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def refusal(result: subprocess.CompletedProcess) -> str:
    """The exception line a refused start ends with."""
    assert result.returncode != 0, result.stdout + result.stderr
    return result.stderr.strip().splitlines()[-1]


class TestProduction:
    production = {"DJANGO_SETTINGS_MODULE": "config.settings.production"}

    @pytest.mark.parametrize(
        "secret",
        [
            pytest.param(None, id="unset"),
            pytest.param(INSECURE_SECRET_KEY, id="insecure-default"),
            pytest.param("s" * 49, id="too-short"),
        ],
    )
    @needs_no_dotenv
    def test_refuses_a_missing_or_weak_secret_key(self, secret):
        env = self.production if secret is None else {**self.production, "SECRET_KEY": secret}

        last_line = refusal(manage("check", "--deploy", **env))

        assert last_line.startswith("django.core.exceptions.ImproperlyConfigured")
        assert "SECRET_KEY" in last_line

    def test_refuses_debug(self):
        result = manage(
            "check", "--deploy", **self.production, SECRET_KEY=GOOD_SECRET_KEY, DEBUG="1"
        )

        last_line = refusal(result)
        assert last_line.startswith("django.core.exceptions.ImproperlyConfigured")
        assert "DEBUG" in last_line

    def test_a_sound_configuration_passes_the_deployment_checks(self, tmp_path):
        result = manage(
            "check",
            "--deploy",
            **self.production,
            SECRET_KEY=GOOD_SECRET_KEY,
            ALLOWED_HOSTS="footprint.example.com",
            DATABASE_URL=f"sqlite:///{tmp_path / 'footprint.sqlite3'}",
        )

        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        assert "System check identified no issues" in output
        assert "WARNING" not in output

    def test_answers_carry_the_security_headers(self, tmp_path):
        code = (
            "import json; from django.test import Client; c = Client();"
            "h = 'footprint.example.com';"
            "plain = c.get('/admin/', HTTP_HOST=h);"
            "secure = c.get('/healthz', secure=True, HTTP_HOST=h);"
            "from django.conf import settings as s;"
            "print(json.dumps({'plain': [plain.status_code, plain.headers.get('Location')],"
            "'headers': dict(secure.headers),"
            "'secure_cookies': [s.CSRF_COOKIE_SECURE, s.SESSION_COOKIE_SECURE]}))"
        )
        result = manage(
            "shell",
            "--no-imports",
            "-c",
            code,
            **self.production,
            SECRET_KEY=GOOD_SECRET_KEY,
            ALLOWED_HOSTS="footprint.example.com",
            DATABASE_URL=f"sqlite:///{tmp_path / 'footprint.sqlite3'}",
        )

        assert result.returncode == 0, result.stdout + result.stderr
        seen = json.loads(result.stdout.strip().splitlines()[-1])
        assert seen["plain"] == [301, "https://footprint.example.com/admin/"]
        headers = seen["headers"]
        assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Referrer-Policy"] == "same-origin"
        assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
        assert seen["secure_cookies"] == [True, True]


@needs_no_dotenv
def test_with_no_environment_the_default_is_sqlite_and_eager_celery():
    code = (
        "import json; from django.conf import settings as s; print(json.dumps({"
        "'module': s.SETTINGS_MODULE, 'engine': s.DATABASES['default']['ENGINE'], "
        "'name': str(s.DATABASES['default']['NAME']), 'eager': s.CELERY_TASK_ALWAYS_EAGER, "
        "'broker': s.CELERY_BROKER_URL}))"
    )

    result = manage("shell", "--no-imports", "-c", code)

    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "module": "config.settings.local",
        "engine": "django.db.backends.sqlite3",
        "name": str(settings.BASE_DIR / "db.sqlite3"),
        "eager": True,
        "broker": "",
    }


def test_embedded_default_logs_each_line_once():
    """``make run``'s settings: a request error, the reloader's notice and an access line are
    each printed once (Django's default config used to print the first two twice and drop the
    third), and the access line still hides a write key."""
    result = manage(
        "shell",
        "-c",
        "import logging\n"
        "logging.getLogger('django.request').error('Internal Server Error: /v1/track')\n"
        "logging.getLogger('django.utils.autoreload').info('Watching for file changes')\n"
        "logging.getLogger('django.server').info('\"GET /v1/projects/wk-secret/settings\" 200')\n",
        DJANGO_SETTINGS_MODULE="config.settings.local",
        DATABASE_URL="sqlite:///:memory:",
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines.count("Internal Server Error: /v1/track") == 1, lines
    assert lines.count("Watching for file changes") == 1, lines
    assert lines.count('"GET /v1/projects/[redacted]/settings" 200') == 1, lines
    assert "wk-secret" not in result.stderr


@needs_no_dotenv
@pytest.mark.parametrize("pooled", ["1", "0"])
def test_behind_pgbouncer_no_statement_is_prepared_and_no_cursor_outlives_a_query(pooled):
    """``DATABASE_POOLED=1`` (PgBouncer in transaction mode) turns off psycopg's server-side
    prepared statements and Django's server-side cursors; without it statements bound on the
    server are prepared once they repeat, and Django's cursors stay as they were."""
    code = (
        "import json; from django.conf import settings as s; d = s.DATABASES['default'];"
        "print(json.dumps({'prepare': d.get('OPTIONS', {}).get('prepare_threshold', 'default'),"
        "'no_cursors': d.get('DISABLE_SERVER_SIDE_CURSORS', False)}))"
    )
    result = manage(
        "shell",
        "--no-imports",
        "-c",
        code,
        DATABASE_URL="postgres://postgres@127.0.0.1:6432/footprint",
        DATABASE_POOLED=pooled,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    if pooled == "1":
        assert seen == {"prepare": None, "no_cursors": True}
    else:
        assert seen == {"prepare": 5, "no_cursors": False}
