"""The read API against its own OpenAPI schema (``/api/schema/``), with schemathesis: whatever
a schema-shaped (or nearly schema-shaped) request holds, the answer is never a 500."""

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token

from tests.factories import SourceFactory, UserFactory

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
    return Token.objects.create(user=user).key


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
