"""PostgreSQL going away: the doors and the read API answer 503 with Retry-After (never a 500,
never a 200 for data they did not store) and recover by themselves when it comes back.

The database is taken away by cutting a TCP proxy between a real WSGI server thread and the
shared PostgreSQL, so the server itself is never touched.
"""

import json

import pytest
from django.db import connection

from tests.conftest import basic_auth, track
from tests.factories import SourceFactory, TokenFactory, UserFactory
from tests.live import TcpProxy, WsgiServer
from tracking import views
from tracking.models import Event, InboxRequest

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def proxy():
    upstream = (
        connection.settings_dict["HOST"] or "127.0.0.1",
        int(connection.settings_dict["PORT"] or 5432),
    )
    proxy = TcpProxy(upstream)
    yield proxy
    proxy.close()


@pytest.fixture
def server(proxy):
    # A persistent, health-checked connection, as production runs with CONN_MAX_AGE > 0.
    server = WsgiServer(
        database={
            "HOST": "127.0.0.1",
            "PORT": proxy.port,
            "CONN_MAX_AGE": 600,
            "CONN_HEALTH_CHECKS": True,
        }
    )
    yield server
    server.stop()


@pytest.fixture
def source():
    return SourceFactory()


@pytest.fixture
def token(source):
    user = UserFactory(workspaces=[source.workspace])
    return TokenFactory(user=user).key


def post_track(server, source, message_id):
    """A track call over a socket to the live server (the test client would bypass the proxy)."""
    return server.request(
        "POST",
        "/v1/track",
        json.dumps(track(messageId=message_id)).encode(),
        **{"Content-Type": "application/json", "Authorization": basic_auth(source.write_key)},
    )


def read(server, token, path):
    return server.request("GET", path, Authorization=f"Token {token}")


def assert_unavailable(answer):
    assert answer.status == 503, answer
    assert int(answer.headers["Retry-After"]) > 0
    assert json.loads(answer.body)["code"] == "unavailable"


def test_database_down_is_503_and_recovers_by_itself(server, proxy, source, token):
    assert post_track(server, source, "before-1").status == 200
    opened = proxy.opened
    assert post_track(server, source, "before-2").status == 200
    assert read(server, token, "/api/events/").status == 200
    assert proxy.opened == opened, "the server thread should reuse its persistent connection"

    proxy.cut()
    assert_unavailable(post_track(server, source, "during-1"))
    assert_unavailable(post_track(server, source, "during-2"))
    assert_unavailable(read(server, token, "/api/events/"))
    assert_unavailable(read(server, token, "/api/guests/"))
    assert_unavailable(read(server, token, "/api/segments/"))
    assert_unavailable(read(server, token, "/api/experiences/"))
    assert proxy.refused >= 1, "the server should have tried to reconnect"

    proxy.restore()
    assert post_track(server, source, "after-1").status == 200
    events = read(server, token, "/api/events/")
    assert events.status == 200

    stored = {item["messageId"] for item in json.loads(events.body)["results"]}
    assert stored == {"before-1", "before-2", "after-1"}
    assert set(Event.objects.values_list("message_id", flat=True)) == stored
    assert InboxRequest.objects.count() == 3


def test_connection_lost_mid_request_is_503_and_nothing_is_stored(
    server, proxy, source, monkeypatch
):
    assert post_track(server, source, "first").status == 200
    accept = views.services.inbox_accept

    def cut_then_accept(**kwargs):
        # The write key was looked up on a healthy connection; the INSERT finds it gone.
        proxy.cut()
        return accept(**kwargs)

    monkeypatch.setattr(views.services, "inbox_accept", cut_then_accept)
    assert_unavailable(post_track(server, source, "lost"))
    monkeypatch.setattr(views.services, "inbox_accept", accept)

    proxy.restore()
    assert post_track(server, source, "next").status == 200
    assert set(Event.objects.values_list("message_id", flat=True)) == {"first", "next"}
    assert InboxRequest.objects.count() == 2


def test_settings_document_is_503_while_the_database_is_down(server, proxy, source):
    proxy.cut()
    answer = server.request("GET", f"/v1/projects/{source.write_key}/settings")
    assert_unavailable(answer)

    proxy.restore()
    assert server.request("GET", f"/v1/projects/{source.write_key}/settings").status == 200
