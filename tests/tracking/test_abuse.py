"""Abuse: per-source rate limits, CSRF on the admin."""

import re

import orjson
import pytest
from django.test import Client

from tests.conftest import REDIS_URL, track
from tracking.doors import http
from tracking.models import InboxRequest

from ..factories import SourceFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def second(monkeypatch):
    """The clock the rate limit's window is counted by."""

    class Second:
        now = 1_800_000_000.25

    fake = Second()
    monkeypatch.setattr(http.time, "time", lambda: fake.now)
    return fake


def test_a_source_over_its_limit_gets_429_with_retry_after(door, second):
    door.source.rate_limit = 3
    door.source.save()

    answers = [door.post("track", track()) for _ in range(5)]

    assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
    refused = answers[3]
    assert refused["Retry-After"] == "1"
    assert refused.json()["code"] == "rate_limited"
    assert "3 requests per second" in refused.json()["message"]
    assert InboxRequest.objects.count() == 3

    second.now += 1  # the next window
    assert door.post("track", track()).status_code == 200


def test_the_limit_is_per_source(door, second):
    door.source.rate_limit = 1
    door.source.save()
    other = SourceFactory(workspace=door.source.workspace)

    assert door.post("track", track()).status_code == 200
    assert door.post("track", track()).status_code == 429
    assert door.post("track", track(), key=other.write_key).status_code == 200


def test_a_key_in_the_body_is_limited_too(door, second):
    door.source.rate_limit = 1
    door.source.save()
    body = {**track(), "writeKey": door.source.write_key}

    assert door.post("t", body, key="", content_type="text/plain").status_code == 200
    refused = door.post("t", body, key="", content_type="text/plain", HTTP_ORIGIN="https://a.io")
    assert refused.status_code == 429
    # A browser may read Retry-After only when it is exposed.
    assert refused["Access-Control-Expose-Headers"] == "Retry-After"


def test_the_default_limit_comes_from_settings(door, second, settings):
    settings.FOOTPRINT = {**settings.FOOTPRINT, "RATE_LIMIT": 2}
    assert [door.post("track", track()).status_code for _ in range(3)] == [200, 200, 429]


def test_zero_means_unlimited(door, second, settings):
    settings.FOOTPRINT = {**settings.FOOTPRINT, "RATE_LIMIT": 1}
    door.source.rate_limit = 0
    door.source.save()
    assert {door.post("track", track()).status_code for _ in range(5)} == {200}


@pytest.mark.services
def test_the_limit_is_shared_through_redis(door, second, settings):
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
    from django.core.cache import cache

    cache.clear()
    door.source.rate_limit = 2
    door.source.save()
    try:
        assert [door.post("track", track()).status_code for _ in range(3)] == [200, 200, 429]
        key = f"footprint:rate:{door.source.pk}:{int(second.now)}"
        assert cache.get(key) == 3
    finally:
        cache.clear()


@pytest.fixture
def redis_cache(settings):
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
    from django.core.cache import cache

    cache.clear()
    http._allowances.clear()
    yield cache
    cache.clear()
    http._allowances.clear()


@pytest.mark.services
def test_a_process_adds_its_requests_to_redis_a_few_at_a_time(
    door, second, redis_cache, monkeypatch
):
    monkeypatch.setattr(http, "ALLOWANCE_SHARE", 2)  # (1% in production: a long test)
    door.source.rate_limit = 6  # an allowance of 3 requests
    door.source.save()
    key = f"footprint:rate:{door.source.pk}:{int(second.now)}"

    answers = [door.post("track", track()).status_code for _ in range(8)]

    assert answers == [200] * 6 + [429] * 2
    assert redis_cache.get(key) == 6  # the last two are still this process's own
    second.now += 1
    assert door.post("track", track()).status_code == 200


@pytest.mark.services
def test_other_processes_requests_count_within_one_allowance(
    door, second, redis_cache, monkeypatch
):
    monkeypatch.setattr(http, "ALLOWANCE_SHARE", 2)
    door.source.rate_limit = 10  # an allowance of 5
    door.source.save()
    key = f"footprint:rate:{door.source.pk}:{int(second.now)}"
    redis_cache.set(key, 8, timeout=2)  # what the other web processes admitted this second

    admitted = 0
    while door.post("track", track()).status_code == 200:
        admitted += 1

    # 2 were left; this process learns of the others' 8 at its first addition, so it admits
    # at most its allowance less one more than the limit allows.
    assert 2 <= admitted <= 2 + 4
    assert InboxRequest.objects.count() == admitted


def test_a_failing_cache_lets_requests_through(door, second, monkeypatch):
    door.source.rate_limit = 1

    def broken(*args, **kwargs):
        raise ConnectionError("cache down")

    door.source.save()
    monkeypatch.setattr(http.cache, "incr", broken)
    assert {door.post("track", track()).status_code for _ in range(3)} == {200}


# --- CSRF on the admin ------------------------------------------------------------------------


def test_admin_posts_without_a_csrf_token_are_refused(source):
    admin = UserFactory(is_staff=True, is_superuser=True)
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin)
    form = {
        "workspace": source.workspace.pk,
        "name": "new source",
        "kind": "web",
        "dedup_window": "12:00:00",
        "allowed_origins": "[]",
        "allowed_redirect_hosts": "[]",
    }

    refused = client.post("/admin/tracking/source/add/", form)
    assert refused.status_code == 403
    assert b"CSRF" in refused.content

    page = client.get("/admin/tracking/source/add/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    accepted = client.post("/admin/tracking/source/add/", {**form, "csrfmiddlewaretoken": token})
    assert accepted.status_code == 302


def test_every_door_is_limited(source, second, settings, client):
    """Optimizely, /collect and the Stream API count against the same per-source limit."""
    settings.FOOTPRINT = {**settings.FOOTPRINT, "RATE_LIMIT": 1}
    workspace = source.workspace

    def optimizely():
        return client.post(
            "/api/v1.0/Track",
            {"DeviceId": "d", "EventType": "epiPageView", "Value": "Home"},
            content_type="application/json",
            HTTP_AUTHORIZATION=f"epi-single {source.write_key}",
        )

    def collect():
        return client.get(
            "/collect",
            {
                "portal_id": workspace.portal_id,
                "prop_id": source.prop_id,
                "ea": "view",
                "ec": "page",
                "uid": "u-1",
                "resp_type": "json",
            },
        )

    def stream():
        message = {
            "channel": "WEB",
            "type": "VIEW",
            "language": "EN",
            "currency": "EUR",
            "page": "/",
            "pos": "shop",
            "browser_id": "b-1",
        }
        return client.get(
            "/v1.2/event/create.json",
            {"client_key": workspace.client_key, "message": orjson.dumps(message).decode()},
        )

    for send in (optimizely, collect, stream):
        second.now += 1  # a fresh window for each door
        first, second_answer = send(), send()
        assert first.status_code == 200, (send.__name__, first.content)
        assert second_answer.status_code == 429, (send.__name__, second_answer.content)
        assert second_answer["Retry-After"] == "1"
        assert b"rate_limited" in second_answer.content
