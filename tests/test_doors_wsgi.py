"""The WSGI application gunicorn serves (``config.wsgi``): a door's ordinary request is answered
without Django's handler (``DoorsApplication``), and the answer is the one Django's handler
would have given, header for header."""

import base64
import gzip
import io
import sys

import orjson
import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import override_settings

from config.lib.handlers import DoorsApplication
from tracking.models import InboxRequest

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("connection_kept")]

ORIGIN = "https://shop.example.com"


def wsgi_call(app, method, path, *, body=b"", query="", https=True, host="testserver", **headers):
    """One request through a WSGI application: its status, headers and body."""
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SCRIPT_NAME": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": host,
        "REMOTE_ADDR": "203.0.113.7",
        "wsgi.url_scheme": "https" if https else "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": "application/json" if body else "",
        **{f"HTTP_{name.upper()}": value for name, value in headers.items()},
    }
    started = []
    chunks = app(environ, lambda status, headers, exc_info=None: started.append((status, headers)))
    try:
        content = b"".join(chunks)
    finally:
        if hasattr(chunks, "close"):
            chunks.close()
    status, header_list = started[0]
    return status, sorted(header_list), content


@pytest.fixture
def connection_kept():
    """Django's handler closes the connection at the start and end of a request; the test's
    transaction lives on it, so, as Django's test client does, it stays open."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


class Recorder:
    """A WSGI application standing in for Django's, to see which requests reach it."""

    def __init__(self, application):
        self.application = application
        self.paths = []

    def __call__(self, environ, start_response):
        self.paths.append(environ["PATH_INFO"])
        return self.application(environ, start_response)


@pytest.fixture
def apps():
    """Django's handler, and the doors' application in front of a recorder of what reaches
    Django."""
    django = WSGIHandler()
    recorder = Recorder(WSGIHandler())
    return django, DoorsApplication(recorder), recorder


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def track(message_id: str, **extra) -> bytes:
    return orjson.dumps(
        {"type": "track", "event": "Order Completed", "anonymousId": "a-1", "messageId": message_id}
        | extra
    )


def requests_of(source):
    """Requests of every kind a door answers, each made twice (once through each app)."""
    key = source.write_key
    batch = orjson.dumps({"batch": [orjson.loads(track("b-1")), orjson.loads(track("b-2"))]})
    return [
        ("track", "POST", "/v1/track", {"body": track("t-{n}"), "authorization": basic(key)}),
        (
            "track from a browser",
            "POST",
            "/v1/t",
            {"body": track("t-{n}", writeKey=key), "origin": ORIGIN},
        ),
        (
            "gzip batch",
            "POST",
            "/v1/batch",
            {"body": gzip.compress(batch), "content_encoding": "gzip", "authorization": basic(key)},
        ),
        ("invalid JSON", "POST", "/v1/track", {"body": b"{", "authorization": basic(key)}),
        ("unknown key", "POST", "/v1/track", {"body": track("t-{n}"), "authorization": basic("x")}),
        ("no key", "POST", "/v1/track", {"body": track("t-{n}")}),
        ("preflight", "OPTIONS", "/v1/track", {"origin": ORIGIN}),
        ("other method", "PUT", "/v1/batch", {"origin": ORIGIN}),
        ("settings", "GET", f"/v1/projects/{key}/settings", {"origin": ORIGIN}),
        ("optimizely", "POST", "/api/v1.0/Track", {"body": b"[]", "authorization": basic(key)}),
        ("collect", "GET", "/collect", {"query": "portal_id=1&prop_id=1"}),
        ("callFlows refused", "POST", "/v2/callFlows", {"body": b"{}"}),
    ]


def test_door_answers_equal_django_answers(apps, source):
    django, doors, recorder = apps
    for name, method, path, options in requests_of(source):
        answers = []
        for n, app in enumerate((django, doors)):
            options_n = dict(options)
            if "body" in options_n:
                options_n["body"] = options_n["body"].replace(b"{n}", str(n).encode())
            answers.append(wsgi_call(app, method, path, **options_n))
        assert answers[0] == answers[1], name
    assert recorder.paths == [], "none of these should reach Django's handler"
    # Both stored what they accepted: 2 tracks and a batch each.
    assert InboxRequest.objects.count() == 6


def test_security_headers_are_django_s(apps, source):
    django, doors, _ = apps
    _, headers, _ = wsgi_call(
        doors, "POST", "/v1/track", body=track("m"), authorization=basic(source.write_key)
    )
    names = {name for name, _ in headers}
    assert {"X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy"} <= names
    assert ("Content-Length", "16") in headers


@override_settings(SECURE_SSL_REDIRECT=True, SECURE_HSTS_SECONDS=3600)
def test_https_redirect_and_hsts_as_django(source):
    django, recorder = WSGIHandler(), Recorder(WSGIHandler())
    doors = DoorsApplication(recorder)
    key = basic(source.write_key)
    plain = [
        wsgi_call(app, "POST", "/v1/track", body=track("m"), https=False, authorization=key)
        for app in (django, doors)
    ]
    assert plain[0] == plain[1]
    assert plain[0][0].startswith("301")
    assert recorder.paths == ["/v1/track"], "the redirect is Django's own"

    secure = [
        wsgi_call(app, "POST", "/v1/track", body=track(f"s-{n}"), authorization=key)
        for n, app in enumerate((django, doors))
    ]
    assert secure[0] == secure[1]
    assert ("Strict-Transport-Security", "max-age=3600") in secure[1][1]
    assert recorder.paths == ["/v1/track"]


def test_unusual_requests_go_through_django(apps, source):
    django, doors, recorder = apps
    key = basic(source.write_key)
    cases = [
        ("a host not allowed", {"host": "evil.example"}, "400"),
        ("a NUL in the query", {"query": "x=%00"}, "400"),
    ]
    for name, options, status in cases:
        answers = [
            wsgi_call(app, "POST", "/v1/track", body=track("m"), authorization=key, **options)
            for app in (django, doors)
        ]
        assert answers[0] == answers[1], name
        assert answers[0][0].startswith(status), name
    assert recorder.paths == ["/v1/track", "/v1/track"]

    for path in ("/admin/login/", "/api/events", "/nowhere"):
        wsgi_call(doors, "GET", path)
    assert recorder.paths[2:] == ["/admin/login/", "/api/events", "/nowhere"]


def test_an_exception_is_django_s_500(apps, source, monkeypatch):
    django, doors, recorder = apps

    def broken(key):
        raise RuntimeError("a bug")

    monkeypatch.setattr("tracking.views.source_get_by_write_key", broken)
    key = basic(source.write_key)
    with override_settings(DEBUG_PROPAGATE_EXCEPTIONS=False):
        answers = [
            wsgi_call(app, "POST", "/v1/track", body=track("m"), authorization=key)
            for app in (django, doors)
        ]
    assert answers[0] == answers[1]
    assert answers[0][0].startswith("500")
    assert recorder.paths == []


@override_settings(PREPEND_WWW=True)
def test_it_stands_aside_when_common_middleware_would_redirect(source):
    recorder = Recorder(WSGIHandler())
    doors = DoorsApplication(recorder)
    status, _, _ = wsgi_call(doors, "POST", "/v1/track", body=track("m"))
    assert status.startswith("301")
    assert recorder.paths == ["/v1/track"]


def test_gunicorn_serves_the_doors_application():
    from config import wsgi

    assert isinstance(wsgi.application, DoorsApplication)
