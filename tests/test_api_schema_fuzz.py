"""The read API against its own OpenAPI schema (``/api/schema/``), with schemathesis: whatever
a schema-shaped (or nearly schema-shaped) request holds, the answer is never a 500."""

import re

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings

from tests.factories import SourceFactory, TokenFactory, UserFactory

schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", WSGIHandler())

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _keep_the_test_transaction():
    """The WSGI handler would close the connection (and with it the test's transaction) after
    each request; Django's own test client stops it the same way."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def token():
    source = SourceFactory()
    user = UserFactory(workspaces=[source.workspace])
    user.user_permissions.add(*user.user_permissions.model.objects.filter(codename="delete_guest"))
    return TokenFactory(user=user).key


def test_the_schema_describes_the_read_api():
    paths = set(schema.raw_schema["paths"])
    assert {"/api/events/", "/api/guests/", "/api/segments/", "/api/experiences/"} <= paths
    assert len(paths) >= 12


@schema.parametrize()
@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_no_request_is_a_server_error(case, token):
    response = case.call(headers={"Authorization": f"Token {token}"})
    assert response.status_code < 500, (case.method, case.formatted_path, response.text[:500])


def write_operations():
    for path, methods in schema.raw_schema["paths"].items():
        if not path.startswith("/api/") or path.startswith("/api/v1.0/"):
            continue  # the doors refuse NUL in their own formats (their own tests)
        for method, spec in methods.items():
            content = spec.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                yield method, path, content["application/json"]["schema"]


def body_schema(spec: dict) -> dict:
    ref = spec.get("$ref")
    if ref:
        name = ref.rsplit("/", 1)[1]
        return schema.raw_schema["components"]["schemas"][name]
    return spec


@pytest.mark.parametrize(
    ("method", "path", "field", "value"),
    [
        # Named cases, always run: each was a PostgreSQL DataError (500) before.
        ("post", "/api/experiences/", "exclusionSegments[0]", {"exclusionSegments": ["\x00"]}),
        ("post", "/api/experiences/", "name", {"friendlyId": "hero", "name": "a\x00b"}),
        ("post", "/api/segments/", "rule.trait.key", {"rule": {"trait": {"key": "p\x00"}}}),
        ("post", "/api/segments/", "slug", {"slug": "\x00", "name": "n"}),
    ],
)
def test_a_nul_character_in_a_body_is_a_400_naming_the_field(
    token, client, method, path, field, value
):
    response = getattr(client, method)(
        path, value, content_type="application/json", HTTP_AUTHORIZATION=f"Token {token}"
    )
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid_character"
    assert response.json()["field"] == field


def test_every_write_refuses_a_nul_character(token, client):
    """Every operation with a JSON body, with a NUL in each of its string fields in turn."""
    auth = {"HTTP_AUTHORIZATION": f"Token {token}"}
    for path, body in (
        (
            "/api/segments/",
            {
                "slug": "vip",
                "name": "VIP",
                "rule": {"field": {"name": "guest_type", "op": "eq", "value": "customer"}},
            },
        ),
        ("/api/experiences/", {"friendlyId": "hero", "name": "Hero"}),
    ):
        created = client.post(path, body, content_type="application/json", **auth)
        assert created.status_code == 201, created.content
    seen = 0
    for method, path, spec in write_operations():
        url = path.replace("{friendly_id}", "hero").replace("{slug}", "vip")
        for name, prop in body_schema(spec).get("properties", {}).items():
            if prop.get("readOnly") or prop.get("type") not in ("string", "array"):
                continue
            value = "\x00" if prop["type"] == "string" else ["\x00"]
            response = getattr(client, method)(
                url, {name: value}, content_type="application/json", **auth
            )
            label = f"{method.upper()} {url} {name}"
            assert response.status_code == 400, (label, response.content)
            assert response.json()["code"] == "invalid_character", label
            assert response.json()["field"] in (name, f"{name}[0]"), label
            seen += 1
    assert seen >= 10


def test_the_read_api_speaks_camel_case():
    """Every field and query parameter the schema names for /api/ is camelCase."""
    camel = re.compile(r"[a-z][a-zA-Z0-9]*")
    odd = [
        f"{name}.{prop}"
        for name, component in schema.raw_schema["components"]["schemas"].items()
        for prop in component.get("properties", {})
        if not camel.fullmatch(prop)
    ]
    odd += [
        f"{method.upper()} {path} ?{parameter['name']}"
        for path, methods in schema.raw_schema["paths"].items()
        if path.startswith("/api/") and not path.startswith("/api/v1.0/")
        for method, spec in methods.items()
        for parameter in spec.get("parameters", [])
        if parameter["in"] == "query" and not camel.fullmatch(parameter["name"])
    ]
    assert odd == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        # Deeper than the decoder goes: a RecursionError, a 500, before.
        pytest.param('{"a":' * 5000 + "1" + "}" * 5000, "the body", id="decoder-depth"),
        pytest.param(
            '{"slug": "x", "name": "x", "rule": ' + '{"not":' * 70 + "{}" + "}" * 70 + "}",
            "rule" + ".not" * 63,
            id="rule-depth",
        ),
    ],
)
def test_a_body_nested_too_deep_is_a_400(token, client, body, field):
    response = client.post(
        "/api/segments/", body, content_type="application/json", HTTP_AUTHORIZATION=f"Token {token}"
    )
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "too_deep"
    assert response.json()["field"] == field


def test_a_rule_nested_within_the_limit_is_judged_by_the_rules(token, client):
    rule = {"not": {"not": {"field": {"name": "guest_type", "op": "eq", "value": "customer"}}}}
    response = client.post(
        "/api/segments/",
        {"slug": "nested", "name": "Nested", "rule": rule},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {token}",
    )
    assert response.status_code == 201, response.content
