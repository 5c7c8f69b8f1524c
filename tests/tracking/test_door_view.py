"""Every door view answers preflights, other methods and outages the same way (``door_view``)."""

import pytest
from django.db import OperationalError

pytestmark = pytest.mark.django_db

ORIGIN = "https://shop.example.com"
# path, the methods a preflight allows, the 405 body for other methods (None: served).
DOOR_VIEWS = [
    ("/v1/track", "POST", {"code": "method_not_allowed", "message": "use POST"}),
    ("/api/v1.0/TrackBulk", "POST", {"code": "method_not_allowed", "message": "use POST"}),
    ("/v2/callFlows", "POST", {"code": "method_not_allowed", "message": "use POST"}),
    ("/collect", "GET, POST", {"message": "use GET or POST"}),
    ("/v1/projects/key/settings", "GET", None),
    ("/v1.2/browser/create.json", "GET, POST", None),
    ("/v1.2/event/create.json", "GET, POST", None),
]


@pytest.mark.parametrize(("path", "methods", "refusal"), DOOR_VIEWS)
def test_preflight_and_other_methods(client, path, methods, refusal):
    preflight = client.options(path, HTTP_ORIGIN=ORIGIN)
    assert preflight.status_code == 204
    assert preflight["Access-Control-Allow-Methods"] == f"{methods}, OPTIONS"
    assert preflight["Access-Control-Allow-Origin"] == ORIGIN

    other = client.put(path, HTTP_ORIGIN=ORIGIN)
    if refusal is None:
        assert other.status_code != 405
    else:
        assert other.status_code == 405
        assert other["Allow"] == methods
        assert other.json() == refusal
    assert other["Access-Control-Allow-Origin"] == ORIGIN


def test_an_outage_is_503_with_cors_at_every_door(client, source, monkeypatch):
    def gone(*args, **kwargs):
        raise OperationalError("the database went away")

    for name in ("source_get_by_write_key", "source_get_by_portal", "workspace_get_by_client_key"):
        monkeypatch.setattr(f"tracking.views.{name}", gone)
    monkeypatch.setattr("experiences.views.flow_definition_get", gone)
    key = source.write_key
    requests = [
        ("post", "/v1/track", {"HTTP_AUTHORIZATION": f"Bearer {key}"}),
        ("post", "/api/v1.0/Track", {"HTTP_AUTHORIZATION": f"epi-single {key}"}),
        ("get", "/collect?portal_id=1&prop_id=1", {}),
        ("get", f"/v1/projects/{key}/settings", {}),
        ("get", "/v1.2/browser/create.json?client_key=k&callback=cb", {}),
        ("get", "/v1.2/event/create.json?client_key=k&message={}", {}),
        ("post", "/v2/callFlows", {}),
    ]
    for method, path, headers in requests:
        data = b"{}" if method == "post" else None
        response = getattr(client, method)(
            path, data, content_type="application/json", HTTP_ORIGIN=ORIGIN, **headers
        )
        assert response.status_code == 503, path
        assert response["Retry-After"] == "5"
        assert response.json()["code"] == "unavailable"
        assert response["Access-Control-Allow-Origin"] == ORIGIN
