"""Browsers: preflights, allowed origins and the analytics.js settings document."""

import pytest

from tests.factories import SourceFactory
from tracking.models import InboxRequest

pytestmark = pytest.mark.django_db

SHOP = "https://shop.example.com"


@pytest.fixture
def locked(db):
    return SourceFactory(allowed_origins=[SHOP])


def test_preflight_answers_the_requested_headers(client):
    response = client.options(
        "/v1/track",
        HTTP_ORIGIN=SHOP,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="content-type, authorization",
    )

    assert response.status_code == 204
    assert response["Access-Control-Allow-Origin"] == SHOP
    assert "POST" in response["Access-Control-Allow-Methods"]
    assert response["Access-Control-Allow-Headers"] == "content-type, authorization"
    assert int(response["Access-Control-Max-Age"]) > 0


def test_open_source_accepts_any_origin(door):
    response = door.post("track", {"userId": "u", "event": "E"}, HTTP_ORIGIN="https://a.example")

    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "https://a.example"


def test_allowed_origin_is_accepted(door, locked):
    door.source = locked
    response = door.post("track", {"userId": "u", "event": "E"}, HTTP_ORIGIN=SHOP)

    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == SHOP


def test_other_origin_is_refused_and_not_stored(door, locked):
    door.source = locked
    response = door.post("track", {"userId": "u", "event": "E"}, HTTP_ORIGIN="https://evil.example")

    assert response.status_code == 403
    assert response.json()["code"] == "origin_not_allowed"
    assert "Access-Control-Allow-Origin" not in response
    assert not InboxRequest.objects.filter(source=locked).exists()


def test_server_to_server_calls_without_origin_pass(door, locked):
    door.source = locked
    assert door.post("track", {"userId": "u", "event": "E"}).status_code == 200


def test_settings_document_points_analytics_js_here(client, source, settings):
    settings.ALLOWED_HOSTS = ["cdp.example"]
    response = client.get(f"/v1/projects/{source.write_key}/settings", HTTP_HOST="cdp.example")

    assert response.status_code == 200
    segment_io = response.json()["integrations"]["Segment.io"]
    assert segment_io["apiKey"] == source.write_key
    assert segment_io["apiHost"] == "cdp.example/v1"


def test_settings_document_for_unknown_key_is_401(client):
    response = client.get("/v1/projects/nope/settings")
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_write_key"


def test_settings_document_refuses_other_origins(client, locked):
    response = client.get(
        f"/v1/projects/{locked.write_key}/settings", HTTP_ORIGIN="https://evil.example"
    )
    assert response.status_code == 403
