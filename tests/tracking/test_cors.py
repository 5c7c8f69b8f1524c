"""Browsers: preflights, allowed origins and the analytics.js settings document."""

import pytest

from tests.conftest import basic_auth
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


def test_settings_document_serves_segment_and_customer_io_alike(client, source, settings):
    """Both analytics.js-based SDKs send here, and neither finds a device-mode destination,
    remote plugin or middleware to load from a CDN, nor metrics to report."""
    settings.ALLOWED_HOSTS = ["cdp.example"]
    response = client.get(
        f"/v1/projects/{source.write_key}/settings",
        HTTP_HOST="cdp.example",
        HTTP_ORIGIN="https://shop.example",
    )

    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "https://shop.example"
    document = response.json()
    integrations = document["integrations"]
    assert sorted(integrations) == ["Customer.io Data Pipelines", "Segment.io"]
    for name, integration in integrations.items():
        assert integration["apiKey"] == source.write_key, name
        assert integration["apiHost"] == "cdp.example/v1", name
        assert integration["protocol"] == "http", name
        # analytics-next and Customer.io's fork load an integration as device-mode code unless
        # it is unbundled and names no browser component.
        assert integration["bundlingStatus"] == "unbundled", name
        assert "browser" not in integration["versionSettings"]["componentTypes"], name
    assert document["remotePlugins"] == []
    assert not any(document["enabledMiddleware"].values())
    assert document["middlewareSettings"] == {}
    assert document["metrics"]["sampleRate"] == 0
    assert document["legacyVideoPluginsEnabled"] is False


class TestRudderStackSourceConfig:
    def get(self, client, path="/sourceConfig/", **extra):
        return client.get(path, {"p": "npm", "v": "3.34.1", "build": "modern"}, **extra)

    @pytest.mark.parametrize("path", ["/sourceConfig/", "/sourceConfig"])
    def test_by_basic_auth_with_or_without_the_slash(self, client, source, path):
        response = self.get(
            client, path, HTTP_AUTHORIZATION=basic_auth(source.write_key), HTTP_ORIGIN=SHOP
        )

        assert response.status_code == 200, response.content
        assert response["Access-Control-Allow-Origin"] == SHOP
        config = response.json()["source"]
        assert config["id"] == str(source.prop_id)
        assert config["name"] == source.name
        assert config["workspaceId"] == str(source.workspace.portal_id)
        assert config["enabled"] is True
        assert config["destinations"] == []
        assert config["config"]["statsCollection"] == {
            "errors": {"enabled": False},
            "metrics": {"enabled": False},
        }

    def test_by_write_key_parameter(self, client, source):
        response = client.get("/sourceConfig/", {"writeKey": source.write_key})

        assert response.status_code == 200
        assert response.json()["source"]["id"] == str(source.prop_id)

    def test_preflight_allows_the_authorization_header(self, client):
        response = client.options(
            "/sourceConfig/",
            HTTP_ORIGIN=SHOP,
            HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
            HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization",
        )

        assert response.status_code == 204
        assert response["Access-Control-Allow-Origin"] == SHOP
        assert "GET" in response["Access-Control-Allow-Methods"]
        assert response["Access-Control-Allow-Headers"] == "authorization"

    @pytest.mark.parametrize("key", [None, "nope"])
    def test_unknown_or_missing_key_is_a_401(self, client, key):
        response = client.get("/sourceConfig/", {"writeKey": key} if key else {})

        assert response.status_code == 401
        assert response.json()["code"] == "invalid_write_key"

    def test_other_origins_are_refused(self, client, locked):
        response = client.get(
            "/sourceConfig/", {"writeKey": locked.write_key}, HTTP_ORIGIN="https://evil.example"
        )

        assert response.status_code == 403
        assert "Access-Control-Allow-Origin" not in response


class TestFirstPartyAnalyticsJs:
    def test_the_library_is_served_for_a_known_key_with_long_caching(self, client, source):
        response = client.get(f"/analytics.js/v1/{source.write_key}/analytics.min.js")

        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/javascript")
        assert "max-age=86400" in response["Cache-Control"]
        assert b"analytics-next/bundles/" in response.content
        again = client.get(
            f"/analytics.js/v1/{source.write_key}/analytics.min.js",
            HTTP_IF_NONE_MATCH=response["ETag"],
        )
        assert again.status_code == 304

    def test_an_unknown_key_is_a_404_script(self, client):
        response = client.get("/analytics.js/v1/nope/analytics.min.js")

        assert response.status_code == 404
        assert response["Content-Type"].startswith("text/javascript")
        assert response.content.startswith(b"/*")

    def test_its_chunks_are_cached_for_good(self, client):
        from tracking.library import library_files

        chunks = [name for name in library_files() if name]
        assert any(name.startswith("ajs-destination.") for name in chunks)
        response = client.get(f"/analytics-next/bundles/{chunks[0]}")

        assert response.status_code == 200
        assert response["Cache-Control"] == "public, max-age=31536000, immutable"
        assert client.get("/analytics-next/bundles/nope.js").status_code == 404
        assert client.get("/analytics-next/bundles/..%2Fstandalone.js").status_code == 404

    def test_the_source_page_install_snippet_loads_it_from_here(self, admin_client, source):
        html = admin_client.get(f"/admin/tracking/source/{source.pk}/change/").content.decode()

        assert "/analytics.js/v1/&quot;+key+&quot;/analytics.min.js" in html
        assert "analytics._cdn=&quot;http://testserver&quot;" in html
        assert "cdn.segment.com" not in html


def test_the_readme_shows_the_install_snippet_as_served():
    from pathlib import Path

    from tracking.library import install_snippet

    readme = (Path(__file__).resolve().parent.parent.parent / "README.md").read_text()
    assert install_snippet(base="https://footprint.example.com", write_key="WRITE_KEY") in readme
